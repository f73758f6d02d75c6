"""The model's shape, stored in every checkpoint so that a checkpoint alone rebuilds the model,
and the widest beam that translation accepts."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MAX_BEAM_SIZE", "MAX_PENALTIES", "ModelConfig"]


# Wider beams do not improve translations, and memory grows with the beam: a beam of 100000
# filled 22 GB before the process was killed.
MAX_BEAM_SIZE = 64

# Upper limits of the search penalties: GNMT's length penalty α and coverage penalty β. Far
# above any useful value, they keep ((5 + length) / 6) ** α and the scores within float range.
MAX_PENALTIES = {"alpha": 10.0, "beta": 100.0}


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the encoder-decoder Transformer.

    Source, target and output embeddings are one matrix when `tie_embeddings` is true, which needs
    the joint vocabulary this project trains.
    """

    vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "relu"
    max_positions: int = 512
    pre_norm: bool = True
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', not {self.activation!r}")
        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "max_positions"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build a config from a mapping; an unknown key is an error, not silently dropped."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
