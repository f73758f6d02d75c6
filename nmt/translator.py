"""`Translator`: a model directory turned into a function from Hindi strings to English strings."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from nmt.model_dir import load_model_dir
from nmt.normalize import normalize_text
from nmt.protect import protect, restore
from nmt.search import beam_search, greedy_search

__all__ = ["Hypothesis", "SearchOptions", "Translation", "Translator"]

logger = logging.getLogger(__name__)

_CLAUSE_END = (",", ";", ":", "।", "?", "!")


@dataclass(frozen=True)
class Hypothesis:
    """One candidate translation and its score (log-probability over the GNMT length penalty)."""

    text: str
    score: float


@dataclass(frozen=True)
class Translation:
    """The best translation of one input and its n-best list, best first."""

    text: str
    score: float
    alternatives: list[Hypothesis]


@dataclass(frozen=True)
class SearchOptions:
    """Decoding settings; a model directory's ``metadata.json`` may set defaults under "search"."""

    beam_size: int = 4
    alpha: float = 1.0
    max_length_ratio: float = 1.5
    max_length_extra: int = 10
    no_repeat_ngram_size: int = 0
    max_batch_tokens: int = 8000  # source tokens × beam size in one search call

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> SearchOptions:
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in metadata.get("search", {}).items() if key in known}
        return cls(**values)


@dataclass
class _Unit:
    """One piece of input that fits the model: a whole text, or part of a long one."""

    text_index: int
    spans: tuple[str, ...]
    ids: list[int]


class Translator:
    """Translate Hindi text with a model directory, batching inputs of similar length together."""

    def __init__(self, model, tokenizer, metadata: dict[str, Any], model_dir: Path) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.model_dir = model_dir
        self.options = SearchOptions.from_metadata(metadata)
        # The source gets an eos token, so one position less than the model has.
        self.max_source_tokens = model.config.max_positions - 1

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu") -> Translator:
        """Load a model directory (see `nmt.model_dir`)."""
        model_dir = Path(model_dir)
        model, tokenizer, metadata = load_model_dir(model_dir, device)
        logger.info("loaded model %s (%d parameters)", model_dir,
                    sum(p.numel() for p in model.parameters()))
        return cls(model, tokenizer, metadata, model_dir)

    @property
    def device(self) -> torch.device:
        return self.model.embedding.weight.device

    def count_tokens(self, text: str) -> int:
        """Return the number of source tokens `text` encodes to."""
        return len(self.tokenizer.encode(text))

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam_size: int | None = None,
        n_best: int = 1,
        max_length: int | None = None,
    ) -> list[Translation]:
        """Translate each text as one segment; the result is in input order.

        A text longer than the model's positions is split at clause or word boundaries and its
        pieces' translations are joined, so nothing is cut. Empty texts translate to "".
        """
        options = self.options if beam_size is None else replace(self.options, beam_size=beam_size)
        if not 1 <= n_best <= options.beam_size:
            raise ValueError(f"n_best must be between 1 and the beam size ({options.beam_size})")

        units = [unit for index, text in enumerate(texts) for unit in self._prepare(index, text)]
        outputs = self._search(units, options, n_best, max_length)

        pieces: list[list[list[Hypothesis]]] = [[] for _ in texts]
        for unit, hypotheses in zip(units, outputs):
            pieces[unit.text_index].append(hypotheses)
        return [self._combine(parts) for parts in pieces]

    def _prepare(self, index: int, text: str) -> list[_Unit]:
        text = normalize_text(text)
        if not text:
            return []
        units = []
        for chunk in self._split_to_fit(text):
            protected = protect(chunk)
            ids = self.tokenizer.encode(protected.text, normalize=False)
            units.append(_Unit(index, protected.spans, ids[: self.max_source_tokens - 1]))
        return units

    def _split_to_fit(self, text: str) -> list[str]:
        """Split `text` into pieces that each fit the model, preferring clause ends over words."""
        limit = self.max_source_tokens - 1
        if len(self.tokenizer.encode(text, normalize=False)) <= limit:
            return [text]
        pieces, current = [], []
        for word in text.split(" "):
            candidate = " ".join([*current, word])
            if current and len(self.tokenizer.encode(candidate, normalize=False)) > limit:
                cut = max((i + 1 for i, w in enumerate(current) if w.endswith(_CLAUSE_END)),
                          default=len(current))
                pieces.append(" ".join(current[:cut]))
                current = current[cut:]
            current.append(word)
        pieces.append(" ".join(current))
        # A single word can still be too long (a long string without spaces): cut it by characters.
        fitted = []
        for piece in pieces:
            while len(self.tokenizer.encode(piece, normalize=False)) > limit:
                cut = max(1, len(piece) // 2)
                fitted.extend(self._split_to_fit(piece[:cut]))
                piece = piece[cut:]
            fitted.append(piece)
        return [piece for piece in fitted if piece]

    def _search(self, units: list[_Unit], options: SearchOptions, n_best: int,
                max_length: int | None) -> list[list[Hypothesis]]:
        order = sorted(range(len(units)), key=lambda i: len(units[i].ids))
        results: list[list[Hypothesis]] = [[] for _ in units]
        batch: list[int] = []
        for position, unit_index in enumerate(order):
            batch.append(unit_index)
            longest = len(units[unit_index].ids) + 1
            next_longest = (len(units[order[position + 1]].ids) + 1
                            if position + 1 < len(order) else None)
            full = (next_longest is not None
                    and next_longest * (len(batch) + 1) * options.beam_size > options.max_batch_tokens)
            if next_longest is None or full:
                for index, hypotheses in zip(batch, self._search_batch(
                        [units[i] for i in batch], longest, options, n_best, max_length)):
                    results[index] = hypotheses
                batch = []
        return results

    def _search_batch(self, units: list[_Unit], longest: int, options: SearchOptions,
                      n_best: int, max_length: int | None) -> list[list[Hypothesis]]:
        tokenizer = self.tokenizer
        source = torch.full((len(units), longest), tokenizer.pad_id, dtype=torch.long)
        for row, unit in enumerate(units):
            ids = unit.ids + [tokenizer.eos_id]
            source[row, : len(ids)] = torch.tensor(ids)
        source = source.to(self.device)  # (B, S)

        common = dict(bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, alpha=options.alpha,
                      max_length_ratio=options.max_length_ratio,
                      max_length_extra=options.max_length_extra,
                      no_repeat_ngram_size=options.no_repeat_ngram_size, max_length=max_length)
        if options.beam_size == 1:
            found = [[h] for h in greedy_search(self.model, source, **common)]
        else:
            found = beam_search(self.model, source, beam_size=options.beam_size, n_best=n_best,
                                **common)
        return [[Hypothesis(self._detokenize(h.tokens, unit.spans), h.score) for h in hypotheses]
                for unit, hypotheses in zip(units, found)]

    def _detokenize(self, tokens: list[int], spans: tuple[str, ...]) -> str:
        text = self.tokenizer.decode(tokens).replace("\ufffd", "")
        return re.sub(r"\s+", " ", restore(text, spans)).strip()

    @staticmethod
    def _combine(parts: list[list[Hypothesis]]) -> Translation:
        if not parts:
            return Translation("", 0.0, [Hypothesis("", 0.0)])
        if len(parts) == 1:
            best = parts[0][0]
            return Translation(best.text, best.score, parts[0])
        text = " ".join(hypotheses[0].text for hypotheses in parts)
        score = sum(hypotheses[0].score for hypotheses in parts) / len(parts)
        return Translation(text, score, [Hypothesis(text, score)])
