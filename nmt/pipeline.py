"""Translation of whole texts: sentence splitting and layout around `Translator.translate`.

`nmt translate` and the HTTP service share these steps. `segment_texts` cuts each text into the
sentences that go to the model and the literal text around them, any `Translator.translate` call
translates the sentences (the service batches them across requests in between), and `assemble`
puts each text back together. `translate_texts` runs the three steps in one call.

The layout survives: every line break and blank line stays, and sentences keep their order. A
segment with nothing to translate (a number, a URL, punctuation, emoji) comes back unchanged,
except that Devanagari digits are written as ASCII digits, like in translated sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nmt.normalize import ascii_digits
from nmt.quality import FLAG_NOT_HINDI, NOT_HINDI_SHARE, devanagari_share, sort_flags
from nmt.segment import Segmented, split_text
from nmt.translator import needs_translation

__all__ = ["TextResult", "assemble", "segment_texts", "translate_lines", "translate_texts"]


class SentenceTranslator(Protocol):
    """The part of `nmt.translator.Translator` that the pipeline calls."""

    def translate(self, texts: Sequence[str], *, beam_size: int | None = None, n_best: int = 1,
                  max_length: int | None = None) -> list[Any]: ...


@dataclass(frozen=True)
class TextResult:
    """Translation of one input text, with its score, next-best alternatives and flags.

    `sentences` pairs each sentence sent to the model with its best translation. `flags` are the
    sentences' flags and, for the whole text, ``not_hindi`` (see `nmt.quality.FLAGS`).
    """

    translation: str
    score: float
    alternatives: list[str]
    alternative_scores: list[float] = field(default_factory=list)
    sentences: list[tuple[str, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def segment_texts(texts: Sequence[str]) -> list[Segmented]:
    """Split each text into sentences and the literal text around them.

    Sentences are not cut to the model's length here: the translator cuts a long one into pieces
    and flags it ``split``.
    """
    return [split_text(text) for text in texts]


def assemble(item: Segmented, translations: Sequence[Any], n_best: int = 1) -> TextResult:
    """Join one text's sentence translations (`Translation` objects) back into its layout.

    With n_best > 1, the k-th alternative of a text joins the k-th hypothesis of each of its
    sentences, or the sentence's last hypothesis when it has fewer. An alternative whose text
    equals the best one or an earlier alternative is left out.
    """
    layout = Segmented(item.sentences, tuple(ascii_digits(literal) for literal in item.literals))
    flags = _text_flags(item, translations)
    if not translations:  # nothing to translate: numbers, punctuation or URLs only
        return TextResult(translation=layout.join([]), score=0.0, alternatives=[], flags=flags)

    best = layout.join([translation.text for translation in translations])
    # A sentence passed through untranslated has score 0.0, the best log-probability there is, so
    # scores average over the translated sentences only.
    translated = [index for index, sentence in enumerate(item.sentences)
                  if needs_translation(sentence)]
    score = _mean([translations[index].score for index in translated])

    hypotheses = [translation.alternatives or [translation] for translation in translations]
    available = max(len(hyps) for hyps in hypotheses)
    alternatives = []
    alternative_scores = []
    for rank in range(1, min(n_best, available)):
        chosen = [hyps[min(rank, len(hyps) - 1)] for hyps in hypotheses]
        text = layout.join([hypothesis.text for hypothesis in chosen])
        if text == best or text in alternatives:
            continue
        alternatives.append(text)
        alternative_scores.append(_mean([chosen[index].score for index in translated]))

    sentences = [
        (sentence, translation.text)
        for sentence, translation in zip(item.sentences, translations, strict=True)
    ]
    return TextResult(
        translation=best,
        score=score,
        alternatives=alternatives,
        alternative_scores=alternative_scores,
        sentences=sentences,
        flags=flags,
    )


def _mean(scores: list[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0


def _text_flags(item: Segmented, translations: Sequence[Any]) -> list[str]:
    # A Hindi text that quotes one English sentence is still Hindi: not_hindi is decided on the
    # whole text, the other flags come from its sentences.
    flags = {flag for translation in translations for flag in getattr(translation, "flags", ())}
    flags.discard(FLAG_NOT_HINDI)
    share = devanagari_share(item.join(item.sentences))
    if share is not None and share < NOT_HINDI_SHARE:
        flags.add(FLAG_NOT_HINDI)
    return list(sort_flags(flags))


def translate_texts(
    translator: SentenceTranslator,
    texts: Sequence[str],
    *,
    beam_size: int | None = None,
    n_best: int = 1,
    max_length: int | None = None,
) -> list[TextResult]:
    """Translate multi-sentence texts, keeping each text's layout; results are in input order.

    Every sentence of every text goes into one `translate` call.
    """
    segmented = segment_texts(texts)
    sentences = [sentence for item in segmented for sentence in item.sentences]
    translations = translator.translate(sentences, beam_size=beam_size, n_best=n_best,
                                        max_length=max_length)
    results, start = [], 0
    for item in segmented:
        count = len(item.sentences)
        results.append(assemble(item, translations[start:start + count], n_best))
        start += count
    return results


def translate_lines(translator: SentenceTranslator, lines: Sequence[str], *,
                    beam_size: int | None = None) -> list[str]:
    """Translate one line to one line, for ``nmt translate``."""
    results = translate_texts(translator, lines, beam_size=beam_size)
    return [result.translation for result in results]
