"""Tests of `training.loss`: the additive angular margin term and label-smoothed cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.loss import angular_margin_cosines, margin_loss, translation_loss

PAD = 0
VOCAB, WIDTH = 11, 8


def random_inputs(seed: int = 0, batch: int = 3, length: int = 5):
    """Decoder states (B, T, D), output weights (V, D) and targets (B, T) with some padding."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, length, WIDTH, generator=generator)
    weight = torch.randn(VOCAB, WIDTH, generator=generator)
    target = torch.randint(1, VOCAB, (batch, length), generator=generator)
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    return states, weight, target


def cosines(states: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.normalize(states, dim=-1) @ F.normalize(weight, dim=-1).T  # (N, V)


def target_cosines(thetas: list[float], vocab: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A (N, V) cosine matrix whose target column (column 1) contains cos θ for each θ."""
    cosine = torch.full((len(thetas), vocab), 0.3, dtype=torch.float64)
    cosine[:, 1] = torch.cos(torch.tensor(thetas, dtype=torch.float64))
    return cosine, torch.ones(len(thetas), dtype=torch.long)


# --- angular_margin_cosines ---------------------------------------------------------------------


def test_zero_margin_is_identity() -> None:
    generator = torch.Generator().manual_seed(1)
    cosine = torch.rand(6, VOCAB, generator=generator) * 1.8 - 0.9  # inside (-0.9, 0.9)
    target = torch.randint(0, VOCAB, (6,), generator=generator)
    torch.testing.assert_close(angular_margin_cosines(cosine, target, 0.0), cosine)


@pytest.mark.parametrize("margin", [0.1, 0.2, 0.5])
def test_margin_shifts_target_angle(margin: float) -> None:
    thetas = [t for t in (0.05, 0.3, 1.0, 1.5, 2.0, 2.5, 3.0) if t + margin < math.pi - 0.01]
    cosine, target = target_cosines(thetas)
    shifted = angular_margin_cosines(cosine, target, margin)
    expected = [math.cos(math.acos(math.cos(theta)) + margin) for theta in thetas]
    assert shifted[:, 1].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("margin", [0.2, 0.5])
def test_margin_changes_only_target_column(margin: float) -> None:
    cosine, target = target_cosines([0.4, 1.2, 2.9])
    shifted = angular_margin_cosines(cosine, target, margin)
    others = [0, 2, 3]
    torch.testing.assert_close(shifted[:, others], cosine[:, others])
    assert (shifted[:, 1] < cosine[:, 1]).all()


@pytest.mark.parametrize("margin", [0.2, 0.5, 1.0])
def test_target_logit_monotone_in_angle(margin: float) -> None:
    # Over all of (0, π), past π - m included, a larger angle gives a smaller target logit.
    thetas = torch.linspace(0.01, math.pi - 0.01, 400).tolist()
    cosine, target = target_cosines(thetas)
    shifted = angular_margin_cosines(cosine, target, margin)[:, 1]
    assert (shifted[1:] < shifted[:-1]).all()


@pytest.mark.parametrize("margin", [0.2, 0.5])
def test_linear_extension_past_pi_minus_margin(margin: float) -> None:
    # Past θ + m = π the target logit is cos θ − m sin m.
    thetas = [math.pi - margin / 2, math.pi - 0.05]
    cosine, target = target_cosines(thetas)
    shifted = angular_margin_cosines(cosine, target, margin)[:, 1]
    expected = [math.cos(theta) - margin * math.sin(margin) for theta in thetas]
    assert shifted.tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("target_cosine", [1.0, -1.0, 1.0 - 1e-9, -1.0 + 1e-9])
def test_margin_gradient_finite_at_extremes(target_cosine: float) -> None:
    cosine = torch.tensor([[0.1, target_cosine, -0.2]], requires_grad=True)
    target = torch.tensor([1])
    angular_margin_cosines(cosine, target, 0.3).sum().backward()
    assert torch.isfinite(cosine.grad).all()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_margin_loss_gradient_finite_when_aligned(sign: float) -> None:
    # The state is parallel (cos θ = 1) or antiparallel (cos θ = -1) to its target embedding.
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(VOCAB, WIDTH, generator=generator)
    target = torch.tensor([3, 5])
    states = (sign * weight[target] * 2.0).clone().requires_grad_(True)
    weight.requires_grad_(True)
    loss = margin_loss(states, weight, target, margin=0.2, scale=16.0, ignore_index=PAD)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(states.grad).all()
    assert torch.isfinite(weight.grad).all()


# --- margin_loss --------------------------------------------------------------------------------


def test_zero_margin_loss_is_cosine_softmax() -> None:
    states, weight, target = random_inputs()
    states, target = states.reshape(-1, WIDTH), target.reshape(-1)
    scale = 16.0
    loss = margin_loss(states, weight, target, margin=0.0, scale=scale, ignore_index=PAD)

    keep = target != PAD
    expected = F.cross_entropy(scale * cosines(states[keep], weight), target[keep],
                               reduction="sum")
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)


def test_margin_loss_uses_shifted_target() -> None:
    states, weight, target = random_inputs(seed=3)
    states, target = states.reshape(-1, WIDTH), target.reshape(-1)
    margin, scale = 0.3, 8.0
    loss = margin_loss(states, weight, target, margin=margin, scale=scale, ignore_index=PAD)

    keep = target != PAD
    cosine = cosines(states[keep], weight).double()
    rows = torch.arange(int(keep.sum()))
    theta = torch.acos(cosine[rows, target[keep]].clamp(-1, 1))
    logits = cosine.clone()
    logits[rows, target[keep]] = torch.cos(theta + margin)  # every θ + m here is below π
    assert (theta + margin < math.pi).all()
    expected = F.cross_entropy(scale * logits, target[keep], reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_margin_increases_loss() -> None:
    states, weight, target = random_inputs(seed=4)
    states, target = states.reshape(-1, WIDTH), target.reshape(-1)
    options = dict(scale=16.0, ignore_index=PAD)
    without = margin_loss(states, weight, target, margin=0.0, **options)
    with_margin = margin_loss(states, weight, target, margin=0.3, **options)
    assert with_margin > without


# --- translation_loss ---------------------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
def test_weight_zero_is_plain_smoothed_loss(label_smoothing: float) -> None:
    states, weight, target = random_inputs(seed=5)
    total, plain, count = translation_loss(states, weight, target, pad_id=PAD,
                                           label_smoothing=label_smoothing, margin_weight=0.0)

    logits = (states @ weight.T).reshape(-1, VOCAB)
    flat = target.reshape(-1)
    expected_total = F.cross_entropy(logits, flat, ignore_index=PAD,
                                     label_smoothing=label_smoothing, reduction="sum")
    expected_plain = F.cross_entropy(logits, flat, ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(total, expected_total)
    torch.testing.assert_close(plain, expected_plain)
    assert count == int((target != PAD).sum())


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
def test_margin_term_added_with_weight(label_smoothing: float) -> None:
    states, weight, target = random_inputs(seed=6)
    options = dict(pad_id=PAD, label_smoothing=label_smoothing, margin=0.2, margin_scale=16.0)
    base, _, _ = translation_loss(states, weight, target, margin_weight=0.0, **options)
    total, _, _ = translation_loss(states, weight, target, margin_weight=0.5, **options)

    term = margin_loss(states.reshape(-1, WIDTH), weight, target.reshape(-1), margin=0.2,
                       scale=16.0, ignore_index=PAD)
    torch.testing.assert_close(total - base, 0.5 * term, atol=1e-4, rtol=1e-5)


def test_label_smoothing_does_not_move_margin() -> None:
    # The margin term is the same whatever the smoothing: it always shifts the gold token's logit.
    states, weight, target = random_inputs(seed=7)
    differences = []
    for label_smoothing in (0.0, 0.2):
        options = dict(pad_id=PAD, label_smoothing=label_smoothing, margin=0.3)
        base, _, _ = translation_loss(states, weight, target, margin_weight=0.0, **options)
        total, _, _ = translation_loss(states, weight, target, margin_weight=1.0, **options)
        differences.append(total - base)
    torch.testing.assert_close(differences[0], differences[1], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("margin_weight", [0.0, 0.5])
def test_padding_positions_ignored(margin_weight: float) -> None:
    states, weight, target = random_inputs(seed=8)
    options = dict(pad_id=PAD, label_smoothing=0.1, margin_weight=margin_weight)
    reference = translation_loss(states, weight, target, **options)

    changed_states = states.clone()
    changed_states[target == PAD] = 100.0
    changed = translation_loss(changed_states, weight, target, **options)

    torch.testing.assert_close(changed[0], reference[0])
    torch.testing.assert_close(changed[1], reference[1])
    assert changed[2] == reference[2] == int((target != PAD).sum())


@pytest.mark.parametrize("margin_weight", [0.0, 0.5])
def test_padding_positions_get_no_gradient(margin_weight: float) -> None:
    states, weight, target = random_inputs(seed=9)
    states.requires_grad_(True)
    total, _, _ = translation_loss(states, weight, target, pad_id=PAD, label_smoothing=0.1,
                                   margin_weight=margin_weight)
    total.backward()
    assert torch.count_nonzero(states.grad[target == PAD]) == 0
    assert torch.count_nonzero(states.grad[target != PAD]) > 0


def test_plain_loss_is_detached() -> None:
    states, weight, target = random_inputs(seed=10)
    states.requires_grad_(True)
    total, plain, _ = translation_loss(states, weight, target, pad_id=PAD)
    assert total.requires_grad
    assert not plain.requires_grad
