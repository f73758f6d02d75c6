"""Placeholders for spans that must pass through translation unchanged.

Numbers, URLs, e-mail addresses, @handles, #hashtags and runs of Latin-script text inside Hindi are
replaced by placeholder tokens ``｟0｠``, ``｟1｠``, ... before encoding. The tokenizer has each placeholder
as one piece, and training pairs carry the same placeholders wherever a span occurs verbatim on both
sides, so the model learns to copy them. After decoding, `restore` puts every span back exactly once:
a placeholder the model dropped is appended, and a repeated or unknown one is deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_PLACEHOLDERS",
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

# Alternatives are tried left to right at each position, so longer kinds come first.
_SPAN = re.compile(
    r"""
    (?P<url>(?:https?://|www\.)[^\s<>"]+)
  | (?P<email>[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)
  | (?P<handle>(?<![\w@])@[A-Za-z0-9_]+)
  | (?P<hashtag>(?<![\w#])\#[^\s#.,;:!?।]+)
  | (?P<number>[₹$€£]?\d+(?:[.,:/]\d+)*%?)
  | (?P<latin>[A-Za-z][A-Za-z0-9'&+_-]*(?:[ .][A-Za-z][A-Za-z0-9'&+_-]*)*)
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


def _find_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _SPAN.finditer(text):
        start, end = match.span()
        # A URL or hashtag at the end of a sentence must not swallow its full stop.
        if match.lastgroup in ("url", "hashtag"):
            while end > start and text[end - 1] in _TRAILING_PUNCTUATION:
                end -= 1
        if end > start:
            spans.append((start, end))
    return spans


def protect(text: str) -> ProtectedText:
    """Replace the protectable spans of `text` with placeholders, numbered in order of appearance.

    Spans past `MAX_PLACEHOLDERS` stay as plain text for the model to translate.
    """
    pieces: list[str] = []
    spans: list[str] = []
    last = 0
    for start, end in _find_spans(text)[:MAX_PLACEHOLDERS]:
        pieces.append(text[last:start])
        pieces.append(placeholder(len(spans)))
        spans.append(text[start:end])
        last = end
    pieces.append(text[last:])
    return ProtectedText("".join(pieces), tuple(spans))


def protect_pair(source: str, target: str) -> tuple[str, str]:
    """Put placeholders into a training pair wherever a source span occurs once, verbatim, in both sides.

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
    """Replace placeholders in a translation by their spans, so that each span appears exactly once."""
    used: set[int] = set()

    def fill(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index >= len(spans) or index in used:
            return ""
        used.add(index)
        return spans[index]

    text = _PLACEHOLDER.sub(fill, translation)
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
