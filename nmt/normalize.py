"""Text normalization applied identically to tokenizer training, model training and translation.

Unicode NFC alone leaves Devanagari text with several spellings of the same word:

- NFC decomposes the precomposed nukta letters U+0958..U+095F (क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़) into base + U+093C,
  because they are composition exclusions, but it composes ऩ ऱ ऴ into U+0929, U+0931, U+0934.
  This module writes every nukta letter as base consonant + U+093C.
- Zero-width space, BOM and word joiner carry no text and are removed.
- ZWJ and ZWNJ only choose glyph shapes (half forms, explicit virama); they never change the word,
  so all of them are removed and both renderings of a conjunct map to one string.
- Devanagari digits ०-९ become ASCII 0-9, the digits of the English output.
- Runs of whitespace fold to one space and the ends are stripped.

The rules are harmless on English text, so both sides of a training pair go through `normalize_text`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_text", "normalize_hindi"]

NUKTA = "\u093c"

# Nukta letters that NFC composes: decompose them to base + nukta like the NFC-excluded ones.
_COMPOSED_NUKTA = {"\u0929": "\u0928" + NUKTA, "\u0931": "\u0930" + NUKTA, "\u0934": "\u0933" + NUKTA}

_INVISIBLE = {
    "\u200b": None,  # zero-width space
    "\u200c": None,  # zero-width non-joiner
    "\u200d": None,  # zero-width joiner
    "\u2060": None,  # word joiner
    "\ufeff": None,  # byte order mark / zero-width no-break space
    "\u00ad": None,  # soft hyphen
}

_DEVANAGARI_DIGITS = {ord("०") + i: str(i) for i in range(10)}

_TABLE = str.maketrans({**_COMPOSED_NUKTA, **_INVISIBLE})
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Return the canonical form of `text` (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_TABLE).translate(_DEVANAGARI_DIGITS)
    return _WHITESPACE.sub(" ", text).strip()


# The Hindi side is the reason these rules exist; the name reads better at call sites.
normalize_hindi = normalize_text
