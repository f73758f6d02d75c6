"""Translation of whole texts: sentence splitting and layout around `Translator.translate`."""

from __future__ import annotations

from collections.abc import Sequence

from nmt.segment import split_text
from nmt.translator import Translator

__all__ = ["translate_lines", "translate_texts"]


def translate_texts(translator: Translator, texts: Sequence[str], *, beam_size: int | None = None
                    ) -> list[str]:
    """Translate multi-sentence texts: every sentence of every text goes into one batch call,
    and each text's newlines, blank lines and untranslatable pieces are kept."""
    segmented = [split_text(text) for text in texts]
    sentences = [s for seg in segmented for s in seg.sentences]
    translations = [t.text for t in translator.translate(sentences, beam_size=beam_size)]
    results, start = [], 0
    for seg in segmented:
        count = len(seg.sentences)
        results.append(seg.join(translations[start:start + count]))
        start += count
    return results


def translate_lines(translator: Translator, lines: Sequence[str], *,
                    beam_size: int | None = None) -> list[str]:
    """Translate one line to one line, for ``nmt translate``."""
    return translate_texts(translator, lines, beam_size=beam_size)
