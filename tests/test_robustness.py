"""Robustness of translation on text as people send it, with the tiny random model.

The tiny model's translations are meaningless, so these tests check what holds around the model.
They cover protected spans, characters the tokenizer lacks, the repetition guard and retry, long
input, layout, input that is not Hindi, and odd input that must never raise.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nmt.normalize import normalize_input, normalize_text
from nmt.pipeline import translate_lines, translate_texts
from nmt.protect import MAX_PLACEHOLDERS, find_spans, protect, protect_pair
from nmt.quality import (
    FLAG_NOT_HINDI,
    FLAG_REPETITION,
    FLAG_SPLIT,
    FLAG_TRUNCATED,
    FLAG_UNTRANSLATED,
    FLAGS,
    devanagari_share,
    has_repetition_loop,
)
from nmt.translator import Hypothesis, Translator, _Unit

DEVANAGARI_DIGITS = re.compile("[०-९]")
# What an output must never contain: SentencePiece's unknown piece, byte pieces, U+FFFD and
# placeholder brackets that the input did not have.
FORBIDDEN_IN_OUTPUT = ["⁇", "<unk>", "<0x", "\ufffd", "\uff5f", "\uff60"]


@pytest.fixture(scope="module")
def translator(tiny_model_dir: Path) -> Translator:
    return Translator.load(tiny_model_dir)


def assert_clean(output: str) -> None:
    for forbidden in FORBIDDEN_IN_OUTPUT:
        assert forbidden not in output, (forbidden, output)


# --- Spans that pass through unchanged ---

# (input, spans the output must contain exactly once)
SPAN_CASES = [
    ("कीमत ₹500 है।", ["₹500"]),
    ("कीमत ₹ 750 है।", ["₹ 750"]),
    ("कीमत Rs. 640/- है।", ["Rs. 640/-"]),
    ("बैठक 10:30 से 11:45 तक है।", ["10:30", "11:45"]),
    ("वज़न 3.5 किलो है।", ["3.5"]),
    ("आबादी 1,00,000 है।", ["1,00,000"]),
    ("छूट 15-20% तक है।", ["15-20%"]),
    ("तारीख 15-08-1947 थी।", ["15-08-1947"]),
    ("तापमान 38°C रहा।", ["38°C"]),
    ("फोन +91 98765 43210 पर करें।", ["+91 98765 43210"]),
    ("देखें https://example.com/a?b=1।", ["https://example.com/a?b=1"]),
    ("https://example.org/start से शुरू करें।", ["https://example.org/start"]),
    ("लिखें ram.k@example.co.in", ["ram.k@example.co.in"]),
    ("@ram_1 ने #भारत लिखा।", ["@ram_1", "#भारत"]),
    ("मैंने Google Maps खोला।", ["Google Maps"]),
    ("वह Zürich गया।", ["Zürich"]),
    ("print('x') चलाओ।", ["print"]),
]


@pytest.mark.parametrize(("text", "spans"), SPAN_CASES)
@pytest.mark.parametrize("beam_size", [1, 2])
def test_spans_pass_through_once(translator: Translator, text: str, spans: list[str],
                                 beam_size: int) -> None:
    (translation,) = translator.translate([text], beam_size=beam_size)
    for span in spans:
        assert translation.text.count(span) == 1, (span, translation.text)
    assert_clean(translation.text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("समय १०:३० बजे है।", "10:30"),
        ("कुल ₹१,२५,००० मिले।", "₹1,25,000"),
        ("२०२४ में", "2024"),
    ],
)
def test_devanagari_digits_come_out_ascii(translator: Translator, text: str,
                                          expected: str) -> None:
    (translation,) = translator.translate([text])
    assert expected in translation.text
    assert not DEVANAGARI_DIGITS.search(translation.text)


def test_url_keeps_trailing_danda_outside() -> None:
    protected = protect("यह देखें https://example.com/path।")
    assert protected.spans == ("https://example.com/path",)
    assert protected.text.endswith("।")


def test_more_spans_than_placeholders_lose_nothing(translator: Translator) -> None:
    numbers = [str(n) for n in range(301, 301 + 2 * MAX_PLACEHOLDERS + 5)]
    text = "संख्याएँ " + " और ".join(numbers) + " हैं।"
    assert len(find_spans(text)) > 2 * MAX_PLACEHOLDERS

    (translation,) = translator.translate([text], beam_size=2)
    for number in numbers:
        assert translation.text.count(number) == 1, number
    assert FLAG_SPLIT in translation.flags
    assert_clean(translation.text)


def test_more_spans_than_placeholders_without_spaces(translator: Translator) -> None:
    # Every pair of spans is separated by a Devanagari word without spaces around the spans.
    words = [f"{chr(0x1F600 + i)}क" for i in range(MAX_PLACEHOLDERS + 4)]
    text = "".join(words) + " है"
    (translation,) = translator.translate([text])
    for i in range(MAX_PLACEHOLDERS + 4):
        assert translation.text.count(chr(0x1F600 + i)) == 1


def test_training_span_kinds_unchanged() -> None:
    # Training pairs only get the kinds the released model was trained with: an emoji, a phone
    # number or "Rs. 500" stay text, and a number still becomes a placeholder.
    source, target = protect_pair("मुझे 😀 और 12 किताबें चाहिए", "I want 😀 and 12 books")
    assert source == "मुझे 😀 और ｟0｠ किताबें चाहिए"
    assert target == "I want 😀 and ｟0｠ books"


# --- Characters the model has never seen ---

UNSEEN_CASES = [
    ("मुझे 😀 पसंद है।", ["😀"]),
    ("परिवार 👨‍👩‍👧 खुश है।", ["👨‍👩‍👧"]),
    ("झंडा 🏳️‍🌈 लहराया।", ["🏳️‍🌈"]),
    ("नमस्ते 🙏🏽 दोस्त", ["🙏🏽"]),
    ("✓ ठीक है → आगे बढ़ो।", ["✓", "→"]),
    ("यह 你好 है।", ["你好"]),
    ("उसने مرحبا بك कहा।", ["مرحبا بك"]),
    ("बांग्ला में আমি লিখি लिखा।", ["আমি লিখি"]),
    ("गणित में ∑ और ∞ आते हैं।", ["∑", "∞"]),
    ("पासवर्ड ｟3｠ है।", ["｟3｠"]),
]


@pytest.mark.parametrize(("text", "spans"), UNSEEN_CASES)
@pytest.mark.parametrize("beam_size", [1, 2])
def test_unseen_characters_pass_through(translator: Translator, text: str, spans: list[str],
                                        beam_size: int) -> None:
    (translation,) = translator.translate([text], beam_size=beam_size, n_best=beam_size)
    for hypothesis in translation.alternatives:
        for span in spans:
            assert hypothesis.text.count(span) == 1, (span, hypothesis.text)
        forbidden = [f for f in FORBIDDEN_IN_OUTPUT if f not in text]
        assert not [f for f in forbidden if f in hypothesis.text], hypothesis.text


def test_detokenize_drops_unknown_and_byte_pieces(translator: Translator) -> None:
    tokenizer = translator.tokenizer
    byte_ids = [i for i in range(tokenizer.vocab_size) if tokenizer.is_byte(i)]
    word_ids = tokenizer.encode("This book", normalize=False)
    tokens = [tokenizer.unk_id, *word_ids[:1], byte_ids[0xF0], byte_ids[0x9F], *word_ids[1:],
              tokenizer.unk_id, byte_ids[0xC3]]
    text = translator._detokenize(tokens, ())
    assert text == tokenizer.decode(word_ids)
    assert_clean(text)


def test_control_characters_removed() -> None:
    assert normalize_input("नम\x07स्ते\u200e दोस्त\u202e") == "नमस्ते दोस्त"


@pytest.mark.parametrize(
    "text",
    ["क्\u200dष और क्\u200cष", "  नमस्ते,\tआप\n कैसे हैं? ", "ज़रूरी १२३", "Don't stop 3.5%"],
)
def test_normalize_input_equals_training_normalization(text: str) -> None:
    assert normalize_input(text) == normalize_text(text)


def test_normalize_input_keeps_emoji_joiner() -> None:
    assert normalize_input("कोड 👨\u200d💻 लिखो") == "कोड 👨\u200d💻 लिखो"
    assert normalize_text("कोड 👨\u200d💻 लिखो") == "कोड 👨💻 लिखो"


# --- Degenerate decoding: repetition guard, retry and flags ---

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the the the the", True),
        ("of the of the of the", True),
        ("He said that he said that he said that he left", True),
        ("very very good", False),
        ("ha ha ha", False),
        ("The cat sat on the mat and the dog sat on the rug.", False),
        ("", False),
    ],
)
def test_repetition_loop_detection(text: str, expected: bool) -> None:
    assert has_repetition_loop(text) is expected


def test_metadata_sets_no_repeat_ngram_size(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    metadata = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    metadata["search"]["no_repeat_ngram_size"] = 3
    (model_dir / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")

    translator = Translator.load(model_dir)
    assert translator.options.no_repeat_ngram_size == 3
    (translation,) = translator.translate(["बच्चे बगीचे में खेल रहे हैं।"])
    assert isinstance(translation.text, str)


class ScriptedSearch:
    """Stands in for `Translator._search_batch`: the i-th call returns outputs[i] for every unit."""

    def __init__(self, outputs: list[str]) -> None:
        self.outputs = outputs
        self.calls: list[tuple[int, int]] = []  # (beam size, no-repeat n-gram size) of each call

    def __call__(self, units, longest, options, n_best, max_length):
        text = self.outputs[min(len(self.calls), len(self.outputs) - 1)]
        self.calls.append((options.beam_size, options.no_repeat_ngram_size))
        return [[Hypothesis(text, -1.0 - len(self.calls))] for _ in units]


@pytest.fixture
def scripted(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    translator = Translator.load(tiny_model_dir)

    def install(outputs: list[str]) -> tuple[Translator, ScriptedSearch]:
        search = ScriptedSearch(outputs)
        monkeypatch.setattr(translator, "_search_batch", search)
        return translator, search

    return install


# (first output, retry output, expected text, expected flags)
RETRY_CASES = [
    ("the the the the the", "The children play.", "The children play.", ()),
    ("बच्चे खेलते", "The children play.", "The children play.", ()),
    ("", "The children play.", "The children play.", ()),
    ("...", "The children play.", "The children play.", ()),
    ("the the the the the", "बच्चे खेलते", "the the the the the", (FLAG_REPETITION,)),
    ("", "", "", (FLAG_UNTRANSLATED,)),
    ("The children play.", "unused", "The children play.", ()),
]


@pytest.mark.parametrize(("first", "retry", "expected", "flags"), RETRY_CASES)
def test_problem_output_retried_once(scripted, first: str, retry: str, expected: str,
                                     flags: tuple[str, ...]) -> None:
    translator, search = scripted([first, retry])
    (translation,) = translator.translate(["बच्चे बगीचे में खेल रहे हैं।"], beam_size=2)
    assert translation.text == expected
    assert translation.flags == flags
    assert len(search.calls) == (1 if first == expected and not flags else 2)


@pytest.mark.parametrize(
    ("beam_size", "no_repeat", "retry"),
    [(2, 0, (2, 3)), (4, 3, (1, 3)), (1, 3, (4, 3)), (1, 0, (1, 3))],
)
def test_retry_changes_search(scripted, beam_size: int, no_repeat: int,
                              retry: tuple[int, int]) -> None:
    from dataclasses import replace

    translator, search = scripted(["बच्चे", "The children."])
    translator.options = replace(translator.options, no_repeat_ngram_size=no_repeat)
    translator.translate(["बच्चे खेल रहे हैं।"], beam_size=beam_size)
    assert search.calls == [(beam_size, no_repeat), retry]


def test_caller_max_length_not_retried(scripted) -> None:
    translator, search = scripted(["a b c d e f g h i j k l m n o p q r s t u v w x y z"])
    (translation,) = translator.translate(["बच्चे खेल रहे हैं।"], max_length=5)
    assert FLAG_TRUNCATED in translation.flags
    assert len(search.calls) == 1


def test_flags_are_documented() -> None:
    assert set(FLAGS) == {FLAG_NOT_HINDI, FLAG_REPETITION, FLAG_SPLIT, FLAG_TRUNCATED,
                          FLAG_UNTRANSLATED}


# --- Long input ---

LONG_SENTENCE = ", ".join(f"बच्चे बगीचे में {n} बार खेल रहे हैं" for n in range(501, 541)) + "।"


def test_long_sentence_split_not_truncated(translator: Translator) -> None:
    assert translator.count_tokens(LONG_SENTENCE) > 3 * translator.max_source_tokens
    units = translator._prepare(0, LONG_SENTENCE)
    assert len(units) > 3
    assert max(len(unit.ids) for unit in units) <= translator.max_source_tokens

    (translation,) = translator.translate([LONG_SENTENCE])
    assert FLAG_SPLIT in translation.flags
    for n in range(501, 541):
        assert translation.text.count(str(n)) == 1, n
    positions = [translation.text.index(str(n)) for n in range(501, 541)]
    assert positions == sorted(positions)


def test_long_word_without_spaces(translator: Translator) -> None:
    (translation,) = translator.translate(["क" * 3000])
    assert isinstance(translation.text, str)
    assert FLAG_SPLIT in translation.flags


def test_repetition_across_pieces_is_flagged(translator: Translator) -> None:
    units = [_Unit(0, "क", (), [5], [Hypothesis("ka ka", -1.0)]) for _ in range(3)]

    translation = translator._combine("क" * 3000, units)
    assert translation.text == "ka ka ka ka ka ka"
    assert translation.flags == (FLAG_REPETITION, FLAG_SPLIT)


def test_long_text_layout_kept(translator: Translator) -> None:
    text = f"पहली पंक्ति।\n{LONG_SENTENCE}\n\nआखिरी पंक्ति।"
    (result,) = translate_texts(translator, [text])
    lines = result.translation.split("\n")
    assert len(lines) == 4
    assert lines[2] == ""
    assert FLAG_SPLIT in result.flags


# --- Layout ---

LAYOUT_CASES = [
    "पहली पंक्ति।\nदूसरी पंक्ति।",
    "अनुच्छेद एक।\n\n\nअनुच्छेद दो।\n",
    "\n\nशुरू में खाली पंक्तियाँ।",
    "विंडोज़ की पंक्ति।\r\nअगली पंक्ति।\r\n",
    "एक। दो? तीन!\nचार।",
    "सूची:\n1. पहला\n2. दूसरा\n- तीसरा",
]


def blank_lines(text: str) -> list[int]:
    return [i for i, line in enumerate(re.split(r"\r\n|\n", text)) if not line.strip()]


def assert_same_layout(output: str, text: str) -> None:
    # The tiny model may translate a sentence to nothing (flagged untranslated), so a line of
    # the input may come out blank. A blank line of the input must stay blank.
    assert len(re.split(r"\r\n|\n", output)) == len(re.split(r"\r\n|\n", text))
    assert set(blank_lines(text)) <= set(blank_lines(output))
    assert output.count("\r\n") == text.count("\r\n")


@pytest.mark.parametrize("text", LAYOUT_CASES)
def test_layout_kept(translator: Translator, text: str) -> None:
    (result,) = translate_texts(translator, [text], beam_size=2)
    assert_same_layout(result.translation, text)
    assert_clean(result.translation)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("12345", "12345"),
        ("१२३४५", "12345"),
        ("https://example.com/x", "https://example.com/x"),
        ("...", "..."),
        ("।", "।"),
        ("- - -", "- - -"),
        ("🎉🎉", "🎉🎉"),
        ("10:30 - 11:45", "10:30 - 11:45"),
    ],
)
def test_line_without_words_unchanged(translator: Translator, line: str, expected: str) -> None:
    text = f"पहला वाक्य।\n{line}\nदूसरा वाक्य।"
    (result,) = translate_texts(translator, [text])
    assert result.translation.split("\n")[1] == expected


def test_sentence_order_kept(translator: Translator) -> None:
    text = " ".join(f"वाक्य {n} है।" for n in range(1, 9))
    (result,) = translate_texts(translator, [text])
    positions = [result.translation.index(str(n)) for n in range(1, 9)]
    assert positions == sorted(positions)


def test_cli_lines_one_to_one(translator: Translator) -> None:
    lines = ["नमस्ते।", "", "123", "How are you?", "😀"]
    outputs = translate_lines(translator, lines)
    assert len(outputs) == len(lines)
    assert outputs[1:] == ["", "123", "How are you?", "😀"]


# --- Input that is not Hindi ---

NOT_HINDI_CASES = [
    "aap kaise hain",
    "How are you? I am fine.",
    "你好，世界",
    "مرحبا بك",
    "🎉🎉 wow 🎉",
    "Check https://example.com and #news",
]


@pytest.mark.parametrize("text", NOT_HINDI_CASES)
def test_not_hindi_passes_through(scripted, text: str) -> None:
    translator, search = scripted(["must not be called"])
    (result,) = translate_texts(translator, [text])
    assert result.translation == text
    assert search.calls == []
    if devanagari_share(text) is not None:
        assert result.flags == [FLAG_NOT_HINDI]


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("मेरा नाम राम है।", False),
        ("मेरा नाम Ram Kumar Sharma है और मैं Google में काम करता हूँ।", False),
        ("वह बोला: \"I will come tomorrow, don't worry about it\"", True),
        ("मैंने उससे बहुत देर तक बात की और फिर कहा। Thank you. अब हम घर चलते हैं।", False),
        ("मैं https://example.com/a/very/long/path/with/many/words पर गया।", False),
        ("mera naam Ram hai", True),
    ],
)
def test_not_hindi_flag_by_share(translator: Translator, text: str, flagged: bool) -> None:
    (result,) = translate_texts(translator, [text])
    assert (FLAG_NOT_HINDI in result.flags) is flagged


# --- Odd input never raises ---

ODD_INPUTS = [
    "",
    "   \n\t ",
    "\x00\x01",
    "｟0｠",
    "｟99｠ नमस्ते ｟0｠",
    "।।।।।।",
    "?" * 500,
    "😀" * 300,
    "😀 क " * 200,
    "a" * 3000,
    "नमस्ते" * 400,
    "\u200b\u200d\ufeff",
    "क\u0301\u0302\u0303",
    "ﷺ ﷽",
    "१२३ ४५६ ७८९",
]


@pytest.mark.parametrize("text", ODD_INPUTS)
def test_odd_input_never_raises(translator: Translator, text: str) -> None:
    (result,) = translate_texts(translator, [text], beam_size=2, n_best=2)
    assert isinstance(result.translation, str)
    forbidden = [f for f in FORBIDDEN_IN_OUTPUT if f not in text]
    assert not [f for f in forbidden if f in result.translation], result.translation


# --- The service, with the tiny model ---

@pytest.fixture
def tiny_service(service_settings, translator: Translator):
    from service.app import create_app

    with TestClient(create_app(service_settings, translator)) as client:
        yield client


def test_service_keeps_layout(tiny_service: TestClient, translator: Translator) -> None:
    text = "पहली पंक्ति।\n\n१२३\nhttps://example.com\n\nआखिरी 😀 पंक्ति।\n"
    response = tiny_service.post("/translate", json={"text": text})
    assert response.status_code == 200
    translation = response.json()["translation"]
    assert_same_layout(translation, text)
    lines = translation.split("\n")
    assert lines[2:4] == ["123", "https://example.com"]
    assert "😀" in lines[5]
    (expected,) = translate_texts(translator, [text], beam_size=4)
    assert translation == expected.translation


def test_service_not_hindi_passes_through(tiny_service: TestClient) -> None:
    texts = ["How are you?", "aap kaise hain"]
    response = tiny_service.post("/translate", json={"texts": texts})
    assert response.status_code == 200
    assert response.json()["translations"] == texts


def test_service_rejects_text_over_limit(tiny_service: TestClient, service_settings) -> None:
    limit = service_settings.max_text_chars
    response = tiny_service.post("/translate", json={"text": "क" * (limit + 1)})
    assert response.status_code == 422
    assert f"over the limit of {limit} characters" in response.json()["error"]
