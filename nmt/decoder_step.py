"""One decoding step of search, as one flat function over the decoder's weights.

`Transformer.decode` serves training, attention maps and search alike. A search step therefore
passes through module calls, sublayer closures and attention code written for any query length.
For the single new position of a search step, that Python work cost more than the arithmetic at
a few rows on a CPU.

`decode_step` computes what `Transformer.decode` computes for one new position of a pre-norm
model: the same products (through `nmt.gemm`, or torch's int8 layers after `nmt.quantize`), the
same cache, and plain matmul and softmax attention. `prepare_step` gathers the decoder's parts
once per search, and `Transformer.decode_step` uses the two where `prepare_step` supports the
model (else `decode`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from nmt import gemm
from nmt.attention import InferenceLinear, MultiHeadAttention

if TYPE_CHECKING:  # nmt.model imports this module
    from nmt.model import DecoderCache, LayerCache, Transformer

__all__ = ["StepLayer", "decode_step", "prepare_step"]

# The linear layers a step multiplies with: float ones through `nmt.gemm`, or the int8 layers
# that `nmt.quantize` puts in their place.
_STEP_LINEARS = (InferenceLinear, Int8Linear)


@dataclass(frozen=True)
class StepLayer:
    """The parts of one decoder layer that `decode_step` reads, gathered once per search."""

    self_norm: nn.LayerNorm
    self_attention: MultiHeadAttention
    cross_norm: nn.LayerNorm
    cross_attention: MultiHeadAttention
    feed_forward_norm: nn.LayerNorm
    inner: nn.Module  # InferenceLinear or Int8Linear, as `outer`
    outer: nn.Module
    activation: Callable[[torch.Tensor], torch.Tensor] | None  # None: ReLU, fused into `inner`


def prepare_step(model: Transformer) -> list[StepLayer] | None:
    """Gather the decoder layers of `model` for `decode_step`.

    Return None where `decode_step` would not compute `model.decode`: in training or with
    gradients on, for a post-norm model, and for decoder layers whose linear layers are neither
    `InferenceLinear` nor torch's dynamic int8 `Linear`.
    """
    if model.training or torch.is_grad_enabled() or not model.config.pre_norm:
        return None
    layers = []
    for layer in model.decoder_layers:
        self_attention, cross_attention = layer.self_attention, layer.cross_attention
        feed_forward = layer.feed_forward
        linears = (self_attention.query, self_attention.key, self_attention.value,
                   self_attention.output, cross_attention.query, cross_attention.output,
                   feed_forward.inner, feed_forward.outer)
        if not all(type(linear) in _STEP_LINEARS for linear in linears):
            return None

        relu = feed_forward.activation is F.relu
        layers.append(StepLayer(
            layer.self_attention_block.norm, self_attention, layer.cross_attention_block.norm,
            cross_attention, layer.feed_forward_block.norm, feed_forward.inner,
            feed_forward.outer, None if relu else feed_forward.activation))
    return layers


def decode_step(model: Transformer, layers: list[StepLayer], target: torch.Tensor,
                cache: DecoderCache) -> torch.Tensor:
    """Decode one new target position `target` (B, 1) after the `cache.length` cached ones.

    Return the final decoder states (B, D). The cache grows by one position.
    """
    if cache.length >= model.config.max_positions:
        raise ValueError(f"sequence of {cache.length + 1} tokens exceeds max_positions "
                         f"({model.config.max_positions})")
    x = F.embedding(target[:, 0], model.embedding.weight) * math.sqrt(model.config.d_model)
    x = x + model.positions[cache.length]  # (B, D)

    blocked = ~cache.source_mask  # (B / group, 1, 1, S), True at padding
    last = len(layers) - 1
    for index, (layer, layer_cache) in enumerate(zip(layers, cache.layers, strict=True)):
        x = x + _self_attention(layer.self_attention, _norm(layer.self_norm, x), layer_cache)
        coverage = cache if index == last and cache.coverage is not None else None
        x = x + _cross_attention(layer.cross_attention, _norm(layer.cross_norm, x), layer_cache,
                                 blocked, cache.group, coverage)
        x = x + _feed_forward(layer, _norm(layer.feed_forward_norm, x))

    cache.length += 1
    return _norm(model.decoder_norm, x)


def _self_attention(attention: MultiHeadAttention, h: torch.Tensor,
                    layer_cache: LayerCache) -> torch.Tensor:
    """Attend from each row of `h` (B, D) to its cached positions and to itself.

    The new key and value are appended to `layer_cache`.
    """
    rows, heads, head_dim = h.size(0), attention.n_heads, attention.head_dim
    stacked = _query_key_value(attention, h).view(rows, 3, heads, 1, head_dim)
    q, key, value = stacked.unbind(1)  # (B, H, 1, Dh) each

    if layer_cache.self_key is not None:
        key = torch.cat([layer_cache.self_key, key], dim=2)  # (B, H, t + 1, Dh)
        value = torch.cat([layer_cache.self_value, value], dim=2)
    layer_cache.self_key, layer_cache.self_value = key, value

    scores = q @ key.transpose(-2, -1) / math.sqrt(head_dim)  # (B, H, 1, t + 1)
    context = scores.softmax(dim=-1) @ value  # (B, H, 1, Dh)
    return _linear(attention.output, context.view(rows, heads * head_dim))  # (B, D)


def _cross_attention(attention: MultiHeadAttention, h: torch.Tensor, layer_cache: LayerCache,
                     blocked: torch.Tensor, group: int,
                     coverage: DecoderCache | None = None) -> torch.Tensor:
    """Attend from each row of `h` (B, D) to the source keys of its sentence.

    Each run of `group` rows (the beams of one sentence) shares one row of keys, values and
    `blocked`. The probabilities are added to the coverage of `coverage`, where given.
    """
    rows, heads, head_dim = h.size(0), attention.n_heads, attention.head_dim
    q = _linear(attention.query, h).view(rows // group, group, heads, head_dim)
    q = q.transpose(1, 2)  # (B / group, H, group, Dh)

    scores = q @ layer_cache.cross_key.transpose(-2, -1) / math.sqrt(head_dim)
    scores = scores.masked_fill(blocked, float("-inf"))  # (B / group, H, group, S)
    probabilities = scores.softmax(dim=-1)
    if coverage is not None:
        coverage.add_coverage(probabilities.transpose(1, 2).reshape(rows, heads, -1))
    context = probabilities @ layer_cache.cross_value  # (B / group, H, group, Dh)
    context = context.transpose(1, 2).reshape(rows, heads * head_dim)  # (B, D)
    return _linear(attention.output, context)


def _query_key_value(attention: MultiHeadAttention, h: torch.Tensor) -> torch.Tensor:
    """Return the queries, keys and values of rows `h` (B, D) side by side (B, 3D)."""
    if type(attention.query) is InferenceLinear:
        weight, bias = attention._stack_query_key_value()  # (3D, D), (3D,)
        return gemm.linear(h, attention, weight, bias)
    projections = (attention.query, attention.key, attention.value)
    return torch.cat([projection(h) for projection in projections], dim=1)


def _feed_forward(layer: StepLayer, h: torch.Tensor) -> torch.Tensor:
    if layer.activation is None:
        return _linear(layer.outer, _linear(layer.inner, h, relu=True))
    return _linear(layer.outer, layer.activation(_linear(layer.inner, h)))


def _linear(linear: nn.Module, rows: torch.Tensor, *, relu: bool = False) -> torch.Tensor:
    """Apply `linear` to rows (N, in) and return (N, out). A float layer runs without the cost
    of a module call."""
    if type(linear) is InferenceLinear:
        return gemm.linear(rows, linear, linear.weight, linear.bias, relu=relu)
    out = linear(rows)  # an int8 layer
    return out.relu_() if relu else out


def _norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
