"""Tests of `nmt.translator` and `nmt.model_dir` on the tiny random model of `nmt.testing`.

The model's translations are meaningless, so the tests check what the translator guarantees
around the model: order, batching, splitting, placeholders and text hygiene.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from nmt.model_dir import CONFIG, METADATA, TOKENIZER, WEIGHTS, load_model_dir, save_model_dir
from nmt.normalize import normalize_input
from nmt.protect import protect
from nmt.search import beam_search
from nmt.segment import split_to_fit
from nmt.testing import TOY_PAIRS
from nmt.translator import Hypothesis, SearchOptions, Translator, _batches, _distinct

HINDI = [hindi for hindi, _ in TOY_PAIRS]

# Inputs of different lengths, deliberately not sorted by length; each carries its own number.
NUMBERED = [
    "भारत की राजधानी नई दिल्ली है और वहाँ 101 लोग रहते हैं।",
    "मैं 202 घर",
    "बच्चे बगीचे में खेल रहे हैं और 303 पेड़ हैं।",
    "404",
    "सरकार ने 505 नई नीतियों की घोषणा की।",
]


@pytest.fixture(scope="module")
def translator(tiny_model_dir: Path) -> Translator:
    return Translator.load(tiny_model_dir)


def count_number(text: str, number: str) -> int:
    return len(re.findall(rf"(?<!\d){number}(?!\d)", text))


@pytest.mark.parametrize("beam_size", [1, 2, 4])
def test_batch_equals_one_at_a_time(translator: Translator, beam_size: int) -> None:
    texts = NUMBERED + HINDI[:4]
    batched = translator.translate(texts, beam_size=beam_size)
    for text, translation in zip(texts, batched, strict=True):
        (alone,) = translator.translate([text], beam_size=beam_size)
        assert translation.text == alone.text
        assert translation.score == pytest.approx(alone.score, abs=1e-4)


def test_small_batches_keep_input_order(tiny_model_dir: Path) -> None:
    # A small token budget splits the length-sorted inputs over several search calls.
    translator = Translator.load(tiny_model_dir)
    expected = [t.text for t in translator.translate(NUMBERED, beam_size=2)]
    translator.options = replace(translator.options, max_batch_tokens=40)
    assert [t.text for t in translator.translate(NUMBERED, beam_size=2)] == expected


def test_batches_keep_both_limits() -> None:
    lengths = [5, 1, 9, 3, 3, 2, 8, 4]
    options = SearchOptions(beam_size=2, max_batch_tokens=40, max_batch_size=3)
    batches = _batches(lengths, options)

    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    in_order = [lengths[index] for batch in batches for index in batch]
    assert in_order == sorted(in_order)
    for batch in batches:
        longest = max(lengths[index] for index in batch) + 1  # with eos
        assert len(batch) <= 3
        assert len(batch) == 1 or longest * len(batch) * options.beam_size <= 40
    assert _batches(lengths, replace(options, max_batch_size=None, max_batch_tokens=10**6)) == [
        sorted(range(len(lengths)), key=lambda index: lengths[index])]
    assert _batches([], options) == []


@pytest.mark.parametrize("beam_size", [1, 2])
def test_streams_give_the_same_translations(tiny_model_dir: Path, beam_size: int) -> None:
    translator = Translator.load(tiny_model_dir)
    translator.options = replace(translator.options, max_batch_size=2)
    texts = NUMBERED + HINDI
    expected = translator.translate(texts, beam_size=beam_size, n_best=beam_size)
    threads = torch.get_num_threads()

    translator.streams = 3
    actual = translator.translate(texts, beam_size=beam_size, n_best=beam_size)
    assert [t.text for t in actual] == [t.text for t in expected]
    for mine, theirs in zip(actual, expected, strict=True):
        assert [h.text for h in mine.alternatives] == [h.text for h in theirs.alternatives]
        assert mine.score == pytest.approx(theirs.score, abs=1e-4)
    assert torch.get_num_threads() == threads  # the threads are given back


@pytest.mark.parametrize("value", [0, -1, "2", None, True, 1.5])
def test_streams_rejects_bad_values(tiny_model_dir: Path, value) -> None:
    translator = Translator.load(tiny_model_dir)
    with pytest.raises(ValueError, match="streams must be a whole number of at least 1"):
        translator.streams = value
    assert translator.streams == 1


@pytest.mark.parametrize("size", [0, -3])
def test_max_batch_size_below_one_rejected(size: int) -> None:
    with pytest.raises(ValueError, match=f"max_batch_size must be at least 1, got {size}"):
        SearchOptions(max_batch_size=size)


@pytest.mark.parametrize(("setting", "message"), [
    ({"beta": -1.0}, "beta must be a finite number of at least 0, got -1.0"),
    ({"alpha": "x"}, "alpha must be a finite number of at least 0, got 'x'"),
    ({"alpha": float("nan")}, "alpha must be a finite number of at least 0, got nan"),
    ({"max_length_ratio": True}, "max_length_ratio must be a finite number"),
    ({"beam_size": 2.5}, "beam_size must be a whole number of at least 1, got 2.5"),
    ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be a whole number of at least 0"),
    ({"max_length_extra": "10"}, "max_length_extra must be a whole number of at least 0"),
    ({"max_batch_tokens": 0}, "max_batch_tokens must be a whole number of at least 1, got 0"),
    ({"beam_size": 65}, "beam_size must be between 1 and 64, got 65"),
    ({"alpha": 10.5}, "alpha must be at most 10.0, got 10.5"),
    ({"beta": 1e300}, "beta must be at most 100.0, got 1e+300"),
])
def test_invalid_search_settings_rejected(setting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SearchOptions(**setting)
    with pytest.raises(ValueError, match=re.escape(f'metadata.json: invalid "search" setting: '
                                                   f"{message}")):
        SearchOptions.from_metadata({"search": setting})


def test_unknown_search_settings_rejected() -> None:
    with pytest.raises(ValueError, match='unknown "search" settings bata, beam; allowed: alpha, '):
        SearchOptions.from_metadata({"search": {"bata": 0.4, "beam": 2}})


def test_search_section_must_be_an_object() -> None:
    with pytest.raises(ValueError, match='"search" must be an object, got'):
        SearchOptions.from_metadata({"search": [4]})


def test_beta_comes_from_metadata(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    metadata["search"] = {**metadata.get("search", {}), "beta": 0.4}
    (model_dir / "metadata.json").write_text(json.dumps(metadata))
    translator = Translator.load(model_dir)
    assert translator.options.beta == 0.4
    expected = Translator.load(tiny_model_dir)
    expected.options = replace(expected.options, beta=0.4)
    assert (translator.translate(NUMBERED, beam_size=2, n_best=2)
            == expected.translate(NUMBERED, beam_size=2, n_best=2))


def test_results_in_input_order(translator: Translator) -> None:
    translations = translator.translate(NUMBERED, beam_size=2)
    assert len(translations) == len(NUMBERED)
    for text, translation in zip(NUMBERED, translations, strict=True):
        number = re.search(r"\d+", text).group()
        assert count_number(translation.text, number) == 1, (text, translation.text)


@pytest.mark.parametrize("text", ["", "   ", "\u200b", "\ufeff\t\n"])
def test_empty_input_gives_empty_output(translator: Translator, text: str) -> None:
    (translation,) = translator.translate([text])
    assert translation.text == ""
    assert translation.alternatives[0].text == ""


def test_empty_inputs_keep_positions(translator: Translator) -> None:
    texts = ["", HINDI[0], "", "मैं 202 घर", ""]
    translations = translator.translate(texts, beam_size=2)
    assert [t.text == "" for t in translations] == [True, False, True, False, True]


def test_empty_list(translator: Translator) -> None:
    assert translator.translate([]) == []


@pytest.mark.parametrize(
    "text",
    [
        "मैं 1947 में घर गया।",
        "कीमत ₹1,200.50 है और छूट 15% है।",
        "देखें https://example.com/a?b=1 और लिखें ram@example.com पर।",
        "@ram_1 ने #भारत के बारे में लिखा।",
    ],
)
@pytest.mark.parametrize("beam_size", [1, 2])
def test_placeholders_restored_once(translator: Translator, text: str, beam_size: int) -> None:
    (translation,) = translator.translate([text], beam_size=beam_size)
    for span in protect(text).spans:
        assert translation.text.count(span) == 1, span
    assert "\uff5f" not in translation.text
    assert "\uff60" not in translation.text


@pytest.mark.parametrize("text", ["मुझे 😀 पसंद है", "🎉🎉🎉", "नमस्ते 🙏🏽 दोस्त", "✓ ठीक ☂"])
def test_no_replacement_character(translator: Translator, text: str) -> None:
    (translation,) = translator.translate([text], beam_size=2, n_best=2)
    for hypothesis in translation.alternatives:
        assert "\ufffd" not in hypothesis.text


def test_n_best_alternatives(translator: Translator) -> None:
    translations = translator.translate(HINDI[:3], beam_size=4, n_best=3)
    for translation in translations:
        scores = [h.score for h in translation.alternatives]
        texts = [h.text for h in translation.alternatives]
        assert 1 <= len(translation.alternatives) <= 3
        assert len(set(texts)) == len(texts)  # hypotheses with one text are merged
        assert translation.alternatives[0].text == translation.text
        assert translation.alternatives[0].score == translation.score
        assert scores == sorted(scores, reverse=True)


def test_distinct_keeps_best_of_each_text() -> None:
    hypotheses = [Hypothesis("a", -1.0), Hypothesis("b", -2.0), Hypothesis("a", -0.5)]
    assert _distinct(hypotheses) == [Hypothesis("a", -0.5), Hypothesis("b", -2.0)]


def test_n_best_above_beam_raises(translator: Translator) -> None:
    with pytest.raises(ValueError, match="n_best"):
        translator.translate(HINDI[:1], beam_size=2, n_best=3)


@pytest.mark.parametrize("max_length", [1, 3])
def test_max_length_limits_output(translator: Translator, max_length: int) -> None:
    # max_length counts output tokens, not eos; every word is at least one token.
    translations = translator.translate(HINDI[:4], beam_size=2, max_length=max_length)
    for translation in translations:
        tokens = translator.tokenizer.encode(translation.text, normalize=False)
        assert len(translation.text.split()) <= len(tokens) <= max_length


def test_max_length_does_not_count_eos(translator: Translator, monkeypatch) -> None:
    limits = []

    def spy(*args, **kwargs):
        limits.append(kwargs["max_length"])
        return beam_search(*args, **kwargs)

    monkeypatch.setattr("nmt.translator.beam_search", spy)
    translator.translate(HINDI[:1], beam_size=2, max_length=1)
    assert limits and set(limits) == {2}  # one token, then eos


def test_metadata_search_defaults(translator: Translator) -> None:
    assert translator.options.beam_size == 2
    assert translator.options.max_length_extra == 5
    assert translator.metadata["name"] == "tiny-test-model"


def test_count_tokens_counts_placeholders(translator: Translator) -> None:
    # A protected span is one placeholder token, however many pieces its text would take.
    text = "भारत में 1234567 लोग https://example.com/a/b/c पढ़ते हैं।"
    protected = protect(normalize_input(text)).text
    expected = len(translator.tokenizer.encode(protected, normalize=False))
    assert translator.count_tokens(text) == expected
    assert translator.count_tokens(text) < len(translator.tokenizer.encode(text))


def test_max_source_tokens(translator: Translator) -> None:
    assert translator.max_source_tokens == translator.model.config.max_positions - 1


def long_text() -> str:
    return " ".join(HINDI * 3)


def split_to_fit_model(translator: Translator, text: str) -> list[str]:
    return split_to_fit(text, translator.max_source_tokens, translator.count_tokens)


def test_long_input_split_not_truncated(translator: Translator) -> None:
    text = long_text()
    limit = translator.max_source_tokens  # max_positions less one position for eos
    assert translator.count_tokens(text) > 3 * limit

    pieces = split_to_fit_model(translator, text)
    units = translator._prepare(0, text)
    assert " ".join(pieces) == text
    assert len(units) == len(pieces) > 1
    assert max(len(unit.ids) for unit in units) <= limit
    assert sum(len(unit.ids) for unit in units) == translator.count_tokens(text)


def test_long_input_split_at_clause_ends(translator: Translator) -> None:
    pieces = split_to_fit_model(translator, long_text())
    for piece in pieces[:-1]:
        assert piece.endswith(("।", "?", ",")), piece


def test_long_word_split_by_characters(translator: Translator) -> None:
    word = "क" * 300
    pieces = split_to_fit_model(translator, word)
    assert "".join(pieces) == word
    assert max(translator.count_tokens(piece) for piece in pieces) <= translator.max_source_tokens


def test_long_input_translates(translator: Translator) -> None:
    numbers = [str(n) for n in range(700, 712)]
    text = " ".join(f"{hindi} {number}" for hindi, number in zip(HINDI, numbers, strict=True))
    text = f"{text} {text}"  # each number twice, far apart
    assert translator.count_tokens(text) > 2 * translator.max_source_tokens

    (translation,) = translator.translate([text], beam_size=2)
    assert translation.text
    for number in numbers:
        assert count_number(translation.text, number) == 2, number


def test_long_input_has_no_stray_spaces(translator: Translator) -> None:
    (translation,) = translator.translate([long_text()], beam_size=4)
    assert translation.text == translation.text.strip()
    assert "  " not in translation.text


def export(model_dir: Path, out_dir: Path, dtype: torch.dtype) -> Path:
    model, _, metadata = load_model_dir(model_dir)
    return save_model_dir(out_dir, model, model_dir / TOKENIZER, metadata, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_round_trip(tiny_model_dir: Path, tmp_path: Path, dtype) -> None:
    out_dir = export(tiny_model_dir, tmp_path / "model", dtype)
    with safe_open(str(out_dir / WEIGHTS), framework="pt") as weights:
        stored = {weights.get_tensor(name).dtype for name in weights.keys()}
    assert stored == {dtype}

    reduced = Translator.load(out_dir)
    assert {p.dtype for p in reduced.model.parameters()} == {torch.float32}
    assert reduced.metadata == Translator.load(tiny_model_dir).metadata


@pytest.mark.parametrize("beam_size", [1, 2])
def test_fp16_translations_match_fp32(tiny_model_dir: Path, tmp_path: Path,
                                      beam_size: int) -> None:
    texts = NUMBERED + HINDI
    full = Translator.load(tiny_model_dir).translate(texts, beam_size=beam_size)
    half = Translator.load(export(tiny_model_dir, tmp_path / "fp16", torch.float16))
    reduced = half.translate(texts, beam_size=beam_size)
    assert [t.text for t in reduced] == [t.text for t in full]
    assert [t.score for t in reduced] == pytest.approx([t.score for t in full], abs=0.05)


def test_fp32_round_trip_is_exact(tiny_model_dir: Path, tmp_path: Path) -> None:
    out_dir = export(tiny_model_dir, tmp_path / "fp32", torch.float32)
    original, _, _ = load_model_dir(tiny_model_dir)
    copy, _, _ = load_model_dir(out_dir)
    for (name, tensor), (_, copied) in zip(original.state_dict().items(),
                                           copy.state_dict().items(), strict=True):
        assert torch.equal(tensor, copied), name


@pytest.mark.parametrize("missing", [[WEIGHTS], [CONFIG], [TOKENIZER], [WEIGHTS, TOKENIZER]])
def test_load_rejects_missing_files(tiny_model_dir: Path, tmp_path: Path,
                                    missing: list[str]) -> None:
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    for name in missing:
        (model_dir / name).unlink()
    with pytest.raises(FileNotFoundError) as error:
        Translator.load(model_dir)
    message = str(error.value)
    assert str(model_dir) in message
    for name in missing:
        assert name in message


def test_load_without_metadata(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    (model_dir / METADATA).unlink()
    translator = Translator.load(model_dir)
    assert translator.metadata == {}
    assert translator.options.beam_size == 4


def test_load_rejects_vocabulary_mismatch(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    config = (model_dir / CONFIG).read_text(encoding="utf-8")
    vocab_size = Translator.load(tiny_model_dir).tokenizer.vocab_size
    (model_dir / CONFIG).write_text(
        config.replace(f'"vocab_size": {vocab_size}', f'"vocab_size": {vocab_size + 1}'),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="pieces"):
        Translator.load(model_dir)


def test_assemble_score_leaves_out_untranslated_sentences() -> None:
    from nmt.pipeline import assemble, segment_texts
    from nmt.translator import Translation

    (item,) = segment_texts(["राम आया। Hello there. श्याम गया।"])
    assert len(item.sentences) == 3
    first = Translation("Ram came.", -1.0, [Hypothesis("Ram came.", -1.0),
                                            Hypothesis("Ram arrived.", -2.0)])
    passed = Translation("Hello there.", 0.0, [Hypothesis("Hello there.", 0.0)])  # not Hindi
    third = Translation("Shyam went.", -3.0, [Hypothesis("Shyam went.", -3.0),
                                              Hypothesis("Shyam left.", -4.0)])
    result = assemble(item, [first, passed, third], n_best=2)
    assert result.score == pytest.approx(-2.0)  # (-1 - 3) / 2, not (-1 + 0 - 3) / 3
    assert result.alternative_scores == [pytest.approx(-3.0)]  # (-2 - 4) / 2


def test_assemble_skips_duplicate_alternatives() -> None:
    from nmt.pipeline import assemble, segment_texts
    from nmt.translator import Translation

    (item,) = segment_texts(["राम आया। श्याम गया।"])
    assert len(item.sentences) == 2
    first = Translation("Ram came.", -1.0, [Hypothesis("Ram came.", -1.0),
                                            Hypothesis("Ram arrived.", -2.0)])
    # The second sentence's alternative repeats its best text; joined, it repeats the best.
    second = Translation("Shyam went.", -1.0, [Hypothesis("Shyam went.", -1.0),
                                               Hypothesis("Shyam went.", -3.0),
                                               Hypothesis("Shyam left.", -4.0)])
    result = assemble(item, [first, second], n_best=3)
    assert result.translation == "Ram came. Shyam went."
    assert result.alternatives == ["Ram arrived. Shyam went.", "Ram arrived. Shyam left."]
    assert len(result.alternative_scores) == 2
