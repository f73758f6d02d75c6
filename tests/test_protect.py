"""Tests of `nmt.protect`: placeholders in, every span back exactly once."""

from __future__ import annotations

import pytest

from nmt.protect import (
    MAX_PLACEHOLDERS,
    placeholder,
    placeholder_symbols,
    protect,
    protect_pair,
    restore,
)

P0, P1, P2 = placeholder(0), placeholder(1), placeholder(2)


@pytest.mark.parametrize(
    ("text", "expected_text", "expected_spans"),
    [
        # numbers with separators, currency and percent
        ("कीमत 1,200.50 रुपये है", f"कीमत {P0} रुपये है", ("1,200.50",)),
        ("समय 10:30 बजे", f"समय {P0} बजे", ("10:30",)),
        ("तारीख 15/08/1947 है", f"तारीख {P0} है", ("15/08/1947",)),
        ("₹500 दिए", f"{P0} दिए", ("₹500",)),
        ("$20 और €30", f"{P0} और {P1}", ("$20", "€30")),
        ("50% छूट", f"{P0} छूट", ("50%",)),
        # URLs, with a sentence-final full stop left outside
        ("देखें https://example.com/a?b=1.", f"देखें {P0}.", ("https://example.com/a?b=1",)),
        ("www.example.org पर", f"{P0} पर", ("www.example.org",)),
        ("लिंक http://x.in/p।", f"लिंक {P0}।", ("http://x.in/p",)),
        # e-mail addresses, also after a Latin word
        ("मेल a.b+c@example.co.in पर", f"मेल {P0} पर", ("a.b+c@example.co.in",)),
        ("ईमेल: ram@gmail.com।", f"ईमेल: {P0}।", ("ram@gmail.com",)),
        ("Contact ram@gmail.com", f"{P0} {P1}", ("Contact", "ram@gmail.com")),
        # handles and hashtags
        ("@user_1 ने कहा", f"{P0} ने कहा", ("@user_1",)),
        ("#भारत जीता", f"{P0} जीता", ("#भारत",)),
        ("#IPL2024, मैच", f"{P0}, मैच", ("#IPL2024",)),
        # runs of Latin script
        ("मैंने Google Maps देखा।", f"मैंने {P0} देखा।", ("Google Maps",)),
        ("AT&T की सेवा", f"{P0} की सेवा", ("AT&T",)),
        # several spans are numbered in order of appearance
        ("2 और 3 और 4", f"{P0} और {P1} और {P2}", ("2", "3", "4")),
        # nothing to protect
        ("यह ठीक है।", "यह ठीक है।", ()),
        ("", "", ()),
    ],
)
def test_protect_cases(text: str, expected_text: str, expected_spans: tuple[str, ...]) -> None:
    protected = protect(text)
    assert protected.text == expected_text
    assert protected.spans == expected_spans


@pytest.mark.parametrize(
    ("text", "expected_spans"),
    [
        ("कीमत Rs. 500/- है", ("Rs. 500/-",)),
        ("कीमत ₹ 500 है", ("₹ 500",)),
        ("मैच 10-15 तक", ("10-15",)),
        ("तारीख 15-08-2024 को", ("15-08-2024",)),
        ("कॉल करें +91 98765 43210", ("+91 98765 43210",)),
        ("कॉल 98765 43210 पर", ("98765 43210",)),
        ("वह Zürich गया", ("Zürich",)),
        ("मुझे 😀 पसंद है", ("😀",)),
        ("नमस्ते 🙏🏽 दोस्त", ("🙏🏽",)),
        ("✓ ठीक → आगे", ("✓", "→")),
        ("汉字 और عربي", ("汉字", "عربي")),
        # touching spans merge, so no space appears between them
        ("दूरी 5km है", ("5km",)),
        ("तापमान 30°C है", ("30°C",)),
        ("₹500👍 मिला", ("₹500👍",)),
    ],
)
def test_protect_translation_kinds(text: str, expected_spans: tuple[str, ...]) -> None:
    protected = protect(text)
    assert protected.spans == expected_spans
    assert restore(protected.text, protected.spans) == text


@pytest.mark.parametrize(
    "text",
    [
        "कीमत 1,200.50 रुपये है",
        "देखें https://example.com/a?b=1.",
        "Contact ram@gmail.com या @ram_1 #भारत 50%",
        "मैंने Google Maps देखा।",
        "यह ठीक है।",
    ],
)
def test_restore_inverts_protect(text: str) -> None:
    protected = protect(text)
    assert restore(protected.text, protected.spans) == text


def test_protect_stops_at_max_placeholders() -> None:
    numbers = [str(n) for n in range(100, 100 + MAX_PLACEHOLDERS + 4)]
    protected = protect(" और ".join(numbers))
    assert protected.spans == tuple(numbers[:MAX_PLACEHOLDERS])
    for number in numbers[MAX_PLACEHOLDERS:]:
        assert number in protected.text


def test_placeholder_symbols_distinct() -> None:
    symbols = placeholder_symbols()
    assert len(symbols) == MAX_PLACEHOLDERS
    assert len(set(symbols)) == MAX_PLACEHOLDERS


SPANS = ("1947", "https://example.com", "@ram")


@pytest.mark.parametrize(
    ("translation", "expected"),
    [
        # in order
        (f"In {P0} see {P1} by {P2}.", "In 1947 see https://example.com by @ram."),
        # reordered
        (f"{P2} wrote {P1} in {P0}.", "@ram wrote https://example.com in 1947."),
        # dropped: appended before the final punctuation
        (f"In {P0} see {P1}.", "In 1947 see https://example.com @ram."),
        (f"In {P0} see {P1}!?", "In 1947 see https://example.com @ram!?"),
        ("Nothing here.", "Nothing here 1947 https://example.com @ram."),
        # repeated: only the first occurrence is kept
        (f"{P0} {P0} and {P1} {P2} {P2} now.", "1947 and https://example.com @ram now."),
        # invented: an index without a span is deleted
        (f"{placeholder(7)} {P0} {P1} {P2}", "1947 https://example.com @ram"),
    ],
)
def test_restore_cases(translation: str, expected: str) -> None:
    assert restore(translation, SPANS) == expected


@pytest.mark.parametrize(
    "translation",
    [
        "",
        "Nothing here.",
        f"{P0}{P0}{P0}",
        f"{P2} {P1} {P0} {P2} {P1} {P0}",
        f"{placeholder(3)} {placeholder(15)} {P1}",
        f"{P1}. {P1}.",
    ],
)
def test_restore_puts_each_span_once(translation: str) -> None:
    restored = restore(translation, SPANS)
    for span in SPANS:
        assert restored.count(span) == 1, span
    assert "\uff5f" not in restored
    assert "\uff60" not in restored


def test_restore_without_spans_deletes_placeholders() -> None:
    assert restore(f"He {P0} came.", ()) == "He came."


@pytest.mark.parametrize(
    ("source", "target", "expected_source", "expected_target"),
    [
        # each span found once on both sides
        (
            "उसने 12 किताबें 2012 में खरीदीं",
            "He bought 12 books in 2012",
            f"उसने {P0} किताबें {P1} में खरीदीं",
            f"He bought {P0} books in {P1}",
        ),
        (
            "मैंने Google देखा",
            "I saw Google",
            f"मैंने {P0} देखा",
            f"I saw {P0}",
        ),
        (
            "ram@gmail.com पर लिखें",
            "Write to ram@gmail.com",
            f"{P0} पर लिखें",
            f"Write to {P0}",
        ),
        # "12" inside "2012" is not a match
        ("12 लोग", "In 2012 people", "12 लोग", "In 2012 people"),
        ("2012 में", "In 2012, 12 people", f"{P0} में", f"In {P0}, 12 people"),
        # found twice in the source
        ("5 और 5", "5 and 5", "5 और 5", "5 and 5"),
        # found twice in the target
        ("5 लोग", "5 people, 5 cars", "5 लोग", "5 people, 5 cars"),
        # written differently in the target
        ("5 लोग", "five people", "5 लोग", "five people"),
        ("मैंने Google देखा", "I saw google", "मैंने Google देखा", "I saw google"),
        # only the span found on both sides is replaced
        ("7 और 8", "7 and eight", f"{P0} और 8", f"{P0} and eight"),
        # translation-only kinds are not substituted in training pairs
        ("वह Zürich गया", "He went to Zürich", "वह Zürich गया", "He went to Zürich"),
        ("मुझे 😀 पसंद है", "I like 😀", "मुझे 😀 पसंद है", "I like 😀"),
    ],
)
def test_protect_pair_cases(
    source: str, target: str, expected_source: str, expected_target: str
) -> None:
    assert protect_pair(source, target) == (expected_source, expected_target)


def test_protect_pair_placeholders_match() -> None:
    source, target = protect_pair("क 1 ख 22 ग 333", "a 333 b 1 c 22")
    for index in range(3):
        assert source.count(placeholder(index)) == 1
        assert target.count(placeholder(index)) == 1
