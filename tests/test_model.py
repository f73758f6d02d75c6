"""Tests of `nmt.model`, `nmt.attention` and `nmt.config`: incremental decoding, masking,
variants, joint projections, config checks."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.attention import InferenceLinear, MultiHeadAttention
from nmt.config import ModelConfig
from nmt.model import Transformer, sinusoidal_positions

PAD, BOS, EOS = 0, 1, 2
VOCAB = 40
ATOL = 1e-5

VARIANTS = {
    "pre-norm tied": {},
    "post-norm": {"pre_norm": False},
    "untied": {"tie_embeddings": False},
    "post-norm untied gelu": {"pre_norm": False, "tie_embeddings": False, "activation": "gelu"},
}


def make_model(seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    values = dict(vocab_size=VOCAB, d_model=32, n_heads=4, d_ff=64, encoder_layers=2,
                  decoder_layers=2, dropout=0.0, max_positions=32)
    config = ModelConfig(**{**values, **overrides})
    return Transformer(config, pad_id=PAD).eval()


def random_ids(rows: int, length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(EOS + 1, VOCAB, (rows, length), generator=generator)  # (B, L)


def full_decoder_states(model: Transformer, source: torch.Tensor, target: torch.Tensor):
    with torch.no_grad():
        return model(source, target)  # (B, T, D)


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_incremental_decoding_matches_full(overrides: dict) -> None:
    model = make_model(**overrides)
    source, target = random_ids(3, 7, seed=1), random_ids(3, 6, seed=2)
    full = full_decoder_states(model, source, target)

    with torch.no_grad():
        memory, source_mask = model.encode(source)
        cache = model.start_cache(memory, source_mask)
        steps = [model.decode(target[:, t:t + 1], cache)[0] for t in range(target.size(1))]
    incremental = torch.cat(steps, dim=1)  # (B, T, D)

    assert cache.length == target.size(1)
    torch.testing.assert_close(incremental, full, atol=ATOL, rtol=0)


def test_chunked_decoding_matches_full() -> None:
    # A multi-token chunk after cached positions uses the offset causal mask.
    model = make_model()
    source, target = random_ids(2, 5, seed=3), random_ids(2, 8, seed=4)
    full = full_decoder_states(model, source, target)

    with torch.no_grad():
        memory, source_mask = model.encode(source)
        cache = model.start_cache(memory, source_mask)
        first, _ = model.decode(target[:, :3], cache)
        second, _ = model.decode(target[:, 3:4], cache)
        third, _ = model.decode(target[:, 4:], cache)
    chunked = torch.cat([first, second, third], dim=1)

    torch.testing.assert_close(chunked, full, atol=ATOL, rtol=0)


def test_decode_returns_requested_attention() -> None:
    model = make_model()
    source, target = random_ids(2, 5, seed=5), random_ids(2, 3, seed=6)
    with torch.no_grad():
        memory, source_mask = model.encode(source)
        cache = model.start_cache(memory, source_mask)
        _, attention = model.decode(target, cache, attention_layer=1)

    assert attention is not None
    assert attention.shape == (2, 4, 3, 5)  # (B, H, T, S)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 4, 3))


def pad_to(ids: torch.Tensor, length: int) -> torch.Tensor:
    padding = torch.full((ids.size(0), length - ids.size(1)), PAD, dtype=ids.dtype)
    return torch.cat([ids, padding], dim=1)


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_padding_does_not_leak(overrides: dict) -> None:
    model = make_model(**overrides)
    short_source, short_target = random_ids(1, 4, seed=7), random_ids(1, 3, seed=8)
    long_source, long_target = random_ids(1, 9, seed=9), random_ids(1, 7, seed=10)
    source = torch.cat([pad_to(short_source, 9), long_source])  # (2, 9)
    target = torch.cat([pad_to(short_target, 7), long_target])  # (2, 7)

    with torch.no_grad():
        alone_memory, _ = model.encode(short_source)
        batch_memory, _ = model.encode(source)
        alone_logits = model.logits(model(short_source, short_target))
        batch_logits = model.logits(model(source, target))

    torch.testing.assert_close(batch_memory[:1, :4], alone_memory, atol=ATOL, rtol=0)
    torch.testing.assert_close(batch_logits[:1, :3], alone_logits, atol=ATOL, rtol=0)


def test_padding_tokens_change_nothing() -> None:
    # What sits at a padded source position is masked out, whatever its value.
    model = make_model()
    source = pad_to(random_ids(2, 4, seed=11), 6)
    target = random_ids(2, 5, seed=12)
    with torch.no_grad():
        reference = model.logits(model(source, target))
        model.embedding.weight[PAD].fill_(5.0)
        changed = model.logits(model(source, target))
    torch.testing.assert_close(changed, reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_variants_run(overrides: dict) -> None:
    model = make_model(**overrides)
    source, target = random_ids(2, 5, seed=13), random_ids(2, 4, seed=14)
    with torch.no_grad():
        logits = model.logits(model(source, target))
    assert logits.shape == (2, 4, VOCAB)
    assert torch.isfinite(logits).all()


def test_untied_output_weight_is_separate() -> None:
    model = make_model(tie_embeddings=False)
    assert model.output_projection is not None
    assert model.output_weight is model.output_projection.weight
    assert model.output_weight is not model.embedding.weight


def test_tied_output_weight_is_embedding() -> None:
    model = make_model()
    assert model.output_projection is None
    assert model.output_weight is model.embedding.weight


def test_post_norm_has_no_final_norm() -> None:
    model = make_model(pre_norm=False)
    assert isinstance(model.encoder_norm, torch.nn.Identity)
    assert isinstance(model.decoder_norm, torch.nn.Identity)


def test_padding_embedding_starts_zero() -> None:
    model = make_model()
    assert torch.count_nonzero(model.embedding.weight[PAD]) == 0


def test_embed_rejects_too_long() -> None:
    model = make_model(max_positions=8)
    with pytest.raises(ValueError, match="max_positions"):
        model.encode(random_ids(1, 9, seed=15))


def test_decode_rejects_past_max_positions() -> None:
    model = make_model(max_positions=8)
    with torch.no_grad():
        memory, source_mask = model.encode(random_ids(1, 3, seed=16))
        cache = model.start_cache(memory, source_mask)
        model.decode(random_ids(1, 8, seed=17), cache)
        with pytest.raises(ValueError, match="max_positions"):
            model.decode(random_ids(1, 1, seed=18), cache)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vocab_size": 10, "d_modle": 32}, "d_modle"),
        ({"vocab_size": 10, "layers": 2, "heads": 4}, "heads, layers"),
        ({"vocab_size": 10, "d_model": 30, "n_heads": 4}, "divisible"),
        ({"vocab_size": 10, "activation": "tanh"}, "activation"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"vocab_size": 10, "d_ff": -1}, "d_ff"),
        ({"vocab_size": 10, "max_positions": 0}, "max_positions"),
        ({"vocab_size": 10, "d_model": 0}, "d_model"),
    ],
)
def test_model_config_rejects(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(values)


def test_model_config_round_trip(tmp_path) -> None:
    config = ModelConfig(vocab_size=123, d_model=48, n_heads=6, pre_norm=False,
                         tie_embeddings=False, activation="gelu")
    config.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == config


def test_model_config_head_dim() -> None:
    assert ModelConfig(vocab_size=10, d_model=48, n_heads=6).head_dim == 8


@pytest.mark.parametrize("position", [0, 1, 7, 100])
@pytest.mark.parametrize("pair", [0, 1, 3])
def test_sinusoidal_values(position: int, pair: int) -> None:
    d_model = 8
    table = sinusoidal_positions(128, d_model)
    angle = position / 10000 ** (2 * pair / d_model)
    assert table[position, 2 * pair].item() == pytest.approx(math.sin(angle), abs=1e-5)
    assert table[position, 2 * pair + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_sinusoidal_shape() -> None:
    assert sinusoidal_positions(50, 16).shape == (50, 16)


def test_grouped_cache_matches_copied_cache() -> None:
    # Beams that share their sentence's cross-attention keys and values decode like beams with
    # copies of them, through reordering within sentences and dropping a sentence.
    model = make_model()
    beams = 3
    source = torch.cat([pad_to(random_ids(1, 4, seed=19), 6), random_ids(1, 6, seed=20)])
    target = random_ids(2 * beams, 4, seed=21)  # (B · K, T)
    with torch.no_grad():
        memory, source_mask = model.encode(source)
        rows = torch.arange(2).repeat_interleave(beams)  # (B · K,)
        copied = model.start_cache(memory, source_mask).select(rows)
        grouped = model.start_cache(memory, source_mask).expand(beams)

        for step in range(2):
            expected, _ = model.decode(target[:, step:step + 1], copied, attention_layer=0)
            found, _ = model.decode(target[:, step:step + 1], grouped, attention_layer=0)
            torch.testing.assert_close(found, expected, atol=ATOL, rtol=0)

        reorder = torch.tensor([2, 0, 0, 4, 5, 3])  # beams move within their sentence
        copied, grouped = copied.select(reorder), grouped.select(reorder)
        expected, expected_attention = model.decode(target[:, 2:3], copied, attention_layer=1)
        found, found_attention = model.decode(target[:, 2:3], grouped, attention_layer=1)
        torch.testing.assert_close(found, expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(found_attention, expected_attention, atol=ATOL, rtol=0)

        second_sentence = torch.tensor([3, 4, 5])
        copied, grouped = copied.select(second_sentence), grouped.select(second_sentence)
        expected, _ = model.decode(target[3:, 3:4], copied)
        found, _ = model.decode(target[3:, 3:4], grouped)
        torch.testing.assert_close(found, expected, atol=ATOL, rtol=0)
    assert grouped.source_mask.size(0) == 1


def padded_layout_states(model: Transformer, source: torch.Tensor,
                         target: torch.Tensor) -> torch.Tensor:
    """Decoder states (B, T, D) computed on the padded layout, without packing the target."""
    memory, source_mask = model.encode(source)
    states, _ = model.decode(target, model.start_cache(memory, source_mask))
    return states


def test_forward_skips_target_padding() -> None:
    model = make_model()
    source = torch.cat([pad_to(random_ids(1, 4, seed=13), 6), random_ids(1, 6, seed=14)])
    target = torch.cat([pad_to(random_ids(1, 2, seed=15), 5), random_ids(1, 5, seed=16)])
    real = target != PAD  # (B, T)
    with torch.no_grad():
        packed = model(source, target)  # (B, T, D)
        padded = padded_layout_states(model, source, target)

    torch.testing.assert_close(packed[real], padded[real], atol=ATOL, rtol=0)
    assert not packed[~real].any()


def test_packed_training_gradients_match_padded_layout() -> None:
    model = make_model().train()  # dropout 0, so both passes are deterministic
    source = torch.cat([pad_to(random_ids(1, 3, seed=17), 5), random_ids(1, 5, seed=18)])
    target = torch.cat([pad_to(random_ids(1, 2, seed=19), 4), random_ids(1, 4, seed=20)])
    real = target != PAD

    def gradients(states_of) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        states = states_of(model, source, target)  # (B, T, D)
        model.logits(states[real]).logsumexp(-1).sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    packed = gradients(lambda m, s, t: m(s, t))
    padded = gradients(padded_layout_states)
    assert len(packed) == len(padded)
    for a, b in zip(packed, padded, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_stacked_projection_matches_separate() -> None:
    torch.manual_seed(0)
    attention = MultiHeadAttention(32, 4, linear=InferenceLinear).eval()
    x = torch.randn(3, 5, 32)  # (B, L, D)

    def compare() -> None:
        separate = [t.detach() for t in attention.project_query_key_value(x)]  # autograd path
        with torch.inference_mode():
            joint = attention.project_query_key_value(x)  # one product on stacked weights
        for got, expected in zip(joint, separate, strict=True):
            assert got.shape == (3, 4, 5, 8)
            torch.testing.assert_close(got, expected)

    compare()
    with torch.no_grad():
        attention.value.weight.mul_(2.0)  # the stacked copy must follow
    compare()
