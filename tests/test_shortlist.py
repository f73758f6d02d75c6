"""Tests of the vocabulary shortlist: the file, the builder, search over a subset, the switches."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from nmt.cli import main as nmt_main
from nmt.quantize import quantize_model
from nmt.search import beam_search, greedy_search
from nmt.shortlist import SHORTLIST, Shortlist
from nmt.tokenizer import Tokenizer
from nmt.translator import Translator
from tests.test_search import BOS, EOS, VOCAB, make_model, make_sources
from training.shortlist import build_shortlist

FIXTURES = Path(__file__).parent / "fixtures"
SUBSET = torch.tensor([EOS, 5, 6, 8, 9, 11, 12, 15])  # sorted, with eos


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def sources():
    return make_sources()


# --- Search over a subset of the vocabulary ---


def test_full_shortlist_equals_no_shortlist(model, sources) -> None:
    everything = torch.arange(VOCAB)
    for search, extra in ((beam_search, {"beam_size": 3, "n_best": 2}), (greedy_search, {})):
        plain = search(model, sources, bos_id=BOS, eos_id=EOS, **extra)
        listed = search(model, sources, bos_id=BOS, eos_id=EOS, shortlist=everything, **extra)
        assert plain == listed


@pytest.mark.parametrize("beam_size", [1, 4])
def test_search_emits_only_shortlisted_ids(model, sources, beam_size: int) -> None:
    results = beam_search(model, sources, bos_id=BOS, eos_id=EOS, beam_size=beam_size,
                          n_best=beam_size, shortlist=SUBSET, no_repeat_ngram_size=2)
    allowed = set(SUBSET.tolist())
    for hypotheses in results:
        assert hypotheses
        for hypothesis in hypotheses:
            assert set(hypothesis.tokens) <= allowed
    for hypothesis in greedy_search(model, sources, bos_id=BOS, eos_id=EOS, shortlist=SUBSET):
        assert set(hypothesis.tokens) <= allowed


def test_greedy_shortlist_is_argmax_over_subset(model, sources) -> None:
    # Greedy search over a subset picks, at each step, the best shortlisted id of the full logits.
    (hypothesis,) = greedy_search(model, sources[:1], bos_id=BOS, eos_id=EOS, shortlist=SUBSET,
                                  max_length=6)
    prefix = torch.tensor([[BOS]])
    with torch.inference_mode():
        for token in hypothesis.tokens:
            logits = model.logits(model(sources[:1], prefix)[0, -1])  # (V,)
            assert SUBSET[logits[SUBSET].argmax()] == token
            prefix = torch.cat([prefix, torch.tensor([[token]])], dim=1)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("int8", [False, True])
def test_restricted_logits_are_columns_of_logits(tie: bool, int8: bool) -> None:
    model = make_model()
    if tie:
        model.output_projection = None  # logits from the embedding matrix, as in a tied model
    if int8:
        quantize_model(model)
    states = torch.randn(5, model.config.d_model)
    with torch.inference_mode():
        full = model.logits(states) if not int8 else model.output_projection(states)
        subset = model.restricted_logits(SUBSET)(states)
    assert subset.shape == (5, SUBSET.numel())
    torch.testing.assert_close(subset, full[:, SUBSET], rtol=1e-4, atol=1e-4)


def test_shortlist_without_eos_is_rejected(model, sources) -> None:
    with pytest.raises(ValueError, match="eos"):
        greedy_search(model, sources, bos_id=BOS, eos_id=EOS, shortlist=torch.tensor([5, 6]))


# --- The file and the builder ---


def test_candidates_union() -> None:
    shortlist = Shortlist(20, always=[3, 1], by_source={7: [7, 10, 12], 8: [8, 10]})
    assert shortlist.candidates([[7], [8, 9]]).tolist() == [1, 3, 7, 8, 10, 12]
    assert shortlist.candidates([[9]]).tolist() == [1, 3]


def test_save_and_load_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    tokenizer = Tokenizer.from_file(tiny_model_dir / "tokenizer.model")
    hindi = tokenizer.encode("भारत")[0]
    english = tokenizer.encode("India")[0]
    shortlist = Shortlist(tokenizer.vocab_size, always=[english], by_source={hindi: [english]})
    shortlist.save(tmp_path / SHORTLIST, tokenizer)
    loaded = Shortlist.load(tmp_path / SHORTLIST, tokenizer)

    specials = {tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id}
    assert set(loaded.always.tolist()) == specials | {english}
    assert {k: v.tolist() for k, v in loaded.by_source.items()} == {hindi: [english]}


@pytest.mark.parametrize("line, message", [
    ("▁no_tab_here", "line 2: expected a tab"),
    ("\t▁surely_not_a_piece_xyz", "line 2: '▁surely_not_a_piece_xyz' is not a piece"),
])
def test_load_names_the_bad_line(tiny_model_dir: Path, tmp_path: Path, line: str,
                                 message: str) -> None:
    tokenizer = Tokenizer.from_file(tiny_model_dir / "tokenizer.model")
    path = tmp_path / SHORTLIST
    path.write_text(f"\t{tokenizer.id_to_piece(5)}\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Shortlist.load(path, tokenizer)


def test_build_keeps_associated_frequent_and_identity() -> None:
    # Source 10 always comes with target 20; target 30 is in every pair; 11 goes with 21 once.
    sources = [[10, 12], [10, 13], [10], [11], [12], [13]]
    targets = [[20, 30], [20, 30], [20, 30], [21, 30], [22, 30], [30]]
    shortlist = build_shortlist(sources, targets, 40, per_source=5, frequent=1, min_count=2)
    assert shortlist.always.tolist() == [30]
    assert shortlist.by_source[10].tolist() == [10, 20]  # itself first, then its partner
    assert shortlist.by_source[11].tolist() == [11]  # one co-occurrence is below min_count
    assert shortlist.by_source[12].tolist() == [12]  # 30, no more often than chance, is common


def test_build_caps_candidates_per_source() -> None:
    sources = [[1]] * 4 + [[2]] * 4
    targets = [[5, 6, 7, 8]] * 4 + [[9]] * 4
    shortlist = build_shortlist(sources, targets, 10, per_source=2, frequent=0)
    assert shortlist.by_source[1].numel() == 3  # itself and two candidates
    assert shortlist.always.numel() == 0


# --- Translator, CLI and export ---


def test_translator_passes_candidates_to_search(tiny_model_dir: Path, tmp_path: Path,
                                               monkeypatch) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = Tokenizer.from_file(model_dir / "tokenizer.model")
    source = tokenizer.encode("घर")[-1]
    Shortlist(tokenizer.vocab_size, [7], {source: [source, 9]}).save(model_dir / SHORTLIST,
                                                                     tokenizer)
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["shortlist"].tolist())
        return beam_search(*args, **kwargs)

    monkeypatch.setattr("nmt.translator.beam_search", spy)
    Translator.load(model_dir).translate(["घर"], beam_size=2)
    specials = [tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id]
    # The first search, and a retry if the output had a problem, use the same candidates.
    assert seen and all(ids == sorted({*specials, 7, 9, source}) for ids in seen)


def test_shortlist_switch_gives_full_vocabulary_results(tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = Tokenizer.from_file(model_dir / "tokenizer.model")
    Shortlist(tokenizer.vocab_size, [], {}).save(model_dir / SHORTLIST, tokenizer)
    texts = ["मैं घर जा रहा हूँ।", "यह किताब बहुत अच्छी है।"]

    plain = Translator.load(tiny_model_dir).translate(texts)
    switched_off = Translator.load(model_dir)
    switched_off.options = replace(switched_off.options, shortlist=False)
    assert switched_off.translate(texts) == plain
    # Only unk, bos and eos are candidates: every output is empty.
    assert [t.text for t in Translator.load(model_dir).translate(texts)] == ["", ""]


def test_cli_builds_shortlist(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    config = {
        "name": "shortlist", "out_dir": str(tmp_path),
        "data": {"sources": ["iitb-300"], "dev": "iitb-300", "exclude": []},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / SHORTLIST
    code = nmt_main(["shortlist", "--model", str(tiny_model_dir), "--config", str(config_path),
                     "--data-dir", str(FIXTURES), "--per-source", "5", "--frequent", "20",
                     "--out", str(out)])
    assert code == 0
    tokenizer = Tokenizer.from_file(tiny_model_dir / "tokenizer.model")
    shortlist = Shortlist.load(out, tokenizer)
    assert shortlist.always.numel() >= 20
    assert shortlist.by_source
    assert max(v.numel() for v in shortlist.by_source.values()) <= 6
    assert capsys.readouterr().out.strip() == str(out)


def test_cli_shortlist_missing_model(tmp_path: Path, capsys) -> None:
    code = nmt_main(["shortlist", "--model", str(tmp_path / "nope"), "--config", "x.yaml",
                     "--data-dir", str(FIXTURES)])
    assert code == 2
    assert "has no tokenizer.model" in capsys.readouterr().err


def test_ct2_export_carries_vocabulary_map(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ctranslate2")
    from nmt.ct2 import CT2Translator, export_ct2

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = Tokenizer.from_file(model_dir / "tokenizer.model")
    Shortlist(tokenizer.vocab_size, [], {}).save(model_dir / SHORTLIST, tokenizer)
    ct2_dir = export_ct2(model_dir, tmp_path / "ct2")
    assert (ct2_dir / "vmap.txt").is_file()

    texts = ["मैं घर जा रहा हूँ।"]
    translator = CT2Translator.load(ct2_dir, threads=1)
    assert translator.has_vocabulary_map
    # Only unk, bos and eos are candidates with the map: the output is empty.
    assert [t.text for t in translator.translate(texts)] == [""]


def test_export_copies_shortlist(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / SHORTLIST).write_text("\t\n", encoding="utf-8")
    out = tmp_path / "fp16"
    assert nmt_main(["export", "--model", str(model_dir), "--out", str(out)]) == 0
    assert (out / SHORTLIST).read_text(encoding="utf-8") == "\t\n"


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False)])
def test_service_setting_switches_shortlist(tiny_model_dir: Path, tmp_path: Path, monkeypatch,
                                            value: str, expected: bool) -> None:
    from service.runtime import load_translator
    from service.settings import Settings

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / SHORTLIST).write_text("\t\n", encoding="utf-8")
    monkeypatch.setenv("NMT_SHORTLIST", value)
    translator = load_translator(Settings(model_dir=model_dir, torch_threads=1))
    assert translator.shortlist is not None
    assert translator.options.shortlist is expected
