"""Text normalization applied identically to tokenizer training, model training and translation.

Unicode NFC alone leaves Devanagari text with several spellings of the same word:

- NFC decomposes the precomposed nukta letters U+0958..U+095F (क़ ख़ ग़ ज़ ड़ ढ़ फ़ य़) into base + U+093C,
  because they are composition exclusions, but it composes ऩ ऱ ऴ into U+0929, U+0931, U+0934.
  This module writes every nukta letter as base consonant + U+093C.
- Zero-width space, BOM and word joiner carry no text and are removed.
- ZWJ and ZWNJ only choose glyph shapes (half forms, explicit virama) and never change the word.
  All of them are removed, so both renderings of a conjunct map to one string.
- Devanagari digits ०-९ become ASCII 0-9, the digits of the English output.
- Runs of whitespace fold to one space and the ends are stripped.

The rules are harmless on English text, so both sides of a training pair go through
`normalize_text`.

Translation input goes through `normalize_input`: the same rules, except that a ZWJ joining two
emoji (👨‍💻, 🏳️‍🌈) stays, because there it changes which picture the sequence shows, and control
and bidirectional formatting characters are removed.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ascii_digits", "normalize_hindi", "normalize_input", "normalize_text"]

NUKTA = "\u093c"

# Nukta letters that NFC composes: decompose them to base + nukta like the NFC-excluded ones.
_COMPOSED_NUKTA = {
    "\u0929": "\u0928" + NUKTA,
    "\u0931": "\u0930" + NUKTA,
    "\u0934": "\u0933" + NUKTA,
}

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

_ZWJ = "\u200d"
# Emoji and the characters that continue an emoji sequence (variation selector 16, skin tones and
# tag characters are inside these ranges). An approximation of Unicode's Extended_Pictographic
# property, which Python's `re` cannot match.
_EMOJI = "\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\ufe0f\U0001f000-\U0001faff\U000e0020-\U000e007f"
_EMOJI_JOINER = re.compile(f"(?<=[{_EMOJI}]){_ZWJ}(?=[{_EMOJI}])")

# C0 and C1 control characters that `\s` does not match, and the bidirectional marks, embeddings,
# overrides and isolates that text copied from right-to-left pages carries. None is part of a word.
_CONTROLS = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def normalize_text(text: str) -> str:
    """Return the canonical form of `text` (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_TABLE).translate(_DEVANAGARI_DIGITS)
    return _WHITESPACE.sub(" ", text).strip()


def normalize_input(text: str) -> str:
    """Return the canonical form of a text to translate: `normalize_text` that keeps emoji whole.

    A ZWJ between two emoji is kept, and control and bidirectional formatting characters are
    removed. On text without those characters the result equals `normalize_text(text)`.
    """
    text = _CONTROLS.sub("", text)
    pieces = _EMOJI_JOINER.split(unicodedata.normalize("NFC", text))
    # Each piece starts and ends next to an emoji, so normalizing it alone strips no inner space.
    return _ZWJ.join(normalize_text(piece) for piece in pieces)


def ascii_digits(text: str) -> str:
    """Return `text` with Devanagari digits ०-९ written as ASCII digits, nothing else changed."""
    return text.translate(_DEVANAGARI_DIGITS)


# The Hindi side is the reason these rules exist; the name reads better at call sites.
normalize_hindi = normalize_text
