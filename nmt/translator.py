"""`Translator`: a model directory turned into a function from Hindi strings to English strings.

Each text goes through these steps:

1. `normalize_input`, then a cut into pieces that fit the model: at most `max_source_tokens` tokens
   (`nmt.segment.split_to_fit`, at clause or word boundaries) and at most `MAX_PLACEHOLDERS` spans.
2. `protect` replaces numbers, URLs, Latin text, emoji and other scripts by placeholders. A piece
   with no Devanagari letter left is not translated: it comes back as it is.
3. The pieces are searched in batches of similar length, `streams` batches at once on CPU.
   Unknown and byte-fallback pieces are dropped from the output and the placeholders are
   restored.
4. An output that is empty, still contains Devanagari, repeats itself or reached the maximum output
   length is searched once more with other settings (`Translator._retry_options`). The attempt
   with fewer problems wins, and the problems left are reported as flags (`nmt.quality.FLAGS`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from nmt import gemm
from nmt.config import MAX_BEAM_SIZE, MAX_PENALTIES
from nmt.devices import check_torch_device
from nmt.model_dir import METADATA, load_model_dir
from nmt.normalize import normalize_input
from nmt.protect import MAX_PLACEHOLDERS, find_spans, placeholder, protect, restore
from nmt.quality import (
    FLAG_NOT_HINDI,
    FLAG_REPETITION,
    FLAG_SPLIT,
    FLAG_TRUNCATED,
    NOT_HINDI_SHARE,
    PROBLEM_FLAGS,
    devanagari_share,
    has_devanagari_letters,
    has_repetition_loop,
    output_problems,
    sort_flags,
)
from nmt.search import beam_search, greedy_search, max_output_lengths
from nmt.segment import split_to_fit

__all__ = ["Hypothesis", "SearchOptions", "Translation", "Translator", "needs_translation"]

logger = logging.getLogger(__name__)

# The second search of a sentence whose first output has a problem: repeated 3-grams banned, and,
# where the first search banned them already, greedy search after beam search or the reverse.
RETRY_NO_REPEAT_NGRAM_SIZE = 3
RETRY_BEAM_SIZE = 4


@dataclass(frozen=True)
class Hypothesis:
    """One candidate translation, its score (log-probability over the GNMT length penalty) and
    the problems found in it (`nmt.quality.FLAGS`)."""

    text: str
    score: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Translation:
    """The best translation of one input, its n-best list (best first) and its flags."""

    text: str
    score: float
    alternatives: list[Hypothesis]
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchOptions:
    """Decoding settings; a model directory's ``metadata.json`` may set defaults under "search"."""

    beam_size: int = 4
    alpha: float = 1.0  # GNMT length penalty
    beta: float = 0.0  # GNMT coverage penalty: 0 turns it off
    max_length_ratio: float = 1.5
    max_length_extra: int = 10
    no_repeat_ngram_size: int = 0
    # Source tokens × beam size in one search call. At 8000, 32 iitb-test sentences often lost
    # their longest few to a small, slow batch of their own, and beam 4 ran 1.17 times slower.
    max_batch_tokens: int = 16000
    # The maximum pieces in one search call, or None for no limit besides the token budget.
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "max_length_ratio"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number of at least 0, got {value!r}")
            maximum = MAX_PENALTIES.get(name)
            if maximum is not None and value > maximum:
                raise ValueError(f"{name} must be at most {maximum}, got {value!r}")
        minimums = {"beam_size": 1, "max_length_extra": 0, "no_repeat_ngram_size": 0,
                    "max_batch_tokens": 1}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if gemm.whole_number(value) is None or value < minimum:
                raise ValueError(f"{name} must be a whole number of at least {minimum}, "
                                 f"got {value!r}")
        if self.beam_size > MAX_BEAM_SIZE:
            raise ValueError(f"beam_size must be between 1 and {MAX_BEAM_SIZE}, "
                             f"got {self.beam_size}")
        if self.max_batch_size is not None and (gemm.whole_number(self.max_batch_size) is None
                                                or self.max_batch_size < 1):
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size!r}")

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any],
                      source: str = "metadata.json") -> SearchOptions:
        """Read the "search" section of a model directory's metadata.json.

        Raises ValueError, naming `source` and the setting, when a value has the wrong type or
        range.
        """
        search = metadata.get("search", {})
        if not isinstance(search, dict):
            raise ValueError(f'{source}: "search" must be an object, got {search!r}')
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(search) - known)
        if unknown:
            raise ValueError(f'{source}: unknown "search" settings {", ".join(unknown)}; '
                             f'allowed: {", ".join(sorted(known))}')
        try:
            return cls(**search)
        except ValueError as error:
            raise ValueError(f'{source}: invalid "search" setting: {error}') from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class _Unit:
    """One piece of input that fits the model: a whole text, or part of a long one.

    `ids` is empty for a piece that is passed through without translation.
    """

    text_index: int
    source: str
    spans: tuple[str, ...]
    ids: list[int]
    hypotheses: list[Hypothesis] = field(default_factory=list)


class Translator:
    """Translate Hindi text with a model directory, batching inputs of similar length together."""

    def __init__(self, model, tokenizer, metadata: dict[str, Any], model_dir: Path) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.model_dir = model_dir
        self.options = SearchOptions.from_metadata(metadata, str(Path(model_dir) / METADATA))
        self.streams = 1
        # The source gets an eos token, so one position less than the model has.
        self.max_source_tokens = model.config.max_positions - 1
        self._dropped_ids = {tokenizer.unk_id} | {
            i for i in range(tokenizer.vocab_size) if tokenizer.is_byte(i)
        }

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu") -> Translator:
        """Load a model directory (see `nmt.model_dir`)."""
        model_dir = Path(model_dir)
        gemm.backend()  # a wrong NMT_GEMM fails here, not at the first translation
        check_torch_device(device)
        model, tokenizer, metadata = load_model_dir(model_dir, device)
        logger.info("loaded model %s (%d parameters)", model_dir,
                    sum(p.numel() for p in model.parameters()))
        return cls(model, tokenizer, metadata, model_dir)

    @property
    def device(self) -> torch.device:
        return self.model.embedding.weight.device

    @property
    def streams(self) -> int:
        """Number of batches of one call searched at once on CPU (default 1), each on its own
        Python thread and its share of the inference threads (`nmt.gemm.split_threads`).

        Call `nmt.gemm.use_worker_thread_backend` before loading when setting it above 1. The
        products then run on that backend, which rounds differently, so an output can differ
        where two hypotheses' scores nearly tie.
        """
        return self._streams

    @streams.setter
    def streams(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"streams must be a whole number of at least 1, got {value!r}")
        self._streams = value

    def count_tokens(self, text: str) -> int:
        """Return the number of source tokens the model reads for `text`, spans as placeholders."""
        return self._count_normalized(normalize_input(text))

    def _count_normalized(self, text: str) -> int:
        return len(self.tokenizer.encode(protect(text).text, normalize=False))

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
        pieces' translations are joined, so nothing is cut. Empty texts translate to "". Text
        without Devanagari letters comes back normalized but untranslated. `max_length` caps the
        output of each piece at that many tokens, not counting eos.
        """
        # SearchOptions checks the beam size.
        options = self.options if beam_size is None else replace(self.options, beam_size=beam_size)
        if not 1 <= n_best <= options.beam_size:
            raise ValueError(f"n_best must be between 1 and the beam size ({options.beam_size})")

        # The search's length limit counts the eos token that ends an output.
        limit = None if max_length is None else max_length + 1

        pieces: list[list[_Unit]] = [self._prepare(index, text) for index, text in enumerate(texts)]
        units = [unit for text_units in pieces for unit in text_units]
        searched = [unit for unit in units if unit.ids]
        found = self._search(searched, options, n_best, limit)
        for unit, hypotheses in zip(searched, found, strict=True):
            unit.hypotheses = hypotheses
        self._retry(searched, options, n_best, limit)
        for unit in units:
            unit.hypotheses = _finished(unit)
        return [self._combine(text, text_units)
                for text, text_units in zip(texts, pieces, strict=True)]

    def _prepare(self, index: int, text: str) -> list[_Unit]:
        text = normalize_input(text)
        if not text:
            return []
        units = []
        for chunk in split_to_fit(text, self.max_source_tokens, self._count_normalized):
            for piece in _split_spans(chunk):
                protected = protect(piece)
                if not has_devanagari_letters(protected.text):
                    units.append(_Unit(index, piece, protected.spans, []))
                    continue
                ids = self.tokenizer.encode(protected.text, normalize=False)
                if len(ids) > self.max_source_tokens:
                    # split_to_fit counts the whole piece; protect may find fewer spans in a part.
                    logger.warning("a piece of %d tokens is cut to the model's %d source tokens",
                                   len(ids), self.max_source_tokens)
                    ids = ids[: self.max_source_tokens]
                units.append(_Unit(index, piece, protected.spans, ids))
        return units

    def _search(self, units: list[_Unit], options: SearchOptions, n_best: int,
                max_length: int | None) -> list[list[Hypothesis]]:
        def search(batch: list[int]) -> list[list[Hypothesis]]:
            batch_units = [units[i] for i in batch]
            longest = max(len(unit.ids) for unit in batch_units) + 1
            return self._search_batch(batch_units, longest, options, n_best, max_length)

        results: list[list[Hypothesis]] = [[] for _ in units]
        batches = _batches([len(unit.ids) for unit in units], options)
        for batch, found in zip(batches, self._map(search, batches), strict=True):
            for index, hypotheses in zip(batch, found, strict=True):
                if not hypotheses:  # a search returns at least one; an empty list is a bug
                    logger.error("the search returned no hypothesis for a piece of %d tokens",
                                 len(units[index].ids))
                    hypotheses = [Hypothesis("", 0.0)]
                results[index] = self._check(units[index], _distinct(hypotheses), options,
                                             max_length)
        return results

    def _map(self, search: Callable[[list[int]], list[list[Hypothesis]]],
             batches: list[list[int]]) -> list[list[list[Hypothesis]]]:
        """Return `search` of each batch, running `streams` of them at once where that applies.

        While one search decodes the last few sentences of its batch, whose steps cost more in
        per-operation overhead than in arithmetic, another keeps the other cores busy.
        """
        if self.streams == 1 or len(batches) <= 1 or self.device.type != "cpu":
            return [search(batch) for batch in batches]
        with self._share_threads() as searches:
            if searches == 1:  # a single thread to share, so no pool
                return [search(batch) for batch in batches]
            # The batches come shortest sources first. The longest go first, so that none of
            # them runs alone at the end.
            order = list(reversed(range(len(batches))))
            with ThreadPoolExecutor(searches) as pool:
                found = dict(zip(order, pool.map(search, [batches[i] for i in order]),
                                 strict=True))
        return [found[i] for i in range(len(batches))]

    def _share_threads(self) -> AbstractContextManager[int]:
        """Return a context that shares the inference threads among `streams` searches and
        yields how many may run at once."""
        return gemm.split_threads(self.streams)

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
                                beta=options.beta, **common)
        return [[Hypothesis(self._detokenize(h.tokens, unit.spans), h.score) for h in hypotheses]
                for unit, hypotheses in zip(units, found, strict=True)]

    def _detokenize(self, tokens: list[int], spans: tuple[str, ...]) -> str:
        # Unknown and byte-fallback pieces would decode to "⁇", stray bytes or U+FFFD.
        kept = [token for token in tokens if token not in self._dropped_ids]
        text = self.tokenizer.decode(kept).replace("\ufffd", "")
        return " ".join(restore(text, spans).split())

    def _check(self, unit: _Unit, hypotheses: list[Hypothesis], options: SearchOptions,
               max_length: int | None) -> list[Hypothesis]:
        """Return `hypotheses` with the problems of each in its flags."""
        limit = int(max_output_lengths(torch.tensor([len(unit.ids) + 1]), options.max_length_ratio,
                                       options.max_length_extra, self.model.config.max_positions,
                                       max_length)[0])
        checked = []
        for hypothesis in hypotheses:
            problems = set(output_problems(hypothesis.text, unit.spans))
            # The search ends an output after limit - 1 tokens by forcing eos.
            if self._output_tokens(hypothesis.text, unit.spans) >= limit - 1:
                problems.add(FLAG_TRUNCATED)
            checked.append(replace(hypothesis, flags=sort_flags(problems)))
        return checked

    def _output_tokens(self, text: str, spans: tuple[str, ...]) -> int:
        # NOTE: the output is re-encoded because a search engine (such as CTranslate2) may return
        # text only. SentencePiece may segment the text in fewer pieces than the search produced.
        for index, span in enumerate(spans):
            text = text.replace(span, placeholder(index), 1)
        return len(self.tokenizer.encode(text, normalize=False))

    def _retry_options(self, options: SearchOptions) -> SearchOptions:
        if options.no_repeat_ngram_size < RETRY_NO_REPEAT_NGRAM_SIZE:
            return replace(options, no_repeat_ngram_size=RETRY_NO_REPEAT_NGRAM_SIZE)
        return replace(options, beam_size=1 if options.beam_size > 1 else RETRY_BEAM_SIZE)

    def _retry(self, units: list[_Unit], options: SearchOptions, n_best: int,
               max_length: int | None) -> None:
        """Search once more each unit whose best output has a problem; keep the better attempt."""
        failed = [unit for unit in units if _needs_retry(unit.hypotheses[0], max_length)]
        if not failed:
            return
        retry_options = self._retry_options(options)
        retry_n_best = min(n_best, retry_options.beam_size)
        logger.debug("searching %d of %d pieces again with beam size %d and no repeated %d-grams",
                     len(failed), len(units), retry_options.beam_size,
                     retry_options.no_repeat_ngram_size)
        again = self._search(failed, retry_options, retry_n_best, max_length)
        for unit, hypotheses in zip(failed, again, strict=True):
            if len(hypotheses[0].flags) < len(unit.hypotheses[0].flags):
                unit.hypotheses = hypotheses

    def _combine(self, text: str, units: list[_Unit]) -> Translation:
        if not units:
            return Translation("", 0.0, [Hypothesis("", 0.0)])

        flags = {flag for unit in units for flag in unit.hypotheses[0].flags}
        share = devanagari_share(text)
        if share is not None and share < NOT_HINDI_SHARE:
            flags.add(FLAG_NOT_HINDI)
        if len(units) == 1:
            best = units[0].hypotheses[0]
            return Translation(best.text, best.score, units[0].hypotheses, sort_flags(flags))

        flags.add(FLAG_SPLIT)
        best_texts = [unit.hypotheses[0].text for unit in units]
        joined = " ".join(piece for piece in best_texts if piece)
        if has_repetition_loop(joined):  # a loop across pieces, each too short to show one
            flags.add(FLAG_REPETITION)
        searched = [unit.hypotheses[0].score for unit in units if unit.ids]
        score = sum(searched) / len(searched) if searched else 0.0
        return Translation(joined, score, [Hypothesis(joined, score)], sort_flags(flags))


def needs_translation(text: str) -> bool:
    """Check whether `text` has Devanagari letters outside protected spans, the rule by which
    `Translator` translates a piece or passes it through unchanged."""
    return has_devanagari_letters(protect(normalize_input(text)).text)


def _batches(lengths: list[int], options: SearchOptions) -> list[list[int]]:
    """Group piece indices by source length into batches of at most `max_batch_tokens` source
    tokens (eos included) times the beam size and at most `max_batch_size` pieces.

    The indices of a batch have similar lengths, and the batches come shortest first.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    batch: list[int] = []
    for position, index in enumerate(order):
        batch.append(index)
        if position + 1 == len(order):
            break
        next_longest = lengths[order[position + 1]] + 1
        full = (next_longest * (len(batch) + 1) * options.beam_size > options.max_batch_tokens
                or (options.max_batch_size is not None
                    and len(batch) >= options.max_batch_size))
        if full:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def _split_spans(text: str) -> list[str]:
    """Cut `text` at spaces so that each piece has at most `MAX_PLACEHOLDERS` spans."""
    pieces = []
    spans = find_spans(text)
    while len(spans) > MAX_PLACEHOLDERS:
        last_end, next_start = spans[MAX_PLACEHOLDERS - 1][1], spans[MAX_PLACEHOLDERS][0]
        space = text.rfind(" ", last_end, next_start)
        cut = space if space != -1 else next_start
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
        spans = find_spans(text)
    pieces.append(text)
    return [piece for piece in pieces if piece]


def _distinct(hypotheses: list[Hypothesis]) -> list[Hypothesis]:
    """Keep the best-scoring hypothesis of each output text.

    Different token sequences can give one text, for example when they differ only in dropped
    unknown pieces or in where a protected span is restored.
    """
    best: dict[str, Hypothesis] = {}
    for hypothesis in hypotheses:
        if hypothesis.text not in best or hypothesis.score > best[hypothesis.text].score:
            best[hypothesis.text] = hypothesis
    return sorted(best.values(), key=lambda hypothesis: hypothesis.score, reverse=True)


def _needs_retry(best: Hypothesis, max_length: int | None) -> bool:
    # Reaching a max_length the caller set is expected; another search would reach it too.
    if max_length is not None and best.flags == (FLAG_TRUNCATED,):
        return False
    return any(flag in PROBLEM_FLAGS for flag in best.flags)


def _finished(unit: _Unit) -> list[Hypothesis]:
    """Return the unit's final hypotheses, or its text for a unit passed through."""
    if not unit.ids:
        return [Hypothesis(unit.source, 0.0)]
    return unit.hypotheses
