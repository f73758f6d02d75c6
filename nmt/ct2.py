"""Export to CTranslate2 and translation with an exported model.

`export_ct2` converts a model directory into a CTranslate2 model directory: the weights in
CTranslate2's Transformer layout (``model.bin``), the joint vocabulary, and next to them this
project's ``tokenizer.model`` and ``metadata.json`` so that the folder alone can translate.
`CT2Translator` is a `Translator` whose searches run in CTranslate2 instead of PyTorch; text
normalization, placeholder protection and splitting of long inputs stay this project's.

CTranslate2 is an optional dependency (``pip install 'hindi-nmt[ct2]'``); this module imports
it only when a function needs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nmt import gemm
from nmt.config import ModelConfig
from nmt.model import Transformer
from nmt.model_dir import METADATA, TOKENIZER, load_model_dir, read_metadata
from nmt.search import max_output_lengths
from nmt.tokenizer import Tokenizer
from nmt.translator import Hypothesis, SearchOptions, Translator

__all__ = [
    "CT2Translator",
    "add_export_ct2_arguments",
    "build_spec",
    "export_ct2",
    "run_export_ct2",
]

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16")
# Key in the exported metadata.json that contains this project's ModelConfig and the export options,
# because CTranslate2 writes its own config.json into the same folder.
METADATA_KEY = "ctranslate2"
# torch.nn.LayerNorm's default epsilon, which every layer norm of `Transformer` uses.
LAYER_NORM_EPSILON = 1e-5


def _check_threads_and_streams(threads: int, streams: int) -> tuple[int, int]:
    """Return `threads` and `streams` as ints.

    Raise ValueError unless `threads` is 0 (CTranslate2 chooses) or a whole number up to the
    CPUs available, and `streams` a whole number between 1 and `threads` (with 0, the CPUs).
    """
    cpus = gemm.available_cpus()
    thread_count = gemm.whole_number(threads)
    if thread_count is None or not 0 <= thread_count <= cpus:
        raise ValueError(f"threads must be 0 (CTranslate2 chooses) or a whole number between 1 "
                         f"and {cpus} (the CPUs available to this process), got {threads!r}")
    limit = thread_count or cpus
    stream_count = gemm.whole_number(streams)
    if stream_count is None or not 1 <= stream_count <= limit:
        source = "threads" if thread_count else "the CPUs available to this process"
        raise ValueError(f"streams must be a whole number between 1 and {limit} ({source}), "
                         f"got {streams!r}")
    return thread_count, stream_count


def _import_ctranslate2():
    try:
        import ctranslate2
    except ImportError as error:
        raise ImportError("CTranslate2 is not installed: pip install 'hindi-nmt[ct2]' "
                          "or pip install ctranslate2") from error
    return ctranslate2


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


def _set_linear(spec, *modules: torch.nn.Linear) -> None:
    """Fill a CTranslate2 LinearSpec; several modules are fused by stacking their output rows."""
    spec.weight = _array(torch.cat([module.weight for module in modules], dim=0))
    if all(module.bias is not None for module in modules):
        spec.bias = _array(torch.cat([module.bias for module in modules], dim=0))


def _set_layer_norm(spec, norm: torch.nn.LayerNorm) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _set_feed_forward(spec, layer, norm: torch.nn.LayerNorm) -> None:
    _set_layer_norm(spec.layer_norm, norm)
    _set_linear(spec.linear_0, layer.feed_forward.inner)
    _set_linear(spec.linear_1, layer.feed_forward.outer)


def _set_self_attention(spec, attention, norm: torch.nn.LayerNorm) -> None:
    # CTranslate2 self-attention: linear[0] is Q, K and V fused (3D, D), linear[1] the output.
    _set_layer_norm(spec.layer_norm, norm)
    _set_linear(spec.linear[0], attention.query, attention.key, attention.value)
    _set_linear(spec.linear[1], attention.output)


def _set_cross_attention(spec, attention, norm: torch.nn.LayerNorm) -> None:
    # CTranslate2 encoder-decoder attention: linear[0] is Q, linear[1] K and V fused (2D, D),
    # linear[2] the output.
    _set_layer_norm(spec.layer_norm, norm)
    _set_linear(spec.linear[0], attention.query)
    _set_linear(spec.linear[1], attention.key, attention.value)
    _set_linear(spec.linear[2], attention.output)


def build_spec(model: Transformer, tokenizer: Tokenizer):
    """Return a validated `ctranslate2.specs.TransformerSpec` holding `model`'s weights.

    The spec takes the position table from the model, because CTranslate2's built-in sinusoidal
    encodings put the sines and cosines in two halves while `sinusoidal_positions` interleaves
    them. Pre-norm and post-norm models both map onto CTranslate2's layer specs: CTranslate2 uses a
    sublayer's layer norm before the sublayer when `pre_norm` is set and after the residual sum
    otherwise, as `nmt.model.Residual` does.
    """
    ctranslate2 = _import_ctranslate2()
    specs = ctranslate2.specs
    config = model.config
    activation = {"relu": specs.Activation.RELU, "gelu": specs.Activation.GELU}[config.activation]
    spec = specs.TransformerSpec.from_config(
        num_layers=(config.encoder_layers, config.decoder_layers),
        num_heads=config.n_heads,
        pre_norm=config.pre_norm,
        activation=activation,
        # The coverage penalty reads the last layer's cross-attention averaged over all heads,
        # as `nmt.search` computes it.
        alignment_heads=config.n_heads,
    )

    # Source embeddings, target embeddings and the output projection may be one matrix; CTranslate2
    # stores identical variables once (spec.optimize aliases them).
    embedding = _array(model.embedding.weight)
    positions = _array(model.positions)  # (max_positions, D)
    for stack in (spec.encoder, spec.decoder):
        stack.scale_embeddings = True  # x · √D, as Transformer.embed does
        stack.position_encodings.encodings = positions
    spec.encoder.embeddings[0].weight = embedding
    spec.decoder.embeddings.weight = embedding
    spec.decoder.projection.weight = _array(model.output_weight)

    for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers, strict=True):
        _set_self_attention(layer_spec.self_attention, layer.self_attention,
                            layer.attention_block.norm)
        _set_feed_forward(layer_spec.ffn, layer, layer.feed_forward_block.norm)
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder_layers, strict=True):
        _set_self_attention(layer_spec.self_attention, layer.self_attention,
                            layer.self_attention_block.norm)
        _set_cross_attention(layer_spec.attention, layer.cross_attention,
                             layer.cross_attention_block.norm)
        _set_feed_forward(layer_spec.ffn, layer, layer.feed_forward_block.norm)
    if config.pre_norm:
        _set_layer_norm(spec.encoder.layer_norm, model.encoder_norm)
        _set_layer_norm(spec.decoder.layer_norm, model.decoder_norm)

    # The vocabulary is the SentencePiece pieces in id order; both sides share it. The source gets
    # eos appended by the caller, and the decoder starts from bos, as in `nmt.search`.
    pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    spec.register_source_vocabulary(pieces)
    spec.register_target_vocabulary(pieces)
    spec.config.unk_token = pieces[tokenizer.unk_id]
    spec.config.bos_token = pieces[tokenizer.bos_id]
    spec.config.eos_token = pieces[tokenizer.eos_id]
    spec.config.decoder_start_token = pieces[tokenizer.bos_id]
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    spec.validate()
    return spec


def export_ct2(model_dir: Path, out_dir: Path, *, quantization: str | None = None,
               force: bool = False) -> Path:
    """Convert the model directory `model_dir` into a CTranslate2 model directory `out_dir`.

    `quantization` (e.g. "int8") sets the stored weight type; CTranslate2 can also convert fp32
    weights when it loads them (its `compute_type`), so an fp32 export serves every compute type.
    """
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, "
                         f"not {quantization!r}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass --force to overwrite it")

    model, tokenizer, metadata = load_model_dir(model_dir)
    spec = build_spec(model, tokenizer)
    spec.optimize(quantization=quantization)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))

    shutil.copyfile(model_dir / TOKENIZER, out_dir / TOKENIZER)
    metadata = {**metadata, METADATA_KEY: {"model_config": model.config.to_dict(),
                                           "quantization": quantization or "float32",
                                           "source_model": model_dir.name,
                                           "coverage_heads": model.config.n_heads}}
    (out_dir / METADATA).write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    logger.info("exported %s to CTranslate2 model %s (%s)", model_dir, out_dir,
                quantization or "float32")
    return out_dir


@dataclass(frozen=True)
class _PositionLimit:
    max_positions: int


class _NoModel:
    """Stands in for the PyTorch model, where `Translator` reads only `config.max_positions`.

    It has no other config field, so code that needs the PyTorch model (such as the service's
    attention maps, which look for `config.decoder_layers`) sees that there is none.
    """

    def __init__(self, max_positions: int) -> None:
        self.config = _PositionLimit(max_positions)


class CT2Translator(Translator):
    """A `Translator` that searches with CTranslate2 on a model written by `export_ct2`.

    Greedy search gives the same tokens as the PyTorch engine (up to floating-point ties). Beam
    search differs slightly, for two reasons. CTranslate2 divides a hypothesis' log-probability by
    length^α, not by the GNMT penalty ((5 + length) / 6)^α that `nmt.search` uses. And it applies
    one maximum output length to a whole batch, which this class enforces per sentence by
    truncating the output.
    """

    def __init__(self, ct2_translator, tokenizer: Tokenizer, metadata: dict[str, Any],
                 model_dir: Path, config: ModelConfig) -> None:
        super().__init__(_NoModel(config.max_positions), tokenizer, metadata, model_dir)
        self.model_config = config
        self.ct2 = ct2_translator
        self.pieces = [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
        self.piece_ids = {piece: i for i, piece in enumerate(self.pieces)}
        # Exports written before the coverage penalty was supported record no head count, and
        # CTranslate2 computes their penalty from the first head of the last layer only.
        self.coverage_heads = metadata[METADATA_KEY].get("coverage_heads")
        self._warned_coverage_heads = False

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", *, compute_type: str = "default",
             threads: int = 0, streams: int = 1) -> CT2Translator:
        """Load a CTranslate2 model directory written by `export_ct2`.

        `compute_type` is CTranslate2's (e.g. "int8" quantizes fp32 weights on load). `threads` is
        the thread count of all searches together (0 lets CTranslate2 choose), and `streams` how
        many batches are searched at once (CTranslate2's `inter_threads`), each on `threads //
        streams` threads (`intra_threads`).
        """
        threads, streams = _check_threads_and_streams(threads, streams)
        ctranslate2 = _import_ctranslate2()
        model_dir = Path(model_dir)
        metadata_path = model_dir / METADATA
        if not metadata_path.is_file() or not (model_dir / TOKENIZER).is_file():
            raise FileNotFoundError(f"{model_dir} is not a model exported by `nmt export-ct2`: "
                                    f"it needs {METADATA} and {TOKENIZER}")
        metadata = read_metadata(metadata_path)
        entry = metadata.get(METADATA_KEY)
        if not isinstance(entry, dict) or not isinstance(entry.get("model_config"), dict):
            raise ValueError(f"{metadata_path} has no {METADATA_KEY!r} entry with a model_config; "
                             "export the model with `nmt export-ct2`")
        config = ModelConfig.from_dict(metadata[METADATA_KEY]["model_config"])
        tokenizer = Tokenizer.from_file(model_dir / TOKENIZER)
        # Creating the engine set the calling thread's torch count to intra_threads (CTranslate2
        # 4.8.5), so the caller's count is put back.
        torch_threads = torch.get_num_threads()
        engine = ctranslate2.Translator(str(model_dir), device=device, compute_type=compute_type,
                                        inter_threads=streams,
                                        intra_threads=max(1, threads // streams) if threads else 0)
        torch.set_num_threads(torch_threads)
        logger.info("loaded CTranslate2 model %s (compute type %s)", model_dir,
                    engine.compute_type)
        translator = cls(engine, tokenizer, metadata, model_dir, config)
        translator.streams = streams
        return translator

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _share_threads(self) -> AbstractContextManager[int]:
        # CTranslate2 gave each of its `streams` searches its own threads at load time
        # (inter_threads), so torch's thread settings are left alone.
        return nullcontext(self.streams)

    def _search_batch(self, units, longest: int, options: SearchOptions, n_best: int,
                      max_length: int | None) -> list[list[Hypothesis]]:
        # Overrides the PyTorch search of `Translator`; `units` carry the encoded source ids.
        eos_piece = self.pieces[self.tokenizer.eos_id]
        sources = [[self.pieces[i] for i in unit.ids] + [eos_piece] for unit in units]
        source_lengths = torch.tensor([len(source) for source in sources])
        limits = max_output_lengths(source_lengths, options.max_length_ratio,
                                    options.max_length_extra, self.model.config.max_positions,
                                    max_length).tolist()
        # NOTE: CTranslate2 4.8.5 crashes (SIGSEGV) on a coverage penalty at beam size 1 with
        # return_scores, so greedy search gets none, as in `nmt.search`.
        beta = options.beta if options.beam_size > 1 else 0.0
        if beta > 0 and self.coverage_heads is None and not self._warned_coverage_heads:
            logger.warning("%s was exported without the coverage head count, so CTranslate2's "
                           "coverage penalty reads one attention head, not the mean of all; "
                           "export it again with `nmt export-ct2`", self.model_dir)
            self._warned_coverage_heads = True
        results = self.ct2.translate_batch(
            sources,
            beam_size=options.beam_size,
            num_hypotheses=n_best,
            length_penalty=options.alpha,
            coverage_penalty=beta,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            max_decoding_length=max(1, max(limits) - 1),
            max_input_length=0,
            return_scores=True,
        )

        found = []
        for unit, result, limit in zip(units, results, limits, strict=True):
            hypotheses = []
            for tokens, score in zip(result.hypotheses, result.scores, strict=True):
                # `nmt.search` stops a sentence after limit - 1 tokens by forcing eos, and
                # CTranslate2 stops after max_decoding_length tokens without one.
                ids = [self.piece_ids[piece] for piece in tokens][: limit - 1]
                hypotheses.append(Hypothesis(self._detokenize(ids, unit.spans), float(score)))
            found.append(hypotheses)
        return found


def add_export_ct2_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `nmt export-ct2` to `parser`."""
    parser.add_argument("--model", required=True, type=Path, help="model directory to convert")
    parser.add_argument("--out", required=True, type=Path, help="output CTranslate2 model folder")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                        help="weight type stored in the export (default: float32; CTranslate2 can "
                             "still quantize fp32 weights when it loads them)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out folder")


def run_export_ct2(args: argparse.Namespace) -> int:
    """Run `nmt export-ct2`; return the exit code."""
    try:
        out = export_ct2(args.model, args.out, quantization=args.quantization, force=args.force)
    except (FileExistsError, ImportError) as error:
        logger.error("%s", error)
        return 2
    print(out)
    return 0
