"""The Triton kernel of pairwise soft-DTW (:mod:`ecgnb.models.softdtw_gpu` describes it and
imports this module only when a CUDA tensor needs it: importing it needs triton).

One program per pair of the upper triangle; lane ``i`` of a program holds row ``i`` of ``R``
(lane 0: the +inf border) on the current anti-diagonal ``s``, and the lanes beyond ``T`` stay
+inf. Per diagonal: ``R[i, s - i] = (a[i-1] - b[s-i-1])**2 + softmin(R[i-1, s-i-1], R[i-1, s-i],
R[i, s-i-1])``, where the first two are the previous two diagonals shifted by one lane. A lane
cannot read its neighbour's register, so each new diagonal goes to the program's scratch row in
global memory, a barrier, and comes back one lane over (``.cg``: from L2, past L1). The scratch
has two rows used in turn: the write of diagonal ``s + 2`` comes after the barrier of diagonal
``s + 1``, which every lane reaches only after its read of diagonal ``s``. ``tl.exp`` and
``tl.log`` of float64 compile to libdevice's ``__nv_exp`` and ``__nv_log``.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

MAX_LANES = 16384  # lanes per program (rows 0..T): T <= 16383
# The series length is a compile-time constant: one compilation per length (a fit has one).


@triton.jit
def _soft_dtw_program(x_ptr, rows_ptr, cols_ptr, gamma_ptr, out_ptr, scratch_ptr, n_series,
                      LENGTH: tl.constexpr, LANES: tl.constexpr):
    pair = tl.program_id(0)
    a = tl.load(rows_ptr + pair)
    b = tl.load(cols_ptr + pair)
    gamma = tl.load(gamma_ptr)  # float64 (a scalar argument would arrive as float32)
    i = tl.arange(0, LANES)
    x_a = tl.load(x_ptr + a * LENGTH + i - 1, mask=(i >= 1) & (i <= LENGTH), other=0.0)
    scratch = scratch_ptr + pair.to(tl.int64) * 2 * LANES
    inf = tl.full([LANES], float("inf"), tl.float64)
    before_left = tl.where(i == 1, tl.zeros([LANES], tl.float64), inf)  # V_0[i - 1]: R[0, 0] = 0
    last_left = inf  # V_1[i - 1]
    last = inf  # V_1[i]
    for s in range(2, 2 * LENGTH + 1):
        j = s - i
        valid = (i >= 1) & (i <= LENGTH) & (j >= 1) & (j <= LENGTH)
        x_b = tl.load(x_ptr + b * LENGTH + j - 1, mask=valid, other=0.0)
        r_min = tl.minimum(tl.minimum(before_left, last_left), last)
        total = (tl.exp((r_min - before_left) / gamma)
                 + tl.exp((r_min - last_left) / gamma)
                 + tl.exp((r_min - last) / gamma))
        diff = x_a - x_b
        current = tl.where(valid, diff * diff + r_min - gamma * tl.log(total), inf)
        row = scratch + (s % 2) * LANES
        tl.store(row + i, current)
        tl.debug_barrier()
        before_left = last_left
        last_left = tl.load(row + i - 1, mask=i >= 1, other=float("inf"), cache_modifier=".cg")
        last = current
    value = tl.sum(tl.where(i == LENGTH, last, tl.zeros([LANES], tl.float64)), axis=0)
    tl.store(out_ptr + a * n_series + b, value)
    tl.store(out_ptr + b * n_series + a, value)


def soft_dtw_triton(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, gamma: float,
                    out: torch.Tensor) -> torch.Tensor:
    """Fill ``out [B, B]`` with soft-DTW of the pairs ``(rows, cols)`` of ``x [B, T]`` (float64,
    contiguous, on one CUDA device; CPU tensors under ``TRITON_INTERPRET=1``): one launch."""
    length = x.shape[1]
    lanes = triton.next_power_of_2(length + 1)
    if lanes > MAX_LANES:
        raise ValueError(f"series of {length} samples: the Triton kernel takes at most "
                         f"{MAX_LANES - 1}")
    scratch = torch.empty(len(rows), 2, lanes, dtype=torch.float64, device=x.device)
    gamma_t = torch.full((1,), float(gamma), dtype=torch.float64, device=x.device)
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _soft_dtw_program[(len(rows),)](x, rows, cols, gamma_t, out, scratch, len(x),
                                        LENGTH=length, LANES=lanes,
                                        num_warps=max(1, min(8, lanes // 256)))
    return out
