"""Tests of `nmt.decoder_step`: the flat search step computes what `Transformer.decode` computes,
and models it does not cover fall back to `decode`."""

from __future__ import annotations

import pytest
import torch

from nmt.config import ModelConfig
from nmt.decoder_step import decode_step, prepare_step
from nmt.model import Transformer
from nmt.quantize import quantize_model
from nmt.search import beam_search, greedy_search

PAD, BOS, EOS = 0, 1, 2
VOCAB = 40
ATOL = 1e-5
STEPS = 6

VARIANTS = {
    "relu tied": {},
    "gelu untied": {"activation": "gelu", "tie_embeddings": False},
    "int8": {"int8": True},
}


def make_model(seed: int = 0, *, int8: bool = False, **overrides) -> Transformer:
    torch.manual_seed(seed)
    values = dict(vocab_size=VOCAB, d_model=32, n_heads=4, d_ff=64, encoder_layers=2,
                  decoder_layers=2, dropout=0.0, max_positions=32)
    model = Transformer(ModelConfig(**{**values, **overrides}), pad_id=PAD).eval()
    return quantize_model(model) if int8 else model


def padded_sources() -> torch.Tensor:
    """Three sentences of 7, 5 and 3 tokens (B, S), padded, so that masking matters."""
    generator = torch.Generator().manual_seed(1)
    source = torch.randint(EOS + 1, VOCAB, (3, 7), generator=generator)
    source[1, 5:] = PAD
    source[2, 3:] = PAD
    return source


def run_steps(step, model: Transformer, group: int) -> tuple[torch.Tensor, list]:
    """Decode STEPS random positions with `step`, reordering rows between steps as beam search
    does. Return the states of every step (STEPS, B·group, D) and the final cache."""
    generator = torch.Generator().manual_seed(2)
    with torch.inference_mode():
        memory, source_mask = model.encode(padded_sources())
        cache = model.start_cache(memory, source_mask).expand(group)
        rows = 3 * group
        states = []
        for _ in range(STEPS):
            target = torch.randint(EOS + 1, VOCAB, (rows, 1), generator=generator)  # (B·K, 1)
            states.append(step(target, cache))
            # Beam k of each sentence continues some beam of the same sentence.
            parents = torch.randint(0, group, (rows,), generator=generator)
            parents += torch.arange(rows) // group * group
            cache = cache.select(parents, same_sources=True)
    return torch.stack(states), cache


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
@pytest.mark.parametrize("group", [1, 4])
def test_step_matches_decode(overrides: dict, group: int) -> None:
    model = make_model(**overrides)
    with torch.inference_mode():
        layers = prepare_step(model)
    assert layers is not None

    def reference(target, cache):
        states, _ = model.decode(target, cache)
        return states[:, -1]

    expected, expected_cache = run_steps(reference, model, group)
    actual, cache = run_steps(lambda target, cache: decode_step(model, layers, target, cache),
                              model, group)

    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)
    assert cache.length == expected_cache.length == STEPS
    for layer, expected_layer in zip(cache.layers, expected_cache.layers, strict=True):
        torch.testing.assert_close(layer.self_key, expected_layer.self_key, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.self_value, expected_layer.self_value, atol=ATOL, rtol=0)


def test_searches_agree_with_decode() -> None:
    # The same outputs whether search steps through decode_step or through decode.
    model = make_model(seed=3)
    source = padded_sources()
    options = dict(bos_id=BOS, eos_id=EOS, max_length=12)
    flat_beam = beam_search(model, source, beam_size=4, n_best=2, **options)
    flat_greedy = greedy_search(model, source, **options)

    model.decode_step = lambda target, cache: model.decode(target, cache)[0][:, -1]
    stepped_beam = beam_search(model, source, beam_size=4, n_best=2, **options)
    stepped_greedy = greedy_search(model, source, **options)

    # The two round differently, so scores agree to about 1e-6.
    flat = [h for hypotheses in flat_beam for h in hypotheses] + flat_greedy
    stepped = [h for hypotheses in stepped_beam for h in hypotheses] + stepped_greedy
    assert [h.tokens for h in flat] == [h.tokens for h in stepped]
    assert [h.score for h in flat] == pytest.approx([h.score for h in stepped], abs=1e-5)


def test_other_models_fall_back_to_decode() -> None:
    post_norm = make_model(pre_norm=False)
    training = make_model().train()
    with torch.inference_mode():
        assert prepare_step(post_norm) is None
        assert prepare_step(training) is None
    with torch.no_grad():
        assert prepare_step(make_model()) is not None
    assert prepare_step(make_model()) is None  # gradients on

    # The fallback returns the last position's states, as decode_step does.
    with torch.inference_mode():
        memory, source_mask = post_norm.encode(padded_sources())
        cache = post_norm.start_cache(memory, source_mask)
        states = post_norm.decode_step(torch.full((3, 1), BOS), cache)
    assert states.shape == (3, post_norm.config.d_model)
    assert cache.length == 1


def test_step_rejects_positions_past_the_table() -> None:
    model = make_model(max_positions=8)
    with torch.inference_mode():
        memory, source_mask = model.encode(padded_sources())
        cache = model.start_cache(memory, source_mask)
        layers = prepare_step(model)
        for _ in range(8):
            decode_step(model, layers, torch.full((3, 1), BOS), cache)
        with pytest.raises(ValueError, match="exceeds max_positions"):
            decode_step(model, layers, torch.full((3, 1), BOS), cache)
