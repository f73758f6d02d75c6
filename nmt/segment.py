"""Sentence segmentation for translation, keeping the layout of the input.

`split_text` cuts a text into the sentences that go to the model and the literal text
around them (line breaks, blank lines, spaces between sentences, and segments with
nothing to translate such as numbers, punctuation or URLs). `Segmented.join` puts the
translations back into that layout, so `split_text(t).join(split_text(t).sentences) == t`.

A sentence ends at a danda (।), a double danda (॥), `?`, `!`, an ellipsis or a full stop,
together with any closing quotes or brackets after it. A danda ends a sentence even with
no space after it; the other marks need whitespace or the end of the line after them.
A full stop does not end a sentence after an abbreviation (Dr., e.g., डॉ., ई.पू.),
an initial (A. P. J., ए. पी. जे.), or when a lowercase Latin letter follows it.
Decimal numbers (3.5) never end a sentence because no whitespace follows their dot.
A line break always ends a sentence.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["Segmented", "split_text", "split_to_fit"]

_LINE_BREAK = re.compile(r"\r\n|[\n\r\u0085\u2028\u2029]")

# A run of sentence-final marks, then any closing quotes or brackets.
_TERMINATOR = re.compile(r"[।॥?!.…]+[\"'”’»)\]}]*")
_DANDAS = frozenset("।॥")
_OPENING_PUNCTUATION = "\"'“‘«([{"

# English abbreviations that are followed by a full stop but rarely end a sentence.
# Compared after lowercasing.
_ENGLISH_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt messrs rev hon gen col capt lt sgt gov sen rep
    vs etc approx dept est fig figs no nos vol vols ch sec pp cf viz al inc ltd co corp
    jan feb mar apr jun jul aug sep sept oct nov dec rs
    """.split()
)

# Hindi abbreviations written with a full stop: डॉ./डा. (doctor), प्रो. (professor),
# सं. (संख्या, संवत्), ई. (ईसवी), पृ. (पृष्ठ), रु. (रुपये), स्व. (स्वर्गीय), क्र. (क्रमांक),
# जि. (जिला), पं. (पंडित), कु. (कुमारी), मो. (मोबाइल), नं. (नंबर).
_HINDI_ABBREVIATIONS = frozenset("डॉ डा प्रो सं ई पृ रु स्व क्र जि पं कु मो नं".split())

# Names of Latin letters written in Devanagari, as used for initials (के. आर. नारायणन).
_DEVANAGARI_INITIALS = frozenset(
    "ए बी सी डी ई एफ एच जे के एल एम एन ओ आर एस टी यू वी डब्ल्यू एक्स वाई जेड क्यू".split()
)
# Letter names that are also common sentence-final Hindi words (पी "drank", जी the
# honorific, आई "came"). They count as initials only right after another initial.
_AMBIGUOUS_DEVANAGARI_INITIALS = frozenset("पी जी आई".split())

# A dotted abbreviation such as e.g, U.S.A, Ph.D, ई.पू or कि.मी: every dot-separated
# part is short and contains a letter. Longer parts (example.com) do not qualify.
_MAX_DOTTED_PART_CHARS = 4

_URL_OR_EMAIL = re.compile(r"(?:https?://|ftp://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.I)

# Break points for a sentence longer than the model accepts, best first. Sentence ends are among
# them because the translator also cuts texts that were not split into sentences.
_CLAUSE_BREAK = re.compile(r"[,;:،—–।॥?!.](?=\s)")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Segmented:
    """A text cut into sentences to translate and the literal text around them.

    `literals` has one more item than `sentences`: literals[i] comes before sentences[i]
    and literals[-1] after the last sentence. Literals hold line breaks, the whitespace
    between sentences and segments that need no translation.
    """

    sentences: tuple[str, ...]
    literals: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.literals) != len(self.sentences) + 1:
            raise ValueError(
                f"Segmented needs len(literals) == len(sentences) + 1, got "
                f"{len(self.literals)} literals for {len(self.sentences)} sentences"
            )

    def join(self, translations: Sequence[str]) -> str:
        """Rebuild the text with each sentence replaced by its translation, in order."""
        if len(translations) != len(self.sentences):
            raise ValueError(
                f"expected {len(self.sentences)} translations, got {len(translations)}"
            )

        parts = [self.literals[0]]
        for translation, literal in zip(translations, self.literals[1:], strict=True):
            parts.append(translation)
            parts.append(literal)
        return "".join(parts)


def split_text(
    text: str,
    *,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Segmented:
    """Split `text` into sentences to translate and the literal text that surrounds them.

    With `max_tokens` and `count_tokens`, a sentence longer than `max_tokens` tokens is
    cut further by `split_to_fit`, so that every piece fits the model's source length.
    """
    if (max_tokens is None) != (count_tokens is None):
        raise ValueError("max_tokens and count_tokens must be given together")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")

    builder = _Builder()
    for chunk in _split_on_boundaries(text):
        core = chunk.strip()
        if not core:
            builder.add_literal(chunk)
            continue

        start = len(chunk) - len(chunk.lstrip())
        builder.add_literal(chunk[:start])
        if not _needs_translation(core):
            builder.add_literal(core)
        elif max_tokens is not None and count_tokens is not None:
            _add_within_limit(builder, core, max_tokens, count_tokens)
        else:
            builder.add_sentence(core)
        builder.add_literal(chunk[start + len(core) :])

    return builder.build()


class _Builder:
    """Accumulator of sentences and the literals between them."""

    def __init__(self) -> None:
        self.sentences: list[str] = []
        self.literals: list[str] = [""]

    def add_literal(self, text: str) -> None:
        self.literals[-1] += text

    def add_sentence(self, sentence: str) -> None:
        self.sentences.append(sentence)
        self.literals.append("")

    def build(self) -> Segmented:
        return Segmented(tuple(self.sentences), tuple(self.literals))


def _split_on_boundaries(text: str) -> list[str]:
    """Cut text into chunks at line breaks and sentence ends. The chunks concatenate to text."""
    chunks: list[str] = []
    position = 0
    for match in _LINE_BREAK.finditer(text):
        chunks.extend(_split_line(text[position : match.start()]))
        chunks.append(match.group())
        position = match.end()
    chunks.extend(_split_line(text[position:]))
    return chunks


def _split_line(line: str) -> list[str]:
    chunks: list[str] = []
    start = 0
    for match in _TERMINATOR.finditer(line):
        if _ends_sentence(line, match):
            chunks.append(line[start : match.end()])
            start = match.end()
    if start < len(line):
        chunks.append(line[start:])
    return chunks


def _ends_sentence(line: str, match: re.Match[str]) -> bool:
    marks = match.group()
    following = line[match.end() : match.end() + 1]
    if _DANDAS.intersection(marks):
        return True
    if following and not following.isspace():
        return False
    if marks.rstrip("\"'”’»)]}") != ".":
        return True  # ?, !, an ellipsis or a mix of marks

    # A single full stop followed by whitespace or the end of the line.
    next_word = line[match.end() :].lstrip()
    if next_word[:1].isascii() and next_word[:1].islower():
        return False
    words = line[: match.start()].split()
    if not words:
        return True
    previous_word = words[-2] if len(words) > 1 else ""
    return not _is_abbreviation(words[-1].lstrip(_OPENING_PUNCTUATION), previous_word)


def _is_abbreviation(word: str, previous_word: str) -> bool:
    """Return whether `word`, written before a full stop, is an abbreviation or an initial."""
    if not word:
        return False
    if "." in word:
        parts = word.split(".")
        return all(
            0 < len(part) <= _MAX_DOTTED_PART_CHARS and any(c.isalpha() for c in part)
            for part in parts
        )
    if word.lower() in _ENGLISH_ABBREVIATIONS or word in _HINDI_ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isascii() and word.isupper():
        return True
    if word in _DEVANAGARI_INITIALS:
        return True
    if word in _AMBIGUOUS_DEVANAGARI_INITIALS:
        return previous_word.endswith(".") and _is_abbreviation(previous_word[:-1], "")
    return False


def _needs_translation(segment: str) -> bool:
    """Return False for segments of only digits, punctuation, symbols or a URL/e-mail address."""
    if _URL_OR_EMAIL.fullmatch(segment.rstrip(".,;:!?")):
        return False
    return any(unicodedata.category(char).startswith("L") for char in segment)


def _add_within_limit(
    builder: _Builder, sentence: str, max_tokens: int, count_tokens: Callable[[str], int]
) -> None:
    """Add `sentence` as one or more pieces of at most `max_tokens` tokens each."""
    for piece, space_after in _cut_to_fit(sentence, max_tokens, count_tokens):
        builder.add_sentence(piece)
        builder.add_literal(space_after)


def split_to_fit(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    """Cut `text` into pieces of at most `max_tokens` tokens, without the whitespace between them.

    Cuts go at a clause break (`,`, `;`, `:`, a dash or a sentence end) where possible, else at a
    space, else inside a word. Joining the pieces with the whitespace removed at each cut gives
    `text` back. This is the one place where over-long input is cut, for `split_text` and for the
    translator.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    return [piece for piece, _ in _cut_to_fit(text, max_tokens, count_tokens)]


def _cut_to_fit(
    text: str, max_tokens: int, count_tokens: Callable[[str], int]
) -> list[tuple[str, str]]:
    """Return the pieces of `split_to_fit`, each with the whitespace that followed it."""
    pieces = []
    rest = text
    while count_tokens(rest) > max_tokens:
        cut = _find_cut(rest, max_tokens, count_tokens)
        piece, rest = rest[:cut], rest[cut:]
        stripped_piece = piece.rstrip()
        stripped_rest = rest.lstrip()
        space = piece[len(stripped_piece) :] + rest[: len(rest) - len(stripped_rest)]
        pieces.append((stripped_piece, space))
        rest = stripped_rest
        logger.debug("cut an over-long sentence after %d characters", cut)
    pieces.append((rest, ""))
    return pieces


def _find_cut(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> int:
    """Return a cut position in `text` whose prefix fits in `max_tokens` tokens.

    The last fitting clause break wins unless it would leave the piece under half as long
    as the last fitting space would. Without either, the cut goes inside a word. Token
    counts grow with prefix length, so each kind of cut is found by bisection.
    """
    clause_cuts = [m.end() for m in _CLAUSE_BREAK.finditer(text)]
    space_cuts = [m.start() for m in _WHITESPACE.finditer(text) if m.start() > 0]

    clause_cut = _last_fitting(text, clause_cuts, max_tokens, count_tokens)
    space_cut = _last_fitting(text, space_cuts, max_tokens, count_tokens)
    if clause_cut is not None and (space_cut is None or 2 * clause_cut >= space_cut):
        return clause_cut
    if space_cut is not None:
        return space_cut

    char_cut = _last_fitting(text, list(range(1, len(text))), max_tokens, count_tokens)
    # A first character that alone is over max_tokens is still cut off, to make progress.
    return char_cut if char_cut is not None else 1


def _last_fitting(
    text: str, cuts: list[int], max_tokens: int, count_tokens: Callable[[str], int]
) -> int | None:
    low, high = 0, len(cuts) - 1
    best = None
    while low <= high:
        middle = (low + high) // 2
        if count_tokens(text[: cuts[middle]].rstrip()) <= max_tokens:
            best = cuts[middle]
            low = middle + 1
        else:
            high = middle - 1
    return best
