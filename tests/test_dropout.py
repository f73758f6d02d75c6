"""Tests of `nmt.dropout`: drop rate, expectation, gradients and the identity outside training."""

from __future__ import annotations

import pytest
import torch

from nmt.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_drop_rate_and_expectation(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(400, 501)  # an odd element count takes half of the last 32-bit draw
    out = dropout(x, p)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - p) < 0.005
    assert abs(out.mean().item() - 1.0) < 0.01
    scaled = out[out != 0]  # every kept element has the same scale
    torch.testing.assert_close(scaled, torch.full_like(scaled, scaled[0].item()))


def test_gradient_is_the_mask() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    out = dropout(x, 0.3)
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach() / x.detach())


def test_seeded_masks_repeat() -> None:
    x = torch.ones(10, 10)
    torch.manual_seed(2)
    first = dropout(x, 0.2)
    torch.manual_seed(2)
    torch.testing.assert_close(dropout(x, 0.2), first)


def test_identity_outside_training_and_at_zero() -> None:
    x = torch.randn(5, 7)
    module = Dropout(0.5).eval()
    assert module(x) is x
    assert dropout(x, 0.0) is x
    assert not Dropout(1.0).train()(x).any()


def test_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
