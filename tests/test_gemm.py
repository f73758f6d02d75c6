"""Tests of `nmt.gemm`: backend choice, and equal products on both backends."""

from __future__ import annotations

import pytest
import torch

from nmt import gemm


@pytest.fixture
def choose(monkeypatch):
    """Set NMT_GEMM and forget the cached choice, before and after the test."""
    def set_backend(value: str) -> str:
        monkeypatch.setenv("NMT_GEMM", value)
        gemm.backend.cache_clear()
        return gemm.backend()

    yield set_backend
    gemm.backend.cache_clear()


def test_rejects_unknown_backend(choose) -> None:
    with pytest.raises(ValueError, match="NMT_GEMM must be one of auto, torch, openblas"):
        choose("mkl")


@pytest.mark.parametrize("value", ["torch", "openblas"])
def test_backends_agree(choose, value: str, monkeypatch) -> None:
    choose(value)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(5, 16, generator=generator)  # (N, in)
    weight_t = torch.randn(16, 7, generator=generator)  # (in, out)
    bias = torch.randn(7, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(gemm.linear(rows, weight_t, bias), rows @ weight_t + bias)
        torch.testing.assert_close(gemm.linear(rows.t().contiguous().t(), weight_t),
                                   rows @ weight_t)


def test_openblas_only_on_one_torch_thread(choose, monkeypatch) -> None:
    choose("openblas")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)

    def fail(_):
        raise AssertionError("NumPy was called with torch on 2 threads")

    monkeypatch.setattr(torch, "from_numpy", fail)
    with torch.inference_mode():
        gemm.linear(torch.ones(2, 3), torch.ones(3, 4))


def test_gradients_use_torch(choose, monkeypatch) -> None:
    choose("openblas")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    rows = torch.ones(2, 3, requires_grad=True)
    gemm.linear(rows, torch.ones(3, 4)).sum().backward()
    torch.testing.assert_close(rows.grad, torch.full((2, 3), 4.0))


@pytest.fixture
def restore_threads():
    """Give torch and the BLAS libraries back their thread counts after the test."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS limits on exit
        yield
    torch.set_num_threads(threads)


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


@pytest.mark.skipif(gemm._numpy_blas() != "openblas", reason="NumPy's BLAS is not OpenBLAS")
def test_openblas_threads_leave_torch_on_one(choose, restore_threads) -> None:
    choose("openblas")
    gemm.set_threads(2)
    assert (torch.get_num_threads(), _blas_threads()) == (1, 2)


def test_quantized_models_keep_torch_threads(choose, restore_threads) -> None:
    choose("openblas" if gemm._numpy_blas() == "openblas" else "torch")
    gemm.set_threads(2, quantized=True)
    assert torch.get_num_threads() == 2


def test_torch_backend_sets_torch_threads(choose, restore_threads) -> None:
    choose("torch")
    gemm.set_threads(2)
    assert torch.get_num_threads() == 2


def test_rejects_zero_threads(choose, restore_threads) -> None:
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        gemm.set_threads(0)
