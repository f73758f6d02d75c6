"""Checks of translation input and output, and the flags that report their findings.

A flag is a short string attached to a translation (`nmt.translator.Translation.flags`) and to a
whole text (`nmt.pipeline.TextResult.flags`). `FLAGS` lists every flag with its meaning.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "FLAGS",
    "FLAG_NOT_HINDI",
    "FLAG_REPETITION",
    "FLAG_SPLIT",
    "FLAG_TRUNCATED",
    "FLAG_UNTRANSLATED",
    "NOT_HINDI_SHARE",
    "PROBLEM_FLAGS",
    "devanagari_share",
    "has_devanagari_letters",
    "has_repetition_loop",
    "output_problems",
    "sort_flags",
]

FLAG_NOT_HINDI = "not_hindi"
FLAG_UNTRANSLATED = "untranslated"
FLAG_REPETITION = "repetition"
FLAG_TRUNCATED = "truncated"
FLAG_SPLIT = "split"

FLAGS = {
    FLAG_NOT_HINDI: "under half of the input's letters are Devanagari (English, romanized Hindi "
                    "or another script); sentences without Devanagari letters are returned as "
                    "they are",
    FLAG_UNTRANSLATED: "the output has no words besides the protected spans (numbers, names, "
                       "URLs), or it still contains Devanagari letters",
    FLAG_REPETITION: "the output repeats a word or phrase several times in a row",
    FLAG_TRUNCATED: "the output reached the maximum output length, so it may be cut short",
    FLAG_SPLIT: "the input was longer than the model accepts (in tokens or placeholders) and was "
                "translated in pieces",
}

# Flags of an output that make the translator search its sentence again.
PROBLEM_FLAGS = (FLAG_UNTRANSLATED, FLAG_REPETITION, FLAG_TRUNCATED)

# A text is flagged not_hindi when Devanagari letters are under this share of its letters.
NOT_HINDI_SHARE = 0.5

# Consecutive copies of a word n-gram that count as a repetition loop: a single word needs more
# copies, because "very very" or "ha ha ha" occur in real text.
_MIN_COPIES_OF_WORD = 4
_MIN_COPIES_OF_PHRASE = 3
_MAX_PHRASE_WORDS = 6

# URLs, e-mail addresses, @handles and #hashtags, whose letters do not show the text's language.
_ADDRESS = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+|[@#]\w+")


def _is_devanagari(char: str) -> bool:
    return "\u0900" <= char <= "\u097f" or "\ua8e0" <= char <= "\ua8ff"


def devanagari_share(text: str) -> float | None:
    """Return the share of Devanagari letters among the letters of `text`, None without letters.

    Vowel signs and other combining marks count as letters, so that "हैं" weighs three characters
    like "hain" weighs four. Letters of URLs, e-mail addresses, @handles and #hashtags are not
    counted.
    """
    letters = devanagari = 0
    for char in _ADDRESS.sub(" ", text):
        if unicodedata.category(char)[0] in "LM":
            letters += 1
            devanagari += _is_devanagari(char)
    return devanagari / letters if letters else None


def has_devanagari_letters(text: str) -> bool:
    """Return whether `text` has a Devanagari letter or vowel sign (not a danda nor a digit)."""
    return any(_is_devanagari(char) and unicodedata.category(char)[0] in "LM" for char in text)


def has_repetition_loop(text: str) -> bool:
    """Return whether a word, or a phrase of up to six words, repeats back to back in `text`.

    A word must appear four times in a row, a phrase three times ("of the of the of the").
    """
    words = text.lower().split()
    for size in range(1, _MAX_PHRASE_WORDS + 1):
        copies = _MIN_COPIES_OF_WORD if size == 1 else _MIN_COPIES_OF_PHRASE
        for start in range(len(words) - size * copies + 1):
            phrase = words[start : start + size]
            if all(words[start + k * size : start + (k + 1) * size] == phrase
                   for k in range(1, copies)):
                return True
    return False


def output_problems(output: str, spans: tuple[str, ...]) -> tuple[str, ...]:
    """Return the problem flags of one output, whose protected `spans` have been restored.

    The spans are removed before the checks, because a restored #hashtag may be Devanagari.
    """
    words = output
    for span in spans:
        words = words.replace(span, " ", 1)
    problems = []
    if not any(char.isalpha() for char in words) or has_devanagari_letters(words):
        problems.append(FLAG_UNTRANSLATED)
    if has_repetition_loop(words):
        problems.append(FLAG_REPETITION)
    return tuple(problems)


def sort_flags(flags: set[str] | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return `flags` without duplicates, in the order of `FLAGS`."""
    present = set(flags)
    return tuple(flag for flag in FLAGS if flag in present)
