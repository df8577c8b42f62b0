"""Pairwise soft-DTW on a GPU: one fused kernel launch per batch, on the input tensor's device
and torch's current stream (no synchronisation). :mod:`ecgnb.models.softdtw` states the
recursion; both kernels below sweep its anti-diagonals ``s = i + j`` in float64, the soft-min
factored as in the CPU kernel (``r_min - gamma * log(sum exp((r_min - r_k) / gamma))``).

- **Triton** (:func:`soft_dtw_triton`, where numba.cuda cannot run; triton comes with torch's
  CUDA wheels): one program per pair of the upper triangle, whose lanes are the rows ``i`` of
  ``R``; a diagonal is
  held in registers. The recursion reads each diagonal shifted by one row (``R[i - 1, .]``): the
  program writes the new diagonal to its own scratch row in global memory, waits at a barrier and
  reads it back one lane over (two scratch rows, used in turn, so that no write overtakes a
  read), as whisper's DTW kernel does. libdevice's ``exp`` and ``log``.
- **numba.cuda** (:func:`soft_dtw_numba_cuda`, tried first: on an H200 it took 30 ms per batch of
  64 x 720 against Triton's 52 ms, ``make gpu-check``): one thread block per
  pair, three rolling diagonals of ``T + 2`` values in shared memory, a barrier between
  diagonals; launched inside the tensor's device context. numba's CUDA target needs NVVM (the
  ``cuda-toolkit`` wheels, conda, or a system toolkit). numba-cuda 0.30 refers to
  ``np.row_stack``, an alias of ``np.vstack`` that recent numpy releases dropped:
  :func:`numpy_alias_for_numba` puts the alias back, only where it is missing, before the first
  compilation.

:func:`fused_soft_dtw` runs the first kernel that works and remembers, per process, why a kernel
could not run; when none can, it raises :class:`KernelUnavailable` naming every cause.
Tests check the numba.cuda kernel under numba's CUDA simulator and the Triton kernel under
Triton's interpreter (``TRITON_INTERPRET=1``) where triton is installed; ``make gpu-check``
checks both against the CPU kernel on a GPU.
"""
from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import cuda

CUDA_THREADS = 256  # numba.cuda: threads per pair, each handling every 256th cell of a diagonal
KERNELS = ("numba-cuda", "triton")  # the faster first (an H200: 30 vs 52 ms per 64 x 720)
_UNAVAILABLE: dict[str, str] = {}  # kernel -> why it cannot run in this process, once known


class KernelUnavailable(RuntimeError):
    """No fused soft-DTW kernel can run here; the message names each kernel's cause."""


def fused_soft_dtw(x: torch.Tensor, gamma: float, kernels=KERNELS) -> torch.Tensor:
    """Pairwise soft-DTW ``[B, B]`` (float64) of a CUDA tensor ``x [B, T]`` with the first of
    ``kernels`` that runs here (see the module docstring)."""
    for name in kernels:
        if name in _UNAVAILABLE:
            continue
        try:
            return RUNNERS[name](x, gamma)
        except Exception as exc:  # noqa: BLE001 - no triton, no NVVM, a compiler error: say which
            _UNAVAILABLE[name] = f"{type(exc).__name__}: {exc}"
    raise KernelUnavailable("no fused soft-DTW kernel can run here: " + "; ".join(
        f"{name}: {_UNAVAILABLE[name]}" for name in kernels))


def unavailable() -> dict[str, str]:
    """Why each kernel that failed in this process could not run."""
    return dict(_UNAVAILABLE)


def _pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` as contiguous float64 ``[B, T]``, the upper-triangle pairs and the output."""
    x = x.to(torch.float64).contiguous()
    rows, cols = torch.triu_indices(len(x), len(x), device=x.device)
    out = torch.empty(len(x), len(x), dtype=torch.float64, device=x.device)
    return x, rows, cols, out


# --------------------------------------------------------------------------- numba.cuda
def numpy_alias_for_numba() -> bool:
    """Give numpy back ``np.row_stack`` (= ``np.vstack``) where it lacks it: numba-cuda 0.30
    looks the name up when it compiles. Returns whether the alias was added."""
    if hasattr(np, "row_stack"):
        return False
    np.row_stack = np.vstack
    return True


@cuda.jit(device=True)
def _soft_min3_device(r1, r2, r3, gamma):
    """Stable soft-min of three values (+inf allowed, not all three)."""
    r_min = min(r1, min(r2, r3))
    total = (math.exp((r_min - r1) / gamma) + math.exp((r_min - r2) / gamma)
             + math.exp((r_min - r3) / gamma))
    return r_min - gamma * math.log(total)


@cuda.jit
def _soft_dtw_blocks(x, rows, cols, gamma, out):
    """Block ``k``: soft-DTW of ``(x[rows[k]], x[cols[k]])`` into ``out`` (both halves). The
    shared array (``3 * (T + 2)`` float64) holds diagonal ``s`` at offset ``(s % 3) * (T + 2)``,
    ``R[i, s - i]`` at position ``i``; threads stride over the valid rows, a barrier between
    diagonals."""
    k, tid, n_threads = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    length = x.shape[1]
    width = length + 2
    a, b = rows[k], cols[k]
    diagonals = cuda.shared.array(0, dtype=numba.float64)
    for i in range(tid, 3 * width, n_threads):
        diagonals[i] = math.inf  # V_1 (R[0, 1], R[1, 0]) and the padding: +inf
    cuda.syncthreads()
    if tid == 0:
        diagonals[0] = 0.0  # V_0: R[0, 0] = 0
    cuda.syncthreads()
    for s in range(2, 2 * length + 1):
        current, last, before = (s % 3) * width, ((s - 1) % 3) * width, ((s - 2) % 3) * width
        lo, hi = max(1, s - length), min(length, s - 1)
        for i in range(lo + tid, hi + 1, n_threads):
            diff = x[a, i - 1] - x[b, s - i - 1]
            diagonals[current + i] = diff * diff + _soft_min3_device(
                diagonals[before + i - 1], diagonals[last + i - 1], diagonals[last + i], gamma)
        if tid == 0:  # the neighbours that the next two diagonals read
            diagonals[current + lo - 1] = math.inf
            diagonals[current + hi + 1] = math.inf
        cuda.syncthreads()
    if tid == 0:
        value = diagonals[((2 * length) % 3) * width + length]
        out[a, b] = value
        out[b, a] = value


def soft_dtw_cuda_arrays(x, rows, cols, gamma: float, out, stream=0,
                         n_threads: int | None = None) -> None:
    """Launch the numba.cuda kernel on ``x [B, T]`` float64, the pairs ``(rows, cols)`` and
    ``out [B, B]`` float64 (device arrays, or numpy under the CUDA simulator): one launch.
    ``n_threads`` per block defaults to ``T`` rounded up to a warp, at most :data:`CUDA_THREADS`."""
    numpy_alias_for_numba()
    length = x.shape[1]
    n_threads = n_threads or min(CUDA_THREADS, 32 * -(-length // 32))
    _soft_dtw_blocks[len(rows), n_threads, stream, 3 * (length + 2) * 8](x, rows, cols,
                                                                        float(gamma), out)


def soft_dtw_numba_cuda(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """Pairwise soft-DTW of a CUDA tensor ``x [B, T]`` with the numba.cuda kernel, in the
    tensor's device context, on torch's current stream of that device."""
    x, rows, cols, out = _pairs(x)
    with cuda.gpus[x.device.index]:
        stream = cuda.external_stream(torch.cuda.current_stream(x.device).cuda_stream)
        arrays = [cuda.as_cuda_array(t, sync=False) for t in (x, rows, cols, out)]
        soft_dtw_cuda_arrays(*arrays[:3], gamma, arrays[3], stream)
    return out


def soft_dtw_triton(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """Pairwise soft-DTW of ``x [B, T]`` with the Triton kernel (:mod:`ecgnb.models.softdtw_triton`;
    CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``)."""
    from ecgnb.models.softdtw_triton import soft_dtw_triton as launch

    x, rows, cols, out = _pairs(x)
    return launch(x, rows, cols, gamma, out)


RUNNERS = {"triton": soft_dtw_triton, "numba-cuda": soft_dtw_numba_cuda}
