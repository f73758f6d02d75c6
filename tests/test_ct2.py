"""Tests of the CTranslate2 export: the same log-probabilities and greedy tokens as PyTorch."""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

ctranslate2 = pytest.importorskip("ctranslate2")

from nmt.ct2 import CT2Translator, export_ct2  # noqa: E402
from nmt.model_dir import load_model_dir  # noqa: E402
from nmt.search import greedy_search  # noqa: E402
from nmt.testing import TOY_PAIRS, make_scrambled_model_dir, make_tiny_model_dir  # noqa: E402
from nmt.translator import Translator  # noqa: E402

# Shapes the export must handle: the default pre-norm ReLU model, post-norm, GELU, untied output.
VARIANTS = {
    "pre-norm": {},
    "post-norm-gelu": {"pre_norm": False, "activation": "gelu"},
    "untied-output": {"tie_embeddings": False},
}
MAX_LENGTH = 12


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


def _source_ids(tokenizer) -> list[list[int]]:
    return [tokenizer.encode(hindi) + [tokenizer.eos_id] for hindi, _ in TOY_PAIRS]


def _export_variant(tiny_dir: Path, tmp_path: Path, variant: str):
    """Export a scrambled model of `variant`; return the model, its tokenizer and the CT2 engine."""
    model_dir = make_scrambled_model_dir(tiny_dir, tmp_path / "model", seed=1, **VARIANTS[variant])
    ct2_dir = export_ct2(model_dir, tmp_path / "ct2")
    model, tokenizer, _ = load_model_dir(model_dir)
    return model, tokenizer, ctranslate2.Translator(str(ct2_dir), intra_threads=1)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_export_matches_log_probs(tiny_dir, tmp_path, variant):
    model, tokenizer, engine = _export_variant(tiny_dir, tmp_path, variant)

    for source_ids, (_, english) in zip(_source_ids(tokenizer), TOY_PAIRS, strict=True):
        target_ids = tokenizer.encode(english, normalize=False)
        source = torch.tensor([source_ids])
        target_input = torch.tensor([[tokenizer.bos_id] + target_ids])
        with torch.inference_mode():
            states = model(source, target_input)
            log_probs = torch.log_softmax(model.logits(states[0]), dim=-1)  # (T, V)
        gold = target_ids + [tokenizer.eos_id]
        ours = log_probs[torch.arange(len(gold)), gold]

        pieces = [tokenizer.id_to_piece(i) for i in source_ids]
        result = engine.score_batch([pieces], [[tokenizer.id_to_piece(i) for i in target_ids]],
                                    max_input_length=0)[0]
        theirs = torch.tensor(result.log_probs)
        assert theirs.shape == ours.shape
        torch.testing.assert_close(theirs, ours, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_export_greedy_tokens_equal(tiny_dir, tmp_path, variant):
    model, tokenizer, engine = _export_variant(tiny_dir, tmp_path, variant)

    distinct_outputs = set()
    for source_ids in _source_ids(tokenizer):
        ours = greedy_search(model, torch.tensor([source_ids]), bos_id=tokenizer.bos_id,
                             eos_id=tokenizer.eos_id, max_length=MAX_LENGTH)[0].tokens
        pieces = [tokenizer.id_to_piece(i) for i in source_ids]
        result = engine.translate_batch([pieces], beam_size=1, max_decoding_length=MAX_LENGTH - 1,
                                        max_input_length=0)[0]
        theirs = [tokenizer.processor.PieceToId(piece) for piece in result.hypotheses[0]]
        assert theirs == ours
        distinct_outputs.add(tuple(ours))
    assert len(distinct_outputs) > 1, "the test model should not give one output for every input"


def test_ct2_translator_matches_native(tiny_dir, tmp_path):
    model_dir = make_scrambled_model_dir(tiny_dir, tmp_path / "model", seed=3)
    ct2_dir = export_ct2(model_dir, tmp_path / "ct2")
    native = Translator.load(model_dir)
    converted = CT2Translator.load(ct2_dir, threads=1)
    texts = [hindi for hindi, _ in TOY_PAIRS] + [""]

    expected = [t.text for t in native.translate(texts, beam_size=1)]
    actual = [t.text for t in converted.translate(texts, beam_size=1)]
    assert actual == expected
    assert converted.max_source_tokens == native.max_source_tokens
    # No PyTorch model, so the service offers no attention maps for this engine.
    assert getattr(converted.model.config, "decoder_layers", None) is None


def test_ct2_translator_beam_n_best(tiny_dir, tmp_path):
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2")
    converted = CT2Translator.load(ct2_dir, threads=1)

    results = converted.translate([TOY_PAIRS[0][0], TOY_PAIRS[1][0]], beam_size=2, n_best=2)
    assert len(results) == 2
    for result in results:
        texts = [hypothesis.text for hypothesis in result.alternatives]
        assert 1 <= len(texts) <= 2
        assert len(set(texts)) == len(texts)  # hypotheses with one text are merged
        assert result.alternatives[0].text == result.text
        assert result.alternatives[0].score == max(h.score for h in result.alternatives)


def test_ct2_receives_search_penalties(tiny_dir, tmp_path):
    converted = CT2Translator.load(export_ct2(tiny_dir, tmp_path / "ct2"), threads=1)
    converted.options = replace(converted.options, alpha=0.5, beta=0.4)
    engine, calls = converted.ct2, []

    class Recorder:
        def translate_batch(self, sources, **options):
            calls.append(options)
            return engine.translate_batch(sources, **options)

    converted.ct2 = Recorder()
    converted.translate([TOY_PAIRS[0][0]], beam_size=2)
    assert (calls[0]["length_penalty"], calls[0]["coverage_penalty"]) == (0.5, 0.4)
    # Greedy search gets no coverage penalty, which CTranslate2 4.8.5 would crash on.
    converted.translate([TOY_PAIRS[0][0]], beam_size=1)
    assert (calls[-1]["beam_size"], calls[-1]["coverage_penalty"]) == (1, 0.0)


def test_ct2_greedy_search_ignores_beta(tiny_dir, tmp_path):
    converted = CT2Translator.load(export_ct2(tiny_dir, tmp_path / "ct2"), threads=1)
    texts = [hindi for hindi, _ in TOY_PAIRS]
    expected = converted.translate(texts, beam_size=1)
    converted.options = replace(converted.options, beta=0.4)
    assert converted.translate(texts, beam_size=1) == expected


def test_ct2_old_export_warns_once(tiny_dir, tmp_path, caplog):
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2")
    metadata = json.loads((ct2_dir / "metadata.json").read_text())
    del metadata["ctranslate2"]["coverage_heads"]
    (ct2_dir / "metadata.json").write_text(json.dumps(metadata))
    converted = CT2Translator.load(ct2_dir, threads=1)
    converted.translate([TOY_PAIRS[0][0]], beam_size=2)
    assert "coverage head count" not in caplog.text  # β is 0
    converted.options = replace(converted.options, beta=0.4)
    converted.translate([TOY_PAIRS[0][0]], beam_size=2)
    converted.translate([TOY_PAIRS[1][0]], beam_size=2)
    assert caplog.text.count("exported without the coverage head count") == 1


def test_ct2_streams_give_the_same_translations(tiny_dir, tmp_path):
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2")
    texts = [hindi for hindi, _ in TOY_PAIRS]
    single_stream = CT2Translator.load(ct2_dir, threads=2)
    single_stream.options = replace(single_stream.options, max_batch_size=2)
    two_streams = CT2Translator.load(ct2_dir, threads=2, streams=2)
    two_streams.options = single_stream.options

    assert two_streams.streams == 2
    assert ([t.text for t in two_streams.translate(texts, beam_size=2)]
            == [t.text for t in single_stream.translate(texts, beam_size=2)])


@pytest.mark.parametrize("threads, streams, message", [
    (0, 0, "streams must be a whole number between 1 and 2 (the CPUs available to this "
           "process), got 0"),
    (0, 3, "streams must be a whole number between 1 and 2 (the CPUs available to this "
           "process), got 3"),
    (2, 3, "streams must be a whole number between 1 and 2 (threads), got 3"),
    (2, 1.5, "streams must be a whole number between 1 and 2 (threads), got 1.5"),
    (2, True, "streams must be a whole number between 1 and 2 (threads), got True"),
    (-1, 1, "threads must be 0 (CTranslate2 chooses) or a whole number between 1 and 2 (the "
            "CPUs available to this process), got -1"),
    (3, 1, "threads must be 0 (CTranslate2 chooses) or a whole number between 1 and 2"),
    (None, 1, "got None"),
    (0.0, 1, "got 0.0"),
])
def test_ct2_load_checks_thread_counts(monkeypatch, tmp_path, threads, streams, message):
    # The checks run before the folder is read, so an empty folder is enough.
    monkeypatch.setattr("nmt.gemm.available_cpus", lambda: 2)
    with pytest.raises(ValueError, match=re.escape(message)):
        CT2Translator.load(tmp_path, threads=threads, streams=streams)


def test_ct2_load_keeps_torch_threads(tiny_dir, tmp_path):
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        CT2Translator.load(ct2_dir, threads=2, streams=2)  # intra_threads 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_ct2_load_takes_numpy_integers(tiny_dir, tmp_path):
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2")
    translator = CT2Translator.load(ct2_dir, threads=np.int64(1), streams=np.int64(1))
    assert translator.streams == 1


def test_ct2_streams_ignore_torch_threads(tiny_dir, tmp_path, monkeypatch):
    # CTranslate2 has its own threads per stream, so torch's count (1 here) must not serialize
    # the searches, and it is left as it was.
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2")
    translator = CT2Translator.load(ct2_dir, threads=2, streams=2)
    translator.options = replace(translator.options, max_batch_size=2)
    both_started = threading.Barrier(2, timeout=10)
    calls = itertools.count()
    search_batch = translator._search_batch

    def search_with_another(*args):
        if next(calls) < 2:  # the two batches
            both_started.wait()  # BrokenBarrierError unless the other search runs meanwhile
        return search_batch(*args)

    monkeypatch.setattr(translator, "_search_batch", search_with_another)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        translator.translate([hindi for hindi, _ in TOY_PAIRS[:4]])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_export_int8_loads(tiny_dir, tmp_path):
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2", quantization="int8")
    converted = CT2Translator.load(ct2_dir, threads=1)

    assert converted.ct2.compute_type.startswith("int8")
    assert len(converted.translate([TOY_PAIRS[0][0]], beam_size=1)) == 1


def test_export_refuses_non_empty_out(tiny_dir, tmp_path):
    out = tmp_path / "ct2"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export_ct2(tiny_dir, out)


def test_export_rejects_unknown_quantization(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="quantization"):
        export_ct2(tiny_dir, tmp_path / "ct2", quantization="int3")


@pytest.mark.parametrize("entry", ['"x"', "{}", '{"model_config": 3}'])
def test_load_rejects_broken_export_entry(tiny_dir, tmp_path, entry):
    ct2_dir = export_ct2(tiny_dir, tmp_path / "ct2")
    metadata = (ct2_dir / "metadata.json").read_text()
    (ct2_dir / "metadata.json").write_text(
        re.sub(r'"ctranslate2": \{.*\}\s*\}\s*$', f'"ctranslate2": {entry}}}', metadata,
               flags=re.DOTALL))
    with pytest.raises(ValueError, match="has no 'ctranslate2' entry with a model_config"):
        CT2Translator.load(ct2_dir)


def test_load_rejects_plain_model_dir(tiny_dir):
    with pytest.raises((FileNotFoundError, ValueError)):
        CT2Translator.load(tiny_dir)
