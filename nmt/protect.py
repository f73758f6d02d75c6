"""Placeholders for spans that must pass through translation unchanged.

Spans are replaced by placeholder tokens ``｟0｠``, ``｟1｠``, ... before encoding. The tokenizer
has each placeholder as one piece, and training pairs carry the same placeholders wherever a span
occurs verbatim on both sides, so the model learns to copy them. After decoding, `restore` puts
every span back exactly once: a placeholder the model dropped is appended, and a repeated or
unknown one is deleted.

Two sets of span kinds exist:

- Training (`protect_pair`): numbers, URLs, e-mail addresses, @handles, #hashtags and runs of
  ASCII Latin text. The released model was trained with exactly these, so they stay as they are.
- Translation (`protect`, `find_spans`): the training kinds, plus phone numbers, amounts with a
  currency ("Rs. 500/-", "₹ 500"), number ranges and dates ("10-15", "15-08-2024"), temperatures
  ("30°C"), Latin words with diacritics ("Zürich"), and runs of characters that are neither
  Devanagari, Latin, digits nor common punctuation: emoji, symbols such as ✓ or →, and letters of
  other scripts (Chinese, Arabic, Bengali). The tokenizer has no pieces for most of these, so the
  model would see byte pieces or the unknown piece and could write anything for them. As
  placeholders they come back as they were. Spans that touch are merged into one ("5km",
  "₹500👍"), so that no space appears between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_PLACEHOLDERS",
    "find_spans",
    "ProtectedText",
    "placeholder",
    "placeholder_symbols",
    "protect",
    "protect_pair",
    "restore",
]

MAX_PLACEHOLDERS = 16

_OPEN, _CLOSE = "\uff5f", "\uff60"  # fullwidth white parentheses: absent from ordinary text
_PLACEHOLDER = re.compile(_OPEN + r"(\d+)" + _CLOSE)

_TRAILING_PUNCTUATION = ".,;:!?)]}'\"।"

# Alternatives are tried left to right at each position, so longer kinds come first. A Latin word
# directly followed by "@" is the local part of an e-mail address, so the Latin run ends before it.
# These are the training kinds: changing them changes the training data.
_SPAN = re.compile(
    r"""
    (?P<url>(?:https?://|www\.)[^\s<>"]+)
  | (?P<email>[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)
  | (?P<handle>(?<![\w@])@[A-Za-z0-9_]+)
  | (?P<hashtag>(?<![\w#])\#[^\s#.,;:!?।]+)
  | (?P<number>[₹$€£]?\d+(?:[.,:/]\d+)*%?)
  | (?P<latin>[A-Za-z][A-Za-z0-9'&+_-]*(?![\w.+-]*@)
              (?:[ .][A-Za-z][A-Za-z0-9'&+_-]*(?![\w.+-]*@))*)
    """,
    re.VERBOSE,
)

# Latin letters with and without diacritics (Latin-1 Supplement and Latin Extended-A and -B, less
# the signs × and ÷), and what may follow them inside a word, combining diacritics included.
_LATIN_LETTER = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_LATIN_BODY = _LATIN_LETTER + "\u0300-\u036f0-9'’&+_-"

# Characters that are not part of a foreign run: ASCII, Latin-1 punctuation and letters, Latin
# Extended, combining diacritics, the Devanagari blocks, typographic punctuation (dashes, quotes,
# ellipsis, bullet), currency signs and whitespace. The ZWJ of an emoji sequence and variation
# selectors fall outside, so they belong to the emoji's run.
_KNOWN = (
    "\x00-\x7f\u00a0-\u024f\u0300-\u036f\u0900-\u097f\u1cd0-\u1cff\ua8e0-\ua8ff"
    "\u2010-\u2027\u2030-\u205e\u20a0-\u20cf\\s"
)
# A run of foreign characters, with any combining diacritics that follow them.
_FOREIGN_RUN = f"[^{_KNOWN}](?:[^{_KNOWN}]|[\u0300-\u036f])*"

_CURRENCY = "₹$€£¥"
_NUMBER = r"\d+(?:[.,:/]\d+)*(?:%|°[CF]?)?"

# The translation kinds, a superset of `_SPAN`.
_INPUT_SPAN = re.compile(
    rf"""
    (?P<url>(?:https?://|www\.)[^\s<>"]+)
  | (?P<email>[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)
  | (?P<handle>(?<![\w@])@[A-Za-z0-9_]+)
  | (?P<hashtag>(?<![\w#])\#[^\s#.,;:!?।]+)
  | (?P<phone>(?<![\w+])\+\d{{1,3}}(?:[ -]?\d{{2,5}}){{2,4}}(?!\w)
              | (?<!\w)\d{{5}}[ -]\d{{5}}(?!\w))
  | (?P<number>(?:(?<![A-Za-z])(?:Rs\.?|INR)\ ?|[{_CURRENCY}]\ ?)?{_NUMBER}
               (?:\ ?[-–]\ ?[{_CURRENCY}]?{_NUMBER})*(?:/-)?)
  | (?P<latin>[{_LATIN_LETTER}][{_LATIN_BODY}]*(?![\w.+-]*@)
              (?:[ .][{_LATIN_LETTER}][{_LATIN_BODY}]*(?![\w.+-]*@))*)
  | (?P<foreign>{_FOREIGN_RUN}(?:\ {_FOREIGN_RUN})*)
    """,
    re.VERBOSE,
)


def placeholder(index: int) -> str:
    """Return the placeholder token for the span at `index`."""
    return f"{_OPEN}{index}{_CLOSE}"


def placeholder_symbols() -> list[str]:
    """Return every placeholder token, for the tokenizer's user-defined symbols."""
    return [placeholder(i) for i in range(MAX_PLACEHOLDERS)]


@dataclass(frozen=True)
class ProtectedText:
    """Text with protected spans replaced by placeholders; `spans[i]` is behind placeholder i."""

    text: str
    spans: tuple[str, ...]


def _find_spans(text: str, pattern: re.Pattern[str] = _SPAN) -> list[tuple[int, int]]:
    spans = []
    for match in pattern.finditer(text):
        start, end = match.span()
        # A URL or hashtag at the end of a sentence must not swallow its full stop.
        if match.lastgroup in ("url", "hashtag"):
            while end > start and text[end - 1] in _TRAILING_PUNCTUATION:
                end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def find_spans(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) offsets of the spans that `protect` replaces, in order.

    Spans of the translation kinds that touch are merged into one.
    """
    merged: list[tuple[int, int]] = []
    for start, end in _find_spans(text, _INPUT_SPAN):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def protect(text: str) -> ProtectedText:
    """Replace the spans of `text` (see `find_spans`) with placeholders, numbered in order.

    Spans past `MAX_PLACEHOLDERS` stay as plain text for the model to translate, so callers cut a
    text with more spans into pieces first (`nmt.translator.Translator` does).
    """
    pieces: list[str] = []
    spans: list[str] = []
    last = 0
    for start, end in find_spans(text)[:MAX_PLACEHOLDERS]:
        pieces.append(text[last:start])
        pieces.append(placeholder(len(spans)))
        spans.append(text[start:end])
        last = end
    pieces.append(text[last:])
    return ProtectedText("".join(pieces), tuple(spans))


def protect_pair(source: str, target: str) -> tuple[str, str]:
    """Put placeholders into a training pair where a source span occurs once, verbatim, per side.

    A span the target writes differently (a number spelled out, a name transliterated) stays as
    text, so the model also keeps learning to translate such spans.
    """
    source_spans = [source[start:end] for start, end in _find_spans(source)]
    pieces_by_span = {}
    for span in source_spans:
        if len(pieces_by_span) == MAX_PLACEHOLDERS:
            break
        if span in pieces_by_span or source_spans.count(span) != 1:
            continue
        if len(_whole_span(span).findall(target)) != 1:
            continue
        pieces_by_span[span] = placeholder(len(pieces_by_span))

    if not pieces_by_span:
        return source, target
    for span, token in pieces_by_span.items():
        source = _replace_whole(source, span, token)
        target = _replace_whole(target, span, token)
    return source, target


def _whole_span(span: str) -> re.Pattern[str]:
    # Only a span not glued to further letters or digits: "12" must not match inside "2012".
    return re.compile(r"(?<!\w)" + re.escape(span) + r"(?!\w)")


def _replace_whole(text: str, span: str, token: str) -> str:
    return _whole_span(span).sub(lambda _: token, text, count=1)


def restore(translation: str, spans: tuple[str, ...]) -> str:
    """Replace placeholders in a translation by their spans, each placeholder's span exactly once.

    Placeholder brackets that the model wrote outside a whole placeholder are deleted.
    NOTE: a span the model wrote out as plain text while dropping its placeholder is appended
    as well, so it then appears twice.
    """
    used: set[int] = set()
    pieces = []
    # The split alternates text between placeholders (even items) and placeholder numbers (odd).
    for position, part in enumerate(_PLACEHOLDER.split(translation)):
        if position % 2 == 0:
            pieces.append(part.replace(_OPEN, "").replace(_CLOSE, ""))
            continue
        index = int(part)
        if index < len(spans) and index not in used:
            used.add(index)
            pieces.append(spans[index])

    text = "".join(pieces)
    missing = [spans[i] for i in range(len(spans)) if i not in used]
    if missing:
        text = _append_before_final_punctuation(text, " ".join(missing))
    return re.sub(r" {2,}", " ", text).strip()


def _append_before_final_punctuation(text: str, addition: str) -> str:
    body = text.rstrip()
    end = len(body)
    while end > 0 and body[end - 1] in ".!?":
        end -= 1
    head, tail = body[:end].rstrip(), body[end:]
    return f"{head} {addition}{tail}".strip()
