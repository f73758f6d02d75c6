"""Training checkpoints: save, resume from the latest, and average the last few."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

__all__ = ["average_checkpoints", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

logger = logging.getLogger(__name__)


def _step_of(path: Path) -> int:
    return int(path.stem.split("_")[-1])


def list_checkpoints(directory: Path) -> list[Path]:
    """Return the ``step_N.pt`` files of `directory`, oldest step first."""
    return sorted(Path(directory).glob("step_*.pt"), key=_step_of)


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``step_N.pt`` atomically and delete all but the newest `keep` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step}.pt"
    partial = path.with_suffix(".pt.partial")
    torch.save(state, partial)
    partial.replace(path)  # a kill during torch.save never leaves a truncated step_N.pt
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint of tensors, numbers and strings without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def average_checkpoints(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Return the element-wise mean of the model weights in `paths`."""
    if not paths:
        raise ValueError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        weights = load_checkpoint(path)["model"]
        for name, tensor in weights.items():
            total[name] = total.get(name, 0) + tensor.double()
    logger.info("averaged %d checkpoints: %s", len(paths), ", ".join(p.name for p in paths))
    return {name: (tensor / len(paths)).float() for name, tensor in total.items()}
