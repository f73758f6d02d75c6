"""Matrix products for inference, on the fastest of three CPU backends.

The products of a decoding step have few rows (the beams of the sentences still searching) and
fixed weights. Three backends multiply them:

- `onednn`: torch's oneDNN kernels on a copy of each weight packed once into oneDNN's blocked
  layout (`torch.ops.mkldnn._reorder_linear_weight` and `_linear_pointwise`, the operators that
  torch's Inductor uses for frozen CPU linears), so no call re-packs the weight. On one AVX-512
  core of an AMD EPYC (torch 2.13), a 16 × 256 by 256 × 8000 product took 629 µs, against
  958 µs with NumPy's OpenBLAS and 1084 µs with torch's MKL. But each oneDNN call costs some
  15-25 µs more, so after `set_threads` small products run elsewhere: on an Intel CPU with
  torch's MKL, products of under 32 rows (`_SMALL_ROWS_ON_MKL`) on MKL; otherwise, where NumPy's
  BLAS is OpenBLAS, the products that `_small` selects on one OpenBLAS thread.
- `openblas`: NumPy's matrix product (OpenBLAS) on a transposed copy of each weight, for fp32
  CPU tensors in inference, while torch runs on one thread. torch's CPU builds multiply fp32
  matrices with Intel MKL, which is slow on AMD CPUs: on one thread of an AVX2 AMD EPYC,
  OpenBLAS ran the shapes of a decoding step 1.2-2× as fast. The two libraries never run thread
  pools at the same time, because with both on 2 threads a search ran 10 times slower than on
  one. `set_threads(n)` therefore gives the products to OpenBLAS on n threads and runs torch's
  other operations (attention, softmax, layer norm) on one.
- `torch`: torch's own matrix product on a transposed copy of each weight.

The backend is chosen once per process from NMT_GEMM: `auto` (default) takes `onednn` where
torch has it, else `openblas` when the CPU is not Intel's and NumPy's BLAS is OpenBLAS, else
`torch`. Searches on a worker thread may do better elsewhere (see `automatic_backend`), so
`nmt serve`, whose batcher translates on one, sets NMT_GEMM to
`automatic_backend(main_thread=False)` when it is `auto` (`use_worker_thread_backend`). Commands
that search on a thread pool (`--streams`) do the same. NOTE: the backends were compared on three
CPUs only: an AVX2 AMD EPYC, an AVX-512 AMD EPYC and an AVX-512 Intel Xeon. On the Xeon the
three ran a decoding step's products within about 5%, apart from products of under 32 rows, where
MKL was the fastest of the three.

Training and autograd always use torch. The backends round differently, so a beam search can
pick a different hypothesis where two scores nearly tie.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

__all__ = ["BACKENDS", "automatic_backend", "available_cpus", "backend", "check_streams",
           "check_threads", "forget_weights", "linear", "prepared_weight", "set_threads",
           "split_threads", "use_worker_thread_backend", "whole_number"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openblas", "onednn")
_DEFAULT_THREADS = torch.get_num_threads()  # before any call below changes it
_CACHE_ATTRIBUTE = "_gemm_weights"
# The batch size oneDNN chooses its weight layout for: the rows of a beam-4 step of 8 sentences.
# In a beam search over 100 sentences, 32 gave faster search than 1 or 128.
_ONEDNN_BATCH_HINT = 32
# Where `set_threads` chose OpenBLAS for the small products of `onednn`, `_small` selects them.
_SMALL_MULTIPLY_ADDS = 600_000
_SMALL_WEIGHT = 256 * 256
_SMALL_WEIGHT_ROWS = 32
# On an Intel CPU, products of fewer rows run on torch's MKL instead of oneDNN. On 2 cores of an
# Intel Xeon (AVX-512, torch 2.13), 4 × 256 by 256 × 1024 took 15 µs on MKL, 27 on oneDNN and 60
# on one OpenBLAS thread. At 16 rows MKL took 37 against 49 on oneDNN, and from 40 rows on the two
# were level. The limit is the batch oneDNN's packed layout is chosen for. Translating the first
# 200 iitb-test sentences with beam 4 (60 at batch 1) then ran 1.25-1.37 times as fast at batch 1
# and 1.04-1.16 times at batch 32, in two alternating runs. NOTE: a layer that multiplies both
# few and many rows keeps both a packed and a transposed copy of its weight.
_SMALL_ROWS_ON_MKL = _ONEDNN_BATCH_HINT
_small_products_on: str | None = None  # "mkl" or "openblas" once `set_threads` has chosen
_threads: tuple[int, bool] | None = None  # the last `set_threads` call: threads and quantized
# `split_threads` blocks open now, and the thread setting they restore when the last one closes.
_split_lock = threading.Lock()
_split_depth = 0
_threads_before_split: tuple[int, bool] | None = None


@functools.cache
def backend() -> str:
    """Return the backend in use, `onednn`, `openblas` or `torch`, as NMT_GEMM chooses it."""
    choice = os.environ.get("NMT_GEMM", "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"NMT_GEMM must be one of {', '.join(BACKENDS)}, not {choice!r}")
    if choice == "auto":
        choice = automatic_backend()
    elif choice == "openblas" and _numpy_blas() != "openblas":
        raise ValueError(f"NMT_GEMM=openblas, but NumPy's BLAS is {_numpy_blas() or 'unknown'}")
    elif choice == "onednn" and not _onednn_available():
        raise ValueError("NMT_GEMM=onednn, but this torch build has no oneDNN packed linear")
    return choice


def automatic_backend(*, main_thread: bool = True) -> str:
    """Return the backend that NMT_GEMM=auto picks (see above).

    Pass `main_thread=False` for a process that translates on another thread than its main one.
    There `auto` keeps oneDNN only on a CPU that is not Intel's and has AVX-512, the one kind
    where it measured faster than OpenBLAS on worker threads. On 2 cores of an AVX-512 AMD EPYC
    (torch 2.13, the seventh release), the service's batches for 256 requests took 4.7-5.1 s on
    oneDNN against 5.6 s on OpenBLAS, and two streams ran at 2274-2282 target tokens/s against
    2098-2104. On an AVX2 AMD EPYC, two streams ran 1.05-1.10 times as fast on OpenBLAS. On an
    Intel CPU it picks `torch`, whose MKL ran the small products fastest there.
    """
    if _onednn_available() and (main_thread or (not _intel_cpu() and _avx512())):
        return "onednn"
    if not _intel_cpu() and _numpy_blas() == "openblas":
        return "openblas"
    return "torch"


def available_cpus() -> int:
    """Return the number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call outside Linux
        return os.cpu_count() or 1


def whole_number(value: object) -> int | None:
    """Return `value` as an int if it is an integer (a NumPy one too) and not a bool, else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_threads(threads: int | None, option: str = "threads") -> int | None:
    """Return `threads` as an int, or None for the default count.

    Raise ValueError unless it is a whole number between 1 and the CPUs available. More threads
    than CPUs only make the searches wait for each other, and a count in the tens of thousands
    made OpenMP fail to start its threads or crash.
    """
    if threads is None:
        return None
    limit = available_cpus()
    count = whole_number(threads)
    if count is None or not 1 <= count <= limit:
        raise ValueError(f"{option} must be a whole number between 1 and {limit} (the CPUs "
                         f"available to this process), got {threads!r}")
    return count


def check_streams(streams: int, threads: int | None) -> None:
    """Raise ValueError unless 1 <= `streams` <= `threads` (None: torch's default count), so
    that searches at once never use more threads than were given."""
    limit = threads or _DEFAULT_THREADS
    if not 1 <= streams <= limit:
        source = "--threads" if threads else "the default thread count, one per core"
        raise ValueError(f"--streams must be between 1 and {limit} ({source}), got {streams}")


def use_worker_thread_backend() -> str:
    """Return the backend in use, after setting NMT_GEMM=auto to
    `automatic_backend(main_thread=False)`.

    Call it in a process whose searches run on other threads than its main one. The choice goes
    into the environment, so that worker processes make the same one.
    """
    if os.environ.get("NMT_GEMM", "auto").strip().lower() in ("", "auto"):
        os.environ["NMT_GEMM"] = automatic_backend(main_thread=False)
        backend.cache_clear()
    return backend()


def set_threads(threads: int | None = None, *, quantized: bool = False) -> None:
    """Run inference on `threads` threads (None: torch's default count).

    With `openblas`, the products get the threads and torch keeps one, as explained above; with
    the other backends torch gets them all. Pass `quantized=True` for a model whose linear layers
    are torch's int8 ones, which run on torch's threads.
    """
    logger.info("inference: %s", _set_threads(check_threads(threads), quantized))


def _set_threads(threads: int | None, quantized: bool) -> str:
    """Apply `set_threads` to a checked count and return what it chose, in words.

    `split_threads` calls it without the check, so that restoring the count it replaced cannot
    fail when the CPUs available shrink meanwhile.
    """
    global _small_products_on, _threads
    from threadpoolctl import threadpool_limits

    threads = threads or _DEFAULT_THREADS
    _threads = (threads, quantized)
    choice = backend()
    if choice == "onednn" and _intel_cpu(unknown=False) and torch.backends.mkl.is_available():
        _small_products_on = "mkl"
    elif choice == "onednn" and _numpy_blas() == "openblas":
        threadpool_limits(limits=1, user_api="blas")
        _small_products_on = "openblas"
    if choice == "openblas" and not quantized:
        threadpool_limits(limits=threads, user_api="blas")
        torch.set_num_threads(1)
        return (f"matrix products on openblas with {threads} thread(s), other operations on 1 "
                "torch thread")
    torch.set_num_threads(threads)
    products = "torch (int8)" if quantized else choice
    if choice == "onednn" and _small_products_on and not quantized:
        products += f", small ones on {_small_products_on}"
    return f"torch on {threads} thread(s), matrix products on {products}"


@contextlib.contextmanager
def split_threads(streams: int) -> Iterator[int]:
    """Share the inference threads among at most `streams` searches that run at once, one per
    Python thread. Yield how many may run: `streams`, but no more than there are threads.

    Each search gets threads // that many. The threads are the calling thread's torch count, or
    with `openblas` the count of the last `set_threads` call. torch keeps a count per OpenMP
    thread, and a new thread takes the one of the last `torch.set_num_threads` call, while
    OpenBLAS keeps one per process. So on exit the calling thread gets its own count back, and
    the last of several overlapping blocks to leave restores the setting of `set_threads`.
    """
    global _split_depth, _threads_before_split
    own_threads = torch.get_num_threads()
    with _split_lock:
        if _split_depth == 0:
            _threads_before_split = _threads
        _split_depth += 1
        threads, quantized = _threads or (_DEFAULT_THREADS, False)
        if backend() != "openblas" or quantized:
            # torch runs the products on the calling thread's count. A caller may have set it
            # above the CPUs available, with torch.set_num_threads.
            threads = min(own_threads, available_cpus())
        searches = max(1, min(streams, threads))
        _set_threads(threads // searches, quantized)
    try:
        yield searches
    finally:
        with _split_lock:
            _split_depth -= 1
            if _split_depth == 0:
                _set_threads(*(_threads_before_split or (threads, quantized)))
            torch.set_num_threads(own_threads)


def linear(rows: torch.Tensor, owner: nn.Module, weight: torch.Tensor,
           bias: torch.Tensor | None = None, *, relu: bool = False) -> torch.Tensor:
    """Return rows @ weightᵀ (+ bias) for rows (N, in), weight (out, in) and bias (out,), and
    its ReLU when `relu` (a oneDNN post-op, else applied in place).

    The backend's copy of `weight` (packed for oneDNN, else transposed to (in, out)) is cached
    on `owner`, see `prepared_weight`.
    """
    choice = backend()
    native = (rows.device.type == "cpu" and rows.dtype == torch.float32
              and weight.dtype == torch.float32 and not torch.is_grad_enabled())
    on_openblas = choice == "openblas" and torch.get_num_threads() == 1
    if native and choice == "onednn":
        if _small_products_on == "openblas" and _small(rows, weight):
            on_openblas = True
        elif not (_small_products_on == "mkl" and rows.size(0) < _SMALL_ROWS_ON_MKL):
            packed = prepared_weight(owner, weight, "onednn")
            return torch.ops.mkldnn._linear_pointwise(rows, packed, bias,
                                                      "relu" if relu else "none", [], "")

    weight_t = prepared_weight(owner, weight, "transposed")  # (in, out)
    if native and on_openblas:
        out = torch.from_numpy(rows.numpy() @ weight_t.numpy())  # (N, out)
        if bias is not None:
            out.add_(bias)
    else:
        out = rows @ weight_t if bias is None else torch.addmm(bias, rows, weight_t)
    return out.relu_() if relu else out


def _small(rows: torch.Tensor, weight: torch.Tensor) -> bool:
    """Check whether one OpenBLAS thread beats oneDNN on 2 threads for this product.

    Measured on an AVX-512 AMD EPYC (torch 2.13). OpenBLAS won below about 600k multiply-adds
    (1 × 256 by 256 × 1024: 14 against 24 µs), and for 256 × 256 weights below 32 rows (16 rows:
    27 against 59 µs). oneDNN won from 4 × 256 by 256 × 1024 on (37 against 74 µs). One row
    goes to OpenBLAS too: greedy search of one sentence at a time ran at 610 target tokens/s
    that way and at 533 with the 1 × 256 by 256 × 8000 output product on oneDNN.
    """
    multiply_adds = rows.size(0) * weight.numel()
    return (rows.size(0) == 1 or multiply_adds < _SMALL_MULTIPLY_ADDS
            or (weight.numel() <= _SMALL_WEIGHT and rows.size(0) < _SMALL_WEIGHT_ROWS))


def prepared_weight(owner: nn.Module, weight: torch.Tensor, layout: str) -> torch.Tensor:
    """Return `weight` (out, in) in `layout`, "transposed" or "onednn", cached on `owner`.

    The cache key is the weight's storage address, dtype, device and version counter, which an
    optimizer step, `load_state_dict` or a conversion change. The cache is a plain attribute,
    so it is not part of the state dict. NOTE: a new tensor of the same dtype that lands at the
    old one's freed address would match the key. Call `forget_weights` after replacing weights
    in any other way.
    """
    # An inference tensor has no version counter; it is keyed without one.
    key = (weight.data_ptr(), weight.dtype, weight.device,
           None if weight.is_inference() else weight._version)
    cache = owner.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    cached = cache.get(layout)
    if cached is None or cached[0] != key:
        detached = weight.detach()
        if layout == "onednn":
            prepared = torch.ops.mkldnn._reorder_linear_weight(detached, _ONEDNN_BATCH_HINT)
        else:
            prepared = detached.t().contiguous()
        cached = cache[layout] = (key, prepared)
    return cached[1]


def forget_weights(owner: nn.Module) -> None:
    """Drop the copies of weights that `linear` cached on `owner`."""
    owner.__dict__.pop(_CACHE_ATTRIBUTE, None)


@functools.cache
def _onednn_available() -> bool:
    """Check that torch has oneDNN and the packed-linear operators this module calls."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        weight = torch.ones(4, 8)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, _ONEDNN_BATCH_HINT)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 8), packed, None, "none", [], "")
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.equal(out, torch.full((2, 4), 8.0)))


def _intel_cpu(*, unknown: bool = True) -> bool:
    """Check whether /proc/cpuinfo names Intel as the vendor; return `unknown` where it cannot
    be read."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return unknown
    return "GenuineIntel" in info


def _avx512() -> bool:
    """Check whether torch's CPU kernels run with AVX-512 on this machine."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


@functools.cache
def _numpy_blas() -> str | None:
    """Return the internal API name of the BLAS that NumPy calls, such as `openblas` or `mkl`."""
    import numpy
    from threadpoolctl import threadpool_info

    numpy.ones((2, 2)) @ numpy.ones((2, 2))  # loads the BLAS library
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and "numpy" in str(pool.get("filepath", "")).lower():
            return pool.get("internal_api")
    blas = [pool.get("internal_api") for pool in threadpool_info()
            if pool.get("user_api") == "blas"]
    return blas[0] if blas else None
