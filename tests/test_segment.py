"""Tests of nmt.segment: sentence splitting and layout-preserving joins."""

from __future__ import annotations

import pytest

from nmt.segment import Segmented, split_text

SPLIT_CASES = [
    # (input, expected sentences)
    ("नमस्ते, आप कैसे हैं? मैं ठीक हूँ।", ["नमस्ते, आप कैसे हैं?", "मैं ठीक हूँ।"]),
    ("वह आया।फिर चला गया।", ["वह आया।", "फिर चला गया।"]),
    ("पहला॥ दूसरा", ["पहला॥", "दूसरा"]),
    ("रुको! कौन है?! कोई नहीं", ["रुको!", "कौन है?!", "कोई नहीं"]),
    ("यह अच्छा है. वह भी.", ["यह अच्छा है.", "वह भी."]),
    ("Dr. Sharma met Mr. Rao. They talked.", ["Dr. Sharma met Mr. Rao.", "They talked."]),
    ("Fruits, e.g. mangoes, are sweet. Yes.", ["Fruits, e.g. mangoes, are sweet.", "Yes."]),
    ("डॉ. शर्मा आए। प्रो. राव नहीं आए।", ["डॉ. शर्मा आए।", "प्रो. राव नहीं आए।"]),
    ("यह ई.पू. 300 की बात है। आगे", ["यह ई.पू. 300 की बात है।", "आगे"]),
    ("दूरी 5 कि.मी. है। ठीक", ["दूरी 5 कि.मी. है।", "ठीक"]),
    ("कीमत 3.5 रुपये है। सस्ता", ["कीमत 3.5 रुपये है।", "सस्ता"]),
    ("A. P. J. Abdul Kalam was born. Later", ["A. P. J. Abdul Kalam was born.", "Later"]),
    ("ए. पी. जे. अब्दुल कलाम आए। ठीक", ["ए. पी. जे. अब्दुल कलाम आए।", "ठीक"]),
    ("के. आर. नारायणन राष्ट्रपति थे।", ["के. आर. नारायणन राष्ट्रपति थे।"]),
    ("उसने चाय पी. फिर वह गया.", ["उसने चाय पी.", "फिर वह गया."]),
    ('उसने कहा, "मैं आऊँगा।" फिर गया।', ['उसने कहा, "मैं आऊँगा।"', "फिर गया।"]),
    ("रुको... सुनो", ["रुको...", "सुनो"]),
    ("एक शब्द", ["एक शब्द"]),
]


@pytest.mark.parametrize(("text", "expected"), SPLIT_CASES)
def test_split_sentences(text: str, expected: list[str]) -> None:
    segmented = split_text(text)
    assert list(segmented.sentences) == expected
    assert segmented.join(segmented.sentences) == text


LAYOUT_CASES = [
    # (input, expected join with each sentence s replaced by <s>)
    ("एक।\nदो।", "<एक।>\n<दो।>"),
    ("एक।\n\nदो।\n", "<एक।>\n\n<दो।>\n"),
    ("\n\n  एक। दो।  \n\n\n", "\n\n  <एक।> <दो।>  \n\n\n"),
    ("एक।\r\nदो\r\n\r\nतीन", "<एक।>\r\n<दो>\r\n\r\n<तीन>"),
    ("एक।   दो।\tतीन।", "<एक।>   <दो।>\t<तीन।>"),
    ("पंक्ति बिना विराम\nअगली पंक्ति", "<पंक्ति बिना विराम>\n<अगली पंक्ति>"),
    ("1. पहला बिंदु\n2. दूसरा बिंदु", "1. <पहला बिंदु>\n2. <दूसरा बिंदु>"),
    ("शीर्षक\n\n---\n\nपाठ।", "<शीर्षक>\n\n---\n\n<पाठ।>"),
    ("देखें https://example.com/a?b=1 और", "<देखें https://example.com/a?b=1 और>"),
    ("https://example.com\nपाठ", "https://example.com\n<पाठ>"),
    ("ईमेल: a.b@example.org\n", "<ईमेल: a.b@example.org>\n"),
    ("a.b@example.org", "a.b@example.org"),
    ("12.5% । 2024", "12.5% । 2024"),
    ("", ""),
    ("   \n\t\n", "   \n\t\n"),
]


@pytest.mark.parametrize(("text", "expected"), LAYOUT_CASES)
def test_join_keeps_layout(text: str, expected: str) -> None:
    segmented = split_text(text)
    assert segmented.join([f"<{sentence}>" for sentence in segmented.sentences]) == expected
    assert segmented.join(segmented.sentences) == text


@pytest.mark.parametrize("text", ["123", "12.5 %", "—", "।", "https://example.com/path", "  42  "])
def test_untranslatable_segments_pass_through(text: str) -> None:
    segmented = split_text(text)
    assert segmented.sentences == ()
    assert segmented.join([]) == text


def test_join_rejects_wrong_count() -> None:
    segmented = split_text("एक। दो।")
    with pytest.raises(ValueError, match="expected 2 translations, got 1"):
        segmented.join(["one"])


def test_segmented_checks_literal_count() -> None:
    with pytest.raises(ValueError, match="len\\(literals\\)"):
        Segmented(sentences=("a",), literals=("",))


def _count_words(text: str) -> int:
    return len(text.split())


def test_long_sentence_cut_at_clauses() -> None:
    text = "a b c, d e f g h, i j k l m n o p q"
    segmented = split_text(text, max_tokens=4, count_tokens=_count_words)
    assert all(_count_words(sentence) <= 4 for sentence in segmented.sentences)
    assert segmented.sentences[0] == "a b c,"
    assert segmented.join(segmented.sentences) == text


def test_long_word_cut_inside() -> None:
    text = "abcdefghij"
    segmented = split_text(text, max_tokens=3, count_tokens=len)
    assert list(segmented.sentences) == ["abc", "def", "ghi", "j"]
    assert segmented.join(segmented.sentences) == text


def test_short_sentences_not_cut() -> None:
    text = "एक दो तीन। चार पाँच।"
    with_limit = split_text(text, max_tokens=10, count_tokens=_count_words)
    assert with_limit == split_text(text)


def test_max_tokens_needs_counter() -> None:
    with pytest.raises(ValueError, match="together"):
        split_text("text", max_tokens=5)
