"""Matrix products for inference, on the faster of two CPU BLAS libraries.

torch's CPU builds multiply fp32 matrices with Intel MKL, which is slow on AMD CPUs. On one thread
of a 2-core AMD EPYC with AVX2 (torch 2.13, MKL 2024.2), the OpenBLAS that NumPy bundles ran the
shapes of a decoding step 1.2-2× as fast. For example, the 128 × 256 by 256 × 8000 output
projection of a beam-4, 32-sentence step took 7.7 ms against 13.9 ms. On one thread, beam search
over 96 iitb-test sentences ran at 379-403 target tokens/s with OpenBLAS (two runs) against 328
with MKL.

The two libraries never run thread pools at the same time, because with both on 2 threads the same
search ran 10 times slower than on one. `set_threads(n)` therefore gives the products to OpenBLAS
on n threads and runs torch's other operations (attention, softmax, layer norm) on one. On 2
cores of an AMD EPYC with AVX-512, beam 4 then ran at 353 target tokens/s at batch 1 and 1057
at batch 32, against 268 and 827 with torch alone on 2 threads (benchmarks/translation_speed.py,
100 sentences). A quantized (int8) model keeps torch on n threads, as its products are torch's own.
NOTE: that split was measured on AVX-512 only. On an AVX2-only EPYC, an earlier run (with
CTranslate2 in the same process) found OpenBLAS slower on 2 threads than on one.

The backend is chosen once per process from NMT_GEMM:
- `auto` (default): `openblas` when the CPU is not Intel's and NumPy's BLAS is OpenBLAS,
  else `torch`;
- `torch`: torch's own matrix product everywhere;
- `openblas`: NumPy's matrix product for fp32 CPU tensors in inference, while torch runs on one
  thread.

Training and autograd always use torch. The two backends round differently, so a beam search can
pick a different hypothesis where two scores nearly tie.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

__all__ = ["BACKENDS", "backend", "linear", "set_threads"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openblas")
_DEFAULT_THREADS = torch.get_num_threads()  # before any call below changes it


@functools.cache
def backend() -> str:
    """Return the backend in use, `torch` or `openblas`, as NMT_GEMM chooses it (see above)."""
    choice = os.environ.get("NMT_GEMM", "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"NMT_GEMM must be one of {', '.join(BACKENDS)}, not {choice!r}")
    if choice == "auto":
        choice = "openblas" if not _intel_cpu() and _numpy_blas() == "openblas" else "torch"
    elif choice == "openblas" and _numpy_blas() != "openblas":
        raise ValueError(f"NMT_GEMM=openblas, but NumPy's BLAS is {_numpy_blas() or 'unknown'}")
    return choice


def set_threads(threads: int | None = None, *, quantized: bool = False) -> None:
    """Run inference on `threads` threads (None: torch's default count), as explained above.

    Pass `quantized=True` for a model whose linear layers are torch's int8 ones, which run on
    torch's threads.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    threads = threads or _DEFAULT_THREADS
    if backend() == "openblas" and not quantized:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
        torch.set_num_threads(1)
        logger.info("inference: matrix products on openblas with %d thread(s), other operations "
                    "on 1 torch thread", threads)
    else:
        torch.set_num_threads(threads)
        logger.info("inference: torch on %d thread(s)", threads)


def linear(rows: torch.Tensor, weight_t: torch.Tensor,
           bias: torch.Tensor | None = None) -> torch.Tensor:
    """Return rows @ weight_t (+ bias): rows (N, in), weight_t (in, out), bias (out,)."""
    if (rows.device.type == "cpu" and rows.dtype == torch.float32
            and weight_t.dtype == torch.float32 and not torch.is_grad_enabled()
            and torch.get_num_threads() == 1 and backend() == "openblas"):
        out = torch.from_numpy(rows.numpy() @ weight_t.numpy())  # (N, out)
        return out if bias is None else out.add_(bias)
    return rows @ weight_t if bias is None else torch.addmm(bias, rows, weight_t)


def _intel_cpu() -> bool:
    """Check whether /proc/cpuinfo names Intel as the vendor (True where it cannot be read)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    return "GenuineIntel" in info


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
