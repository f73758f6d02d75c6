"""From a `TrainConfig` to encoded training pairs, a tokenizer and the dev set."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from nmt.protect import protect_pair
from nmt.tokenizer import Tokenizer
from training.cleaning import load_eval_texts
from training.config import TrainConfig
from training.data import load_parallel, prepare_training_data
from training.tokenizer_training import train_tokenizer

__all__ = ["PreparedData", "prepare_data"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Encoded training pairs (no special tokens) and the raw dev set."""

    tokenizer_path: Path
    sources: list[list[int]]
    targets: list[list[int]]
    dev_sources: list[str]
    dev_references: list[str]


def _side_files(data_dir: Path, name: str) -> list[Path]:
    return [data_dir / f"{name}.hi", data_dir / f"{name}.en"]


def prepare_data(config: TrainConfig, data_dir: Path, run_dir: Path) -> PreparedData:
    """Load, clean, weight, protect and encode the training data; train the tokenizer if needed."""
    data_dir = Path(data_dir)
    exclude_files = [p for name in config.data.exclude for p in _side_files(data_dir, name)]
    missing = [str(p) for p in exclude_files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"evaluation files to exclude are missing: {', '.join(missing)}")
    exclude = load_eval_texts(exclude_files)

    dataset, report = prepare_training_data(data_dir, config.data.sources, config.data.cleaning,
                                            exclude=exclude, seed=config.seed)
    logger.info("cleaning: %s", report)
    hindi, english = dataset["hi"], dataset["en"]
    if config.data.placeholders:
        pairs = [protect_pair(h, e) for h, e in zip(hindi, english, strict=True)]
        hindi, english = [h for h, _ in pairs], [e for _, e in pairs]

    tokenizer_path = _tokenizer_path(config, run_dir, hindi, english)
    tokenizer = Tokenizer.from_file(tokenizer_path)
    sources = tokenizer.encode_batch(hindi, normalize=False)
    targets = tokenizer.encode_batch(english, normalize=False)

    limit = min(config.data.max_tokens, config.model.max_positions - 1)
    keep = [i for i, (s, t) in enumerate(zip(sources, targets, strict=True))
            if len(s) < limit and len(t) < limit]
    logger.info("training pairs: %d after weighting, %d within %d tokens", len(sources),
                len(keep), limit)

    dev = load_parallel(str(data_dir / config.data.dev))
    return PreparedData(
        tokenizer_path=tokenizer_path,
        sources=[sources[i] for i in keep],
        targets=[targets[i] for i in keep],
        dev_sources=list(dev["hi"]),
        dev_references=list(dev["en"]),
    )


def _tokenizer_path(
    config: TrainConfig, run_dir: Path, hindi: list[str], english: list[str]
) -> Path:
    if config.tokenizer.path and config.init_from:
        raise ValueError("set tokenizer.path or init_from, not both: init_from brings its own")
    if config.tokenizer.path:
        path = Path(config.tokenizer.path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer.path {path} does not exist")
        return path
    if config.init_from:
        # The initial weights' embedding rows belong to that model's pieces; the run keeps a copy.
        source = Path(config.init_from) / "tokenizer.model"
        if not source.is_file():
            raise FileNotFoundError(f"init_from {config.init_from} has no tokenizer.model")
        path = run_dir / "tokenizer.model"
        if not path.is_file():
            shutil.copyfile(source, path)
        return path
    path = run_dir / "tokenizer.model"
    if not path.is_file():
        # Weighting repeats pairs, so the tokenizer is trained on each distinct sentence once.
        sentences = list(dict.fromkeys(hindi)) + list(dict.fromkeys(english))
        train_tokenizer(
            sentences,
            path,
            vocab_size=config.tokenizer.vocab_size,
            model_type=config.tokenizer.model_type,
        )
    return path
