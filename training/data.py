"""Parallel Hindi-English training data: loading and source weighting.

Every source form is read into a `datasets.Dataset` with exactly two string columns, ``hi`` and
``en``, so everything after loading has one code path. The forms `load_parallel` accepts:

- the Hugging Face Hub dataset ``cfilt/iitb-english-hindi``, whose rows hold a ``translation``
  dict with ``en`` and ``hi`` keys (needs network access);
- an aligned pair of line files given as a path prefix: ``DIR/NAME`` reads ``DIR/NAME.hi`` and
  ``DIR/NAME.en``, where line i of one file translates line i of the other;
- a ``.tsv`` file with the Hindi and English segment of a pair on each line, optionally under a
  ``hi``/``en`` header row that may give the columns in either order;
- a ``.jsonl`` file of objects with ``hi`` and ``en`` keys or with a ``translation`` dict.

Local files are split into lines by `training.evaluate.read_lines`, which breaks only on "\\n".

Cleaning lives in `training.cleaning`, and its public names are re-exported here.
`prepare_training_data` applies source weights after cleaning, because deduplication would
otherwise remove the repeats that upsampling adds.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from training.cleaning import CleaningConfig, CleaningReport, clean_pairs, load_eval_texts
from training.evaluate import read_lines

if TYPE_CHECKING:  # imported where used, so the configuration loads without the train extra
    import datasets

__all__ = [
    "HUB_DATASETS",
    "CleaningConfig",
    "CleaningReport",
    "SourceSpec",
    "apply_source_weights",
    "clean_pairs",
    "load_eval_texts",
    "load_parallel",
    "load_sources",
    "prepare_training_data",
]

logger = logging.getLogger(__name__)

# Hub datasets whose rows hold a `translation` dict with "hi" and "en" keys.
HUB_DATASETS = frozenset({"cfilt/iitb-english-hindi"})


def pair_features() -> datasets.Features:
    """Return the features of a pair dataset: string columns ``hi`` and ``en``."""
    import datasets

    return datasets.Features({"hi": datasets.Value("string"), "en": datasets.Value("string")})


# --- loading -----------------------------------------------------------------------------------


def load_parallel(source: str, *, split: str = "train") -> datasets.Dataset:
    """Load one parallel source into a Dataset with the string columns ``hi`` and ``en``.

    `split` selects the split of a Hub dataset. Local files hold a single split, so any other
    value than "train" raises ValueError for them. Raises FileNotFoundError when `source` is
    neither a known Hub id nor an existing local file or file pair.
    """
    import datasets

    if source in HUB_DATASETS:
        return _load_hub(source, split)

    path = Path(source)
    hi_path, en_path = Path(f"{source}.hi"), Path(f"{source}.en")
    is_pair = hi_path.is_file() and en_path.is_file()
    if not (is_pair or path.is_file()):
        raise FileNotFoundError(
            f"parallel source {source!r} not found: expected an aligned pair {hi_path} and "
            f"{en_path}, a .tsv or .jsonl file, or one of the Hub datasets {sorted(HUB_DATASETS)}"
        )
    if split != "train":
        raise ValueError(f"local source {source!r} has only the 'train' split, not {split!r}")

    if is_pair:
        hi, en = _read_aligned_pair(hi_path, en_path)
    elif path.suffix == ".tsv":
        hi, en = _read_tsv(path)
    elif path.suffix == ".jsonl":
        hi, en = _read_jsonl(path)
    else:
        raise ValueError(f"unsupported parallel file {path}: expected a .tsv or .jsonl suffix")

    logger.info("loaded %d pairs from %s", len(hi), source)
    return datasets.Dataset.from_dict({"hi": hi, "en": en}, features=pair_features())


def _load_hub(name: str, split: str) -> datasets.Dataset:
    # NOTE: never run in tests, because it needs network access. It expects rows shaped
    # {"translation": {"en": ..., "hi": ...}} and data files that datasets >= 4 can load without
    # a loading script.
    import datasets

    dataset = datasets.load_dataset(name, split=split)

    def unpack(batch: dict[str, list]) -> dict[str, list[str]]:
        pairs = batch["translation"]
        return {"hi": [pair["hi"] for pair in pairs], "en": [pair["en"] for pair in pairs]}

    dataset = dataset.map(unpack, batched=True, remove_columns=dataset.column_names)
    logger.info("loaded %d pairs from Hub dataset %s (split %s)", len(dataset), name, split)
    return dataset.cast(pair_features())


def _read_aligned_pair(hi_path: Path, en_path: Path) -> tuple[list[str], list[str]]:
    hi, en = read_lines(hi_path), read_lines(en_path)
    if len(hi) != len(en):
        raise ValueError(
            f"aligned files differ in line count: {hi_path} has {len(hi)} lines, "
            f"{en_path} has {len(en)} lines"
        )
    return hi, en


def _read_tsv(path: Path) -> tuple[list[str], list[str]]:
    rows = [line.split("\t") for line in read_lines(path)]
    hi_column, en_column = 0, 1
    if rows and [cell.strip().lower() for cell in rows[0]] in (["hi", "en"], ["en", "hi"]):
        header = [cell.strip().lower() for cell in rows.pop(0)]
        hi_column, en_column = header.index("hi"), header.index("en")
        first_line = 2
    else:
        first_line = 1

    hi, en = [], []
    for number, row in enumerate(rows, start=first_line):
        if len(row) != 2:
            raise ValueError(f"{path}:{number}: expected 2 tab-separated fields, found {len(row)}")
        hi.append(row[hi_column])
        en.append(row[en_column])
    return hi, en


def _read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    hi, en = [], []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: invalid JSON: {error}") from error
        pair = record.get("translation", record) if isinstance(record, dict) else None
        if not (
            isinstance(pair, dict)
            and isinstance(pair.get("hi"), str)
            and isinstance(pair.get("en"), str)
        ):
            raise ValueError(
                f"{path}:{number}: expected an object with string 'hi' and 'en' keys "
                "or a 'translation' object holding them"
            )
        hi.append(pair["hi"])
        en.append(pair["en"])
    return hi, en


# --- sources and weights -----------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """A named training source and its sampling weight.

    `name` is a file or file-pair prefix under the data directory, or a Hub id from
    `HUB_DATASETS`. A weight below 1 keeps that fraction of the pairs. A weight above 1 repeats
    every pair int(weight) times and adds a sample of the pairs for the fractional part.
    """

    name: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("source name must not be empty")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(
                f"source {self.name!r}: weight must be a positive number, got {self.weight}"
            )


def _resolve_source(data_dir: Path, name: str) -> str:
    return name if name in HUB_DATASETS else str(Path(data_dir) / name)


def _load_unweighted(data_dir: Path, sources: list[SourceSpec]) -> datasets.Dataset:
    import datasets

    if not sources:
        raise ValueError("no training sources given")
    names = [spec.name for spec in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")

    parts = []
    for spec in sources:
        part = load_parallel(_resolve_source(data_dir, spec.name))
        parts.append(part.add_column("source", [spec.name] * len(part)))
    return datasets.concatenate_datasets(parts)


def _weighted_indices(count: int, weight: float, rng: random.Random) -> list[int]:
    repeats = math.floor(weight)
    sampled = round((weight - repeats) * count)
    indices = list(range(count)) * repeats
    indices += sorted(rng.sample(range(count), sampled))
    return indices


def apply_source_weights(
    dataset: datasets.Dataset, sources: list[SourceSpec], *, seed: int = 0
) -> datasets.Dataset:
    """Subsample or repeat the rows of each source by its weight, keyed on the ``source`` column.

    The sample for each source depends only on `seed` and the source name, so adding or
    reordering sources does not change which pairs another source keeps.
    """
    rows_by_source: dict[str, list[int]] = {spec.name: [] for spec in sources}
    for row, name in enumerate(dataset["source"]):
        if name not in rows_by_source:
            raise ValueError(f"dataset row {row} has source {name!r}, which has no SourceSpec")
        rows_by_source[name].append(row)

    selected: list[int] = []
    for spec in sources:
        rows = rows_by_source[spec.name]
        # A string seed is hashed with SHA-512 by `random`, so it is stable across processes.
        rng = random.Random(f"{seed}:{spec.name}")
        picked = _weighted_indices(len(rows), spec.weight, rng)
        selected.extend(rows[i] for i in picked)
        logger.info(
            "source %s: %d pairs, weight %g -> %d", spec.name, len(rows), spec.weight, len(picked)
        )
    return dataset.select(selected)


def load_sources(data_dir: Path, sources: list[SourceSpec], *, seed: int = 0) -> datasets.Dataset:
    """Load, weight and concatenate `sources`, adding a ``source`` column with each pair's source.

    Cleaning the result with `clean_pairs` and ``dedupe=True`` would remove the repeats that a
    weight above 1 adds, so training data should come from `prepare_training_data`.
    """
    return apply_source_weights(_load_unweighted(data_dir, sources), sources, seed=seed)


# --- training set ------------------------------------------------------------------------------


def prepare_training_data(
    data_dir: Path,
    sources: list[SourceSpec],
    config: CleaningConfig,
    *,
    exclude: set[str] | frozenset[str] = frozenset(),
    seed: int = 0,
) -> tuple[datasets.Dataset, CleaningReport]:
    """Load `sources`, clean them together, then apply the source weights.

    Cleaning runs before weighting, so deduplication removes only real duplicates and not the
    repeats that a weight above 1 adds. A pair found in two sources stays in the one listed first.
    The report counts unweighted pairs.
    """
    dataset = _load_unweighted(data_dir, sources)
    cleaned, report = clean_pairs(dataset, config, exclude=exclude)
    return apply_source_weights(cleaned, sources, seed=seed), report
