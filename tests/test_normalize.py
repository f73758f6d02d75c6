"""Tests of `nmt.normalize`: one spelling for every Devanagari string that renders the same."""

from __future__ import annotations

import unicodedata

import pytest

from nmt.normalize import NUKTA, ascii_digits, normalize_hindi, normalize_input, normalize_text

# Precomposed nukta letters U+0958..U+095F and their base consonants.
PRECOMPOSED_NUKTA = [
    ("\u0958", "\u0915"),  # क़ / क
    ("\u0959", "\u0916"),  # ख़ / ख
    ("\u095a", "\u0917"),  # ग़ / ग
    ("\u095b", "\u091c"),  # ज़ / ज
    ("\u095c", "\u0921"),  # ड़ / ड
    ("\u095d", "\u0922"),  # ढ़ / ढ
    ("\u095e", "\u092b"),  # फ़ / फ
    ("\u095f", "\u092f"),  # य़ / य
]

# Nukta letters that NFC composes, unlike the ones above.
COMPOSED_NUKTA = [
    ("\u0929", "\u0928"),  # ऩ / न
    ("\u0931", "\u0930"),  # ऱ / र
    ("\u0934", "\u0933"),  # ऴ / ळ
]


@pytest.mark.parametrize(("precomposed", "base"), PRECOMPOSED_NUKTA + COMPOSED_NUKTA)
def test_nukta_forms_normalize_equal(precomposed: str, base: str) -> None:
    decomposed = base + NUKTA
    assert normalize_text(precomposed) == normalize_text(decomposed)
    assert normalize_text(precomposed) == decomposed


@pytest.mark.parametrize(("precomposed", "base"), PRECOMPOSED_NUKTA + COMPOSED_NUKTA)
def test_nukta_forms_equal_inside_words(precomposed: str, base: str) -> None:
    word = "अ{}ी बात"
    assert normalize_text(word.format(precomposed)) == normalize_text(word.format(base + NUKTA))


def test_nukta_word_spellings_equal() -> None:
    # ज़रूरी written with U+095B and with ज + nukta.
    assert normalize_text("\u095bरूरी") == normalize_text("\u091c\u093cरूरी")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("क्\u200dष", "क्ष"),  # zero-width joiner
        ("क्\u200cष", "क्ष"),  # zero-width non-joiner
        ("\ufeffनमस्ते", "नमस्ते"),  # byte order mark
        ("नम\u200bस्ते", "नमस्ते"),  # zero-width space
        ("नम\u2060स्ते", "नमस्ते"),  # word joiner
        ("co\u00adoperate", "cooperate"),  # soft hyphen
    ],
)
def test_invisible_characters_removed(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_conjunct_renderings_equal() -> None:
    half_form = "क्\u200dष"
    explicit_virama = "क्\u200cष"
    assert normalize_text(half_form) == normalize_text(explicit_virama)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("०१२३४५६७८९", "0123456789"),
        ("सन् १९४७ में", "सन् 1947 में"),
        ("₹२,५००.५०", "₹2,500.50"),
        ("2024", "2024"),
    ],
)
def test_devanagari_digits_become_ascii(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  नमस्ते   दुनिया  ", "नमस्ते दुनिया"),
        ("एक\tदो\nतीन\r\nचार", "एक दो तीन चार"),
        ("no\u00a0break", "no break"),
        (" \t\n ", ""),
        ("", ""),
    ],
)
def test_whitespace_folded(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The capital of India is New Delhi.",
        "Hello, how are you?",
        "e-mail: ram@example.com, 10:30, 50%",
    ],
)
def test_english_text_unchanged(text: str) -> None:
    assert normalize_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "\u095bरूरी \u0929 \u0931 \u0934",
        "क्\u200dष \ufeff१२३  नम\u200bस्ते\t",
        "भारत की राजधानी नई दिल्ली है।",
        "Mixed हिंदी and English २०२४",
        "",
    ],
)
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@pytest.mark.parametrize("text", ["\u095bरूरी", "\u0929", "क़िला", "ऩऱऴ"])
def test_output_has_no_precomposed_nukta(text: str) -> None:
    # The canonical form contains no precomposed nukta letter, in either NFC group.
    output = normalize_text(text)
    precomposed = {letter for letter, _ in PRECOMPOSED_NUKTA + COMPOSED_NUKTA}
    assert not precomposed & set(output)
    assert unicodedata.normalize("NFD", output) == unicodedata.normalize("NFD", text)


def test_normalize_hindi_alias() -> None:
    assert normalize_hindi is normalize_text


@pytest.mark.parametrize(
    "emoji",
    [
        "\U0001f468\u200d\U0001f4bb",  # man technologist
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # rainbow flag
    ],
)
def test_input_keeps_emoji_joiner(emoji: str) -> None:
    assert normalize_input(f"  वह {emoji} है ") == f"वह {emoji} है"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("क्\u200dष", "क्ष"),  # ZWJ inside Devanagari still goes
        ("\U0001f468\u200dक", "\U0001f468क"),  # ZWJ between an emoji and a letter goes
        ("नम\u200eस्ते", "नमस्ते"),  # left-to-right mark
        ("\u202bनमस्ते\u202c", "नमस्ते"),  # right-to-left embedding
        ("\u2067नमस्ते\u2069", "नमस्ते"),  # right-to-left isolate
        ("नम\x07स्ते\x00", "नमस्ते"),  # C0 controls
        ("नम\x85स्ते", "नम स्ते"),  # NEL is whitespace, so it folds to a space
    ],
)
def test_input_removes_formatting(text: str, expected: str) -> None:
    assert normalize_input(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "\u095bरूरी \u0929 \u0931 \u0934",
        "क्\u200dष \ufeff१२३  नम\u200bस्ते\t",
        "Mixed हिंदी and English २०२४",
        "",
    ],
)
def test_input_matches_text_rules(text: str) -> None:
    assert normalize_input(text) == normalize_text(text)


@pytest.mark.parametrize("text", ["वह \U0001f468\u200d\U0001f4bb है", "\u202bक्\u200dष १२\u202c"])
def test_input_is_idempotent(text: str) -> None:
    once = normalize_input(text)
    assert normalize_input(once) == once


def test_ascii_digits_changes_only_digits() -> None:
    assert ascii_digits("सन्  १९४७\u200b में") == "सन्  1947\u200b में"
