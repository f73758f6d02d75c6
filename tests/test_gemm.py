"""Tests of `nmt.gemm`: backend choice, and equal products on both backends."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import torch
from torch import nn

from nmt import gemm
from nmt.attention import InferenceLinear, MultiHeadAttention


@pytest.fixture
def choose(monkeypatch):
    """Set NMT_GEMM and forget the cached choice, before and after the test."""
    def set_backend(value: str) -> str:
        monkeypatch.setenv("NMT_GEMM", value)
        gemm.backend.cache_clear()
        return gemm.backend()

    yield set_backend
    gemm.backend.cache_clear()


ONEDNN = pytest.param("onednn", marks=pytest.mark.skipif(
    not gemm._onednn_available(), reason="this torch build has no oneDNN packed linear"))


def test_rejects_unknown_backend(choose) -> None:
    with pytest.raises(ValueError, match="NMT_GEMM must be one of auto, torch, openblas, onednn"):
        choose("mkl")


@pytest.mark.parametrize("value", ["torch", "openblas", ONEDNN])
def test_backends_agree(choose, value: str, monkeypatch) -> None:
    choose(value)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    generator = torch.Generator().manual_seed(0)
    owner = nn.Module()
    rows = torch.randn(5, 16, generator=generator)  # (N, in)
    weight = torch.randn(7, 16, generator=generator)  # (out, in)
    bias = torch.randn(7, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(gemm.linear(rows, owner, weight, bias), rows @ weight.t() + bias)
        torch.testing.assert_close(gemm.linear(rows.t().contiguous().t(), owner, weight),
                                   rows @ weight.t())
        torch.testing.assert_close(gemm.linear(rows[:1], owner, weight), rows[:1] @ weight.t())
        torch.testing.assert_close(gemm.linear(rows, owner, weight, bias, relu=True),
                                   (rows @ weight.t() + bias).relu())


@pytest.mark.parametrize("value", ["torch", ONEDNN])
def test_prepared_weight_follows_updates(choose, value: str) -> None:
    choose(value)
    owner = nn.Linear(4, 3)
    rows = torch.ones(2, 4)
    with torch.inference_mode():
        before = gemm.linear(rows, owner, owner.weight, owner.bias)
    with torch.no_grad():
        owner.weight.mul_(2.0)  # bumps the version counter, as an optimizer step does
    with torch.inference_mode():
        after = gemm.linear(rows, owner, owner.weight, owner.bias)
    torch.testing.assert_close(after - owner.bias, 2.0 * (before - owner.bias))
    gemm.forget_weights(owner)
    assert "_gemm_weights" not in owner.__dict__


def test_openblas_only_on_one_torch_thread(choose, monkeypatch) -> None:
    choose("openblas")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)

    def fail(_):
        raise AssertionError("NumPy was called with torch on 2 threads")

    monkeypatch.setattr(torch, "from_numpy", fail)
    with torch.inference_mode():
        gemm.linear(torch.ones(2, 3), nn.Module(), torch.ones(4, 3))


@pytest.mark.parametrize("value", ["openblas", ONEDNN])
def test_gradients_use_torch(choose, value: str, monkeypatch) -> None:
    choose(value)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    rows = torch.ones(2, 3, requires_grad=True)
    gemm.linear(rows, nn.Module(), torch.ones(4, 3)).sum().backward()
    torch.testing.assert_close(rows.grad, torch.full((2, 3), 4.0))


@pytest.mark.skipif(not gemm._onednn_available(), reason="no oneDNN packed linear")
def test_auto_prefers_onednn(choose) -> None:
    assert choose("auto") == "onednn"


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


@pytest.mark.parametrize("value", ["torch", ONEDNN])
def test_torch_backend_sets_torch_threads(choose, restore_threads, value: str) -> None:
    choose(value)
    gemm.set_threads(2)
    assert torch.get_num_threads() == 2


def test_rejects_zero_threads(choose, restore_threads) -> None:
    with pytest.raises(ValueError, match=r"threads must be a whole number between 1 and \d+ "
                                         r"\(the CPUs available to this process\), got 0"):
        gemm.set_threads(0)


@pytest.mark.skipif(not gemm._onednn_available() or gemm._numpy_blas() != "openblas",
                    reason="needs oneDNN packed linear and NumPy with OpenBLAS")
def test_onednn_sends_small_products_to_openblas(choose, restore_threads, monkeypatch) -> None:
    monkeypatch.setattr(gemm, "_small_products_on", None)  # restored after the test
    monkeypatch.setattr(gemm, "_intel_cpu", lambda **_: False)
    choose("onednn")
    gemm.set_threads(2)
    assert _blas_threads() == 1  # OpenBLAS runs its products on the calling thread only
    calls = []
    original = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda array: calls.append(array.shape)
                        or original(array))
    owner, large = nn.Module(), nn.Module()
    with torch.inference_mode():
        gemm.linear(torch.ones(1, 256), owner, torch.ones(8000, 256))  # one row
        gemm.linear(torch.ones(8, 256), owner, torch.ones(256, 256))  # small weight
        gemm.linear(torch.ones(64, 256), large, torch.ones(1024, 256))  # oneDNN
    assert calls == [(1, 8000), (8, 256)]
    assert "onednn" in large.__dict__["_gemm_weights"]


@pytest.mark.skipif(not gemm._onednn_available() or not torch.backends.mkl.is_available(),
                    reason="needs oneDNN packed linear and torch with MKL")
def test_onednn_sends_small_products_to_mkl_on_intel(choose, restore_threads,
                                                     monkeypatch) -> None:
    monkeypatch.setattr(gemm, "_small_products_on", None)  # restored after the test
    monkeypatch.setattr(gemm, "_intel_cpu", lambda **_: True)
    choose("onednn")
    gemm.set_threads(2)
    assert gemm._small_products_on == "mkl"
    numpy_products, torch_products = [], []
    from_numpy, addmm = torch.from_numpy, torch.addmm
    monkeypatch.setattr(torch, "from_numpy", lambda array: numpy_products.append(array.shape)
                        or from_numpy(array))
    monkeypatch.setattr(torch, "addmm", lambda *args: torch_products.append(args[1].shape)
                        or addmm(*args))
    small, large = nn.Module(), nn.Module()
    torch.manual_seed(0)
    weight, bias = torch.randn(1024, 256), torch.randn(1024)
    with torch.inference_mode():
        for module, rows in ((small, 31), (large, 32)):
            x = torch.randn(rows, 256)
            out = gemm.linear(x, module, weight, bias, relu=True)
            torch.testing.assert_close(out, torch.relu(x @ weight.T + bias), rtol=1e-4,
                                       atol=1e-4)
    assert torch_products == [(31, 256)]  # torch's product (MKL) for the small one
    assert numpy_products == []  # nothing on OpenBLAS
    assert set(large.__dict__["_gemm_weights"]) == {"onednn"}


@pytest.mark.parametrize("value", ["torch", "openblas", ONEDNN])
def test_stacked_projection_follows_weight_changes(choose, restore_threads, value: str) -> None:
    """The stacked query/key/value weight is rebuilt after each change, and no backend copy of
    an earlier stack is reused, even where a new stack lands at a freed stack's address."""
    choose(value)
    gemm.set_threads(1)  # with onednn, small products then run on MKL or OpenBLAS
    torch.manual_seed(0)
    attention = MultiHeadAttention(128, 4, linear=InferenceLinear).eval()
    one_row, many_rows = torch.randn(1, 1, 128), torch.randn(64, 1, 128)  # (B, L, D)
    for change in range(60):
        with torch.no_grad():
            attention.value.weight.copy_(torch.randn(128, 128))  # in place, as an optimizer step
        with torch.inference_mode():
            attention.project_query_key_value(many_rows)  # a large product: one layout
            if change % 2:
                continue
            _, _, value_heads = attention.project_query_key_value(one_row)  # a small product
        expected = nn.functional.linear(one_row, attention.value.weight, attention.value.bias)
        torch.testing.assert_close(value_heads.transpose(1, 2).reshape(1, 1, 128), expected)


@pytest.mark.parametrize("streams, searches, per_search", [(1, 1, 2), (2, 2, 1), (3, 2, 1)])
def test_split_threads_shares_and_gives_back(choose, streams: int, searches: int,
                                             per_search: int) -> None:
    choose("torch")
    gemm.set_threads(2)
    with gemm.split_threads(streams) as allowed:
        assert allowed == searches
        assert torch.get_num_threads() == per_search
    assert torch.get_num_threads() == 2


def test_split_threads_restores_own_count(choose) -> None:
    # The service sets its count on a worker thread, and the main thread keeps its own 2.
    choose("torch")
    gemm.set_threads(2)
    worker = threading.Thread(target=gemm.set_threads, args=(1,))
    worker.start()
    worker.join()

    with gemm.split_threads(2) as searches:
        assert searches == 2
    assert torch.get_num_threads() == 2


def test_overlapping_splits_restore_threads(choose) -> None:
    choose("torch")
    gemm.set_threads(2)
    entered, leave = threading.Event(), threading.Event()
    after: list[int] = []

    def other_translator() -> None:
        with gemm.split_threads(2):
            entered.set()
            leave.wait(10)
        after.append(torch.get_num_threads())

    other = threading.Thread(target=other_translator)
    other.start()
    assert entered.wait(10)
    with gemm.split_threads(2):
        assert torch.get_num_threads() == 1
    leave.set()
    other.join()

    assert torch.get_num_threads() == 2
    assert after == [2]
    assert gemm._threads == (2, False)


@pytest.mark.parametrize("threads", [0, -1, 3, 100_000, True, 1.5])
def test_check_threads_names_the_limit(monkeypatch, threads) -> None:
    monkeypatch.setattr(gemm, "available_cpus", lambda: 2)
    message = ("--threads must be a whole number between 1 and 2 (the CPUs available to this "
               f"process), got {threads!r}")
    with pytest.raises(ValueError, match=re.escape(message)):
        gemm.check_threads(threads, "--threads")


@pytest.mark.parametrize("threads, expected", [(None, None), (1, 1), (2, 2), (np.int64(2), 2)])
def test_check_threads_accepts_available_counts(monkeypatch, threads, expected) -> None:
    monkeypatch.setattr(gemm, "available_cpus", lambda: 2)
    assert gemm.check_threads(threads, "--threads") == expected


def test_split_threads_restores_after_cpus_shrink(choose, restore_threads, monkeypatch) -> None:
    # The CPUs available may shrink while a block runs (taskset -p); leaving it must not fail.
    choose("torch")
    gemm.set_threads(2)
    with gemm.split_threads(2):
        monkeypatch.setattr(gemm, "available_cpus", lambda: 1)
    assert torch.get_num_threads() == 2


def test_set_threads_rejects_excess_threads(monkeypatch) -> None:
    monkeypatch.setattr(gemm, "available_cpus", lambda: 2)
    with pytest.raises(ValueError, match="threads must be a whole number between 1 and 2"):
        gemm.set_threads(3)


@pytest.mark.parametrize("streams, threads, message", [
    (0, 2, "--streams must be between 1 and 2 (--threads), got 0"),
    (3, 2, "--streams must be between 1 and 2 (--threads), got 3"),
])
def test_check_streams_names_limit(streams: int, threads: int, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        gemm.check_streams(streams, threads)


@pytest.mark.parametrize("intel, avx512, blas, main_thread, expected", [
    (False, True, "openblas", True, "onednn"),
    (False, False, "openblas", True, "onednn"),
    (False, True, "openblas", False, "onednn"),  # an AVX-512 AMD EPYC
    (False, False, "openblas", False, "openblas"),  # an AVX2 AMD EPYC
    (True, True, "mkl", False, "torch"),  # an Intel Xeon
    (False, False, "mkl", False, "torch"),
])
def test_automatic_backend_by_cpu_and_thread(monkeypatch, intel: bool, avx512: bool, blas: str,
                                             main_thread: bool, expected: str) -> None:
    monkeypatch.setattr(gemm, "_onednn_available", lambda: True)
    monkeypatch.setattr(gemm, "_intel_cpu", lambda **_: intel)
    monkeypatch.setattr(gemm, "_avx512", lambda: avx512)
    monkeypatch.setattr(gemm, "_numpy_blas", lambda: blas)
    assert gemm.automatic_backend(main_thread=main_thread) == expected


def test_automatic_backend_without_onednn(monkeypatch) -> None:
    monkeypatch.setattr(gemm, "_onednn_available", lambda: False)
    monkeypatch.setattr(gemm, "_intel_cpu", lambda **_: False)
    monkeypatch.setattr(gemm, "_avx512", lambda: True)
    monkeypatch.setattr(gemm, "_numpy_blas", lambda: "openblas")
    assert gemm.automatic_backend() == gemm.automatic_backend(main_thread=False) == "openblas"


def test_worker_thread_backend_keeps_an_explicit_choice(choose) -> None:
    choose("torch")
    assert gemm.use_worker_thread_backend() == "torch"
    choose("auto")
    assert gemm.use_worker_thread_backend() == gemm.automatic_backend(main_thread=False)
