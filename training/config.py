"""Experiment configuration: one YAML file per run, validated into frozen dataclasses.

Unknown keys are errors at every level, so a misspelt option never silently falls back to its
default. The resolved configuration is written into the run folder as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.cleaning import CleaningConfig
from training.data import SourceSpec

__all__ = [
    "DataConfig",
    "EvalConfig",
    "MarginConfig",
    "ModelShape",
    "OptimConfig",
    "TokenizerConfig",
    "TrainConfig",
    "load_config",
    "save_config",
]


@dataclass(frozen=True)
class ModelShape:
    """`nmt.config.ModelConfig` without the vocabulary size, which the tokenizer decides."""

    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    encoder_layers: int = 4
    decoder_layers: int = 2
    dropout: float = 0.2
    attention_dropout: float = 0.1
    activation: str = "relu"
    max_positions: int = 256
    pre_norm: bool = True
    tie_embeddings: bool = True


@dataclass(frozen=True)
class DataConfig:
    """Sources of the training pairs, their weights and their cleaning.

    `sources` name local files relative to the data directory (``train/bible`` means
    ``train/bible.hi`` + ``train/bible.en``, or a ``.tsv``/``.jsonl`` path) or a Hugging Face
    hub id.
    Every sentence of the `exclude` files is removed from the training data.
    """

    sources: list[SourceSpec] = field(default_factory=list)
    dev: str = "eval/iitb-dev"
    exclude: list[str] = field(
        default_factory=lambda: ["eval/iitb-dev", "eval/iitb-test", "eval/flores-devtest"]
    )
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    placeholders: bool = True  # substitute spans found on both sides by `nmt.protect` placeholders
    max_tokens: int = 200  # pairs longer than this on either side after tokenization are dropped


@dataclass(frozen=True)
class TokenizerConfig:
    """An existing SentencePiece model (`path`), or the size of one to train on the data."""

    path: str | None = None
    vocab_size: int = 8000
    model_type: str = "unigram"


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then inverse-square-root decay (Vaswani et al. 2017, eq. 3)."""

    lr: float = 7e-4  # peak learning rate, reached at the end of warmup
    warmup_steps: int = 4000
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    batch_tokens: int = 4096  # padded source + target tokens per micro-batch on one process
    accumulation: int = 1  # micro-batches per optimizer step
    max_steps: int = 100_000
    max_minutes: float | None = None  # stop (with a checkpoint) after this much training time
    init_warmup_steps: int = 200  # with `init_from`: fresh Adam moments ramp up over these steps
    # Over the last `cooldown_steps` before max_steps the rate falls linearly to zero (0: off).
    cooldown_steps: int = 0
    # Precision of the forward pass. "auto" is bf16 autocast on CUDA and float32 on a CPU.
    # "bf16" also autocasts on a CPU, which helps only on CPUs with AVX512-BF16 or AMX.
    # Weights and optimizer state stay float32.
    precision: str = "auto"

    def __post_init__(self) -> None:
        if not 0 <= self.cooldown_steps <= self.max_steps:
            raise ValueError(f"optim.cooldown_steps must be between 0 and max_steps "
                             f"({self.max_steps}), got {self.cooldown_steps}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"optim.precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {self.precision!r}")


@dataclass(frozen=True)
class MarginConfig:
    """The additive angular margin term (`training.loss`); weight 0 turns it off."""

    weight: float = 0.0  # λ
    margin: float = 0.2  # m, radians
    scale: float = 16.0  # s


@dataclass(frozen=True)
class EvalConfig:
    """Validation and checkpointing intervals, in optimizer steps."""

    every_steps: int = 1000
    bleu_sentences: int = 200  # dev sentences decoded for BLEU/chrF at each validation
    beam_size: int = 1
    samples: int = 3  # sample translations written to the log at each validation
    log_every_steps: int = 50
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 5
    average_last: int = 5  # checkpoints averaged into the released weights


@dataclass(frozen=True)
class TrainConfig:
    name: str
    out_dir: str = "runs"
    seed: int = 1
    threads: int | None = None  # torch intra-op threads; None uses torch's default
    model: ModelShape = field(default_factory=ModelShape)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    margin: MarginConfig = field(default_factory=MarginConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # A model directory whose weights start the run: same shape, same tokenizer. Its step and
    # training minutes carry over, so the schedule continues where that model stopped.
    init_from: str | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def _build(cls: type, values: Any, where: str) -> Any:
    """Convert parsed YAML into `cls`, rejecting unknown keys and values of the wrong kind."""
    if cls is SourceSpec and isinstance(values, str):
        return SourceSpec(values)
    if dataclasses.is_dataclass(cls):
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{where}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(values))
        if missing:
            raise ValueError(f"{where}: missing required keys {', '.join(missing)}")
        return cls(
            **{key: _build(hints[key], value, f"{where}.{key}") for key, value in values.items()}
        )

    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(cls)
        if values is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _build(option, values, where)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{where}: {values!r} is not a valid {cls}")
    if origin is list:
        if not isinstance(values, list):
            raise ValueError(f"{where}: expected a list, got {values!r}")
        (item,) = typing.get_args(cls)
        return [_build(item, value, f"{where}[{i}]") for i, value in enumerate(values)]
    if origin is tuple:
        items = typing.get_args(cls)
        if not isinstance(values, (list, tuple)) or len(values) != len(items):
            raise ValueError(f"{where}: expected {len(items)} values, got {values!r}")
        return tuple(_build(t, v, where) for t, v in zip(items, values, strict=True))
    if cls is float and isinstance(values, (int, float)) and not isinstance(values, bool):
        return float(values)
    if cls in (int, str, bool) and type(values) is cls:
        return values
    raise ValueError(f"{where}: expected {getattr(cls, '__name__', cls)}, got {values!r}")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, values, "config")


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a YAML experiment file; `overrides` replace top-level keys."""
    values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    values.update(overrides or {})
    return config_from_dict(values)


def save_config(config: TrainConfig, path: Path) -> None:
    values = dataclasses.asdict(config)
    values["optim"]["betas"] = list(values["optim"]["betas"])
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
