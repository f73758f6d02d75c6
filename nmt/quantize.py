"""Dynamic int8 quantization of a loaded model for faster CPU inference.

Every `nn.Linear` of the encoder and decoder, and the output projection, get int8 weights
(per-tensor scale) and quantize their inputs on the fly. Embeddings, layer norms and attention
stay fp32. The quantized model is for inference only: it has no fp32 `output_weight` to train or
export. On 200 iitb-test sentences with the cpu-small model, BLEU changed by -0.01 (greedy) and
-0.15 (beam 4), with 1.1-1.4 times the float32 speed (benchmarks/README.md).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from nmt import gemm
from nmt.attention import InferenceLinear, MultiHeadAttention
from nmt.model import Transformer

__all__ = ["quantize_model", "quantize_translator"]

logger = logging.getLogger(__name__)


def quantize_model(model: Transformer) -> Transformer:
    """Quantize `model` in place with torch dynamic int8 quantization and return it.

    A tied model gets a separate copy of the embedding matrix as its output projection, so that
    the projection, the largest matrix product of a decoding step, is quantized too while the
    embedding lookup keeps fp32 values.
    """
    if model.training:
        raise ValueError("quantize a model in eval mode: the quantized model cannot be trained")
    if model.output_projection is None:
        projection = nn.Linear(model.config.d_model, model.config.vocab_size, bias=False)
        projection.weight = nn.Parameter(model.embedding.weight.detach().clone())
        model.output_projection = projection.to(model.embedding.weight.device)

    # quantize_dynamic converts modules of exactly the type nn.Linear, so the decoder's
    # InferenceLinear layers become plain nn.Linear first (the same parameters).
    for module in model.modules():
        if isinstance(module, InferenceLinear):
            module.__class__ = nn.Linear
            gemm.forget_weights(module)
        elif isinstance(module, MultiHeadAttention):
            module.forget_prepared_weights()  # its projections are no longer InferenceLinear

    # NOTE: torch 2.13 warns that torch.ao.quantization is deprecated in favour of torchao. It
    # still works there, and the figures in benchmarks/README.md were measured with it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8,
                                               inplace=True)
    logger.info("quantized the model's linear layers to int8 (dynamic quantization)")
    return model


def quantize_translator(translator):
    """Quantize the PyTorch model of a loaded `nmt.translator.Translator` in place; return it."""
    quantize_model(translator.model)
    return translator
