"""Matrix products for inference, on the faster of two CPU BLAS libraries.

torch's CPU builds multiply fp32 matrices with Intel MKL, which is slow on AMD CPUs. On one thread
of a 2-core AMD EPYC with AVX2 (torch 2.13, MKL 2024.2), the OpenBLAS that NumPy bundles ran the
shapes of a decoding step 1.2-2× as fast. For example, the 128 × 256 by 256 × 8000 output
projection of a beam-4, 32-sentence step took 7.7 ms against 13.9 ms. On one thread, beam search
over 96 iitb-test sentences ran at 379-403 target tokens/s with OpenBLAS (two runs) against 328
with MKL.

OpenBLAS runs on one thread here, and only while torch runs on one thread too: with both
libraries' thread pools on 2 threads, the same search ran 10 times slower than on one. On more
threads, torch's own product is used.

The backend is chosen once per process from NMT_GEMM:
- `auto` (default): `openblas` when the CPU is not Intel's and NumPy's BLAS is OpenBLAS,
  else `torch`;
- `torch`: torch's own matrix product everywhere;
- `openblas`: NumPy's matrix product for fp32 CPU tensors in inference on one torch thread.

Training and autograd always use torch. The two backends round differently, so a beam search can
pick a different hypothesis where two scores nearly tie.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch

__all__ = ["BACKENDS", "backend", "linear"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "openblas")


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
    if choice == "openblas":
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    if choice == "openblas":
        logger.info("inference matrix products use openblas while torch runs on one thread")
    else:
        logger.info("inference matrix products use torch")
    return choice


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
