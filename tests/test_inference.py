"""Tests of the inference speed-ups: beam groups in the decoder cache and int8 quantization."""

from __future__ import annotations

import pytest
import torch

from nmt.config import ModelConfig
from nmt.model import Transformer
from nmt.quantize import quantize_model, quantize_translator
from nmt.search import beam_search, greedy_search
from nmt.testing import TOY_PAIRS, make_tiny_model_dir
from nmt.translator import Translator

PAD, BOS, EOS = 0, 2, 3
VOCAB = 24
GROUP = 3
ATOL = 1e-5


def make_model(**overrides) -> Transformer:
    torch.manual_seed(7)
    values = dict(vocab_size=VOCAB, d_model=32, n_heads=4, d_ff=64, encoder_layers=2,
                  decoder_layers=2, dropout=0.0, max_positions=32, tie_embeddings=False)
    return Transformer(ModelConfig(**{**values, **overrides}), pad_id=PAD).eval()


def make_source() -> torch.Tensor:
    generator = torch.Generator().manual_seed(8)
    source = torch.randint(EOS + 1, VOCAB, (2, 6), generator=generator)  # (B, S)
    source[:, -1] = EOS
    source[1, 4:] = PAD
    source[1, 3] = EOS
    return source


def decode_steps(model, cache, targets: torch.Tensor, reorder: torch.Tensor | None = None):
    """Decode `targets` (rows, T) one step at a time; optionally reorder rows after step 1."""
    states, attentions = [], []
    for step in range(targets.size(1)):
        out, attention = model.decode(targets[:, step:step + 1], cache, attention_layer=1)
        states.append(out)
        attentions.append(attention)
        if step == 1 and reorder is not None:
            cache = cache.select(reorder)
            targets = targets[reorder]
    return torch.cat(states, dim=1), torch.cat(attentions, dim=2)


def test_grouped_cache_matches_repeated_rows() -> None:
    model = make_model()
    source = make_source()
    generator = torch.Generator().manual_seed(9)
    targets = torch.randint(EOS + 1, VOCAB, (2 * GROUP, 4), generator=generator)  # (B·K, T)
    # Beams swap places within their sentence after the second step, as beam search does.
    reorder = torch.tensor([2, 2, 0, 4, 3, 3])

    with torch.inference_mode():
        memory, source_mask = model.encode(source)
        rows = torch.arange(2).repeat_interleave(GROUP)
        repeated = model.start_cache(memory, source_mask).select(rows)
        grouped = model.start_cache(memory, source_mask).expand(GROUP)
        expected_states, expected_attention = decode_steps(model, repeated, targets, reorder)
        states, attention = decode_steps(model, grouped, targets, reorder)

    assert grouped.source_mask.size(0) == 2  # shared, not copied per beam
    torch.testing.assert_close(states, expected_states, atol=ATOL, rtol=0)
    torch.testing.assert_close(attention, expected_attention, atol=ATOL, rtol=0)


def test_grouped_cache_drops_sentences() -> None:
    model = make_model()
    source = make_source()
    with torch.inference_mode():
        memory, source_mask = model.encode(source)
        cache = model.start_cache(memory, source_mask).expand(GROUP)
        model.decode(torch.full((2 * GROUP, 1), BOS), cache)
        second_only = cache.select(torch.tensor([3, 5, 4]))  # beams of sentence 1 only

    assert second_only.source_mask.size(0) == 1
    assert second_only.layers[0].cross_key.size(0) == 1
    assert second_only.layers[0].self_key.size(0) == GROUP
    assert torch.equal(second_only.source_mask[0], source_mask[1])


def test_quantized_model_stays_close() -> None:
    model = make_model(tie_embeddings=True)
    source = make_source()
    target = torch.full((2, 3), BOS)
    with torch.inference_mode():
        expected = model.logits(model(source, target))
        quantize_model(model)
        logits = model.logits(model(source, target))

    assert logits.shape == expected.shape
    # int8 weights and activations: close to fp32, not equal.
    assert (logits - expected).abs().max() < 0.1 * expected.abs().max()


def test_quantized_model_searches() -> None:
    model = quantize_model(make_model())
    source = make_source()
    greedy = greedy_search(model, source, bos_id=BOS, eos_id=EOS)
    beam = beam_search(model, source, bos_id=BOS, eos_id=EOS, beam_size=3, n_best=2)

    assert len(greedy) == 2
    assert [len(hypotheses) for hypotheses in beam] == [2, 2]


def test_quantize_rejects_training_mode() -> None:
    model = make_model().train()
    with pytest.raises(ValueError, match="eval mode"):
        quantize_model(model)


def test_quantize_translator_translates(tmp_path) -> None:
    translator = quantize_translator(Translator.load(make_tiny_model_dir(tmp_path / "tiny")))
    results = translator.translate([hindi for hindi, _ in TOY_PAIRS[:3]], beam_size=2)
    assert len(results) == 3


def test_packed_encoder_matches_padded() -> None:
    # Eval mode skips padding positions in the encoder; train mode (no dropout) keeps the layout.
    model = make_model()
    source = make_source()
    with torch.no_grad():
        packed, _ = model.encode(source)
        model.train()
        padded, _ = model.encode(source)

    real = source != PAD
    torch.testing.assert_close(packed[real], padded[real], atol=ATOL, rtol=0)
    assert torch.count_nonzero(packed[~real]) == 0
