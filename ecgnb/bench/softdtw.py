"""``python -m ecgnb.bench softdtw``: pairwise soft-DTW of one batch, ours (numba, torch, and the
fused Triton and numba.cuda kernels where there is a GPU) against tslearn's ``cdist_soft_dtw``.

Beside the times it prints what each GPU path launches per batch: the torch sweep's aten
operations, counted on the CPU (each is at least one CUDA kernel launch), and the fused kernel's
single launch plus the torch operations that prepare it, counted the same way.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ecgnb.bench.timing import best_time, max_relative_difference, synthetic_batch


def bench_softdtw(n_series: int, length: int, gamma: float, repeats: int, paths: Sequence[str],
                  torch_cpu_series: int = 16, seed: int = 0) -> list[dict]:
    """Rows ``{path, seconds, values [n, n], note}`` for each requested path on one batch.

    The torch path on CPU (it exists for CUDA) is timed on the first ``torch_cpu_series``
    series only; rates are compared in pairs/s.
    """
    from ecgnb.models.softdtw import set_cpu_threads, soft_dtw_numba, soft_dtw_torch

    x = synthetic_batch(n_series, length, seed).astype(np.float64)
    rows = []
    if "numba" in paths:
        n_threads = set_cpu_threads(os.cpu_count())
        start = time.perf_counter()
        soft_dtw_numba(x[:2, :8], gamma)  # compile, or load the on-disk cache
        warm = time.perf_counter() - start
        seconds, values = best_time(lambda: soft_dtw_numba(x, gamma), repeats)
        rows.append(dict(path=f"ours numba CPU ({n_threads} threads)", seconds=seconds,
                         values=values, note=f"best of {repeats}; first call {warm:.1f}s"))
    if "torch" in paths:
        rows.append(_bench_torch_cpu(x[:torch_cpu_series], gamma))
    if "cuda" in paths and torch.cuda.is_available():
        rows += [_bench_fused(x, gamma, repeats, kernel) for kernel in ("triton", "numba-cuda")]
    if "torch" in paths and torch.cuda.is_available():
        x_gpu = torch.from_numpy(x).cuda()
        soft_dtw_torch(x_gpu[:2, :8], gamma)
        seconds, values = best_time(lambda: soft_dtw_torch(x_gpu, gamma), repeats,
                                    torch.cuda.synchronize)
        rows.append(dict(path=f"ours torch {torch.cuda.get_device_name()}", seconds=seconds,
                         values=values.cpu().numpy(), note=f"best of {repeats}"))
    if "tslearn" in paths:
        rows.append(_bench_tslearn(x, gamma))
    return rows


class _OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside the block."""

    def __init__(self):
        super().__init__()
        self.n_ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n_ops += 1
        return func(*args, **(kwargs or {}))


def count_aten_ops(run) -> int:
    with _OpCounter() as counter:
        run()
    return counter.n_ops


def gpu_launches(length: int, gamma: float) -> dict:
    """Per batch of series of ``length`` samples: aten operations of the torch sweep (kernel
    launches on a GPU) and of the Triton kernel's preparation (pairs, output, scratch, gamma;
    plus its one launch)."""
    from ecgnb.models.softdtw import soft_dtw_torch

    from ecgnb.models.softdtw_gpu import _pairs

    x = torch.zeros(4, length, dtype=torch.float64)
    prepare = count_aten_ops(lambda: (_pairs(x), torch.empty(10, 2, 1024, dtype=torch.float64),
                                      torch.full((1,), gamma, dtype=torch.float64)))
    return {"torch sweep": count_aten_ops(lambda: soft_dtw_torch(x, gamma)),
            "cuda kernel": prepare + 1}


def _bench_fused(x: np.ndarray, gamma: float, repeats: int, kernel: str) -> dict:
    """One fused GPU kernel (:mod:`ecgnb.models.softdtw_gpu`); a row of NaN where it cannot run."""
    from ecgnb.models.softdtw import pairwise_soft_dtw
    from ecgnb.models.softdtw_gpu import KernelUnavailable

    x_gpu = torch.from_numpy(x).cuda()
    name = f"ours {kernel} {torch.cuda.get_device_name()}"
    try:
        pairwise_soft_dtw(x_gpu[:2, :8], gamma, method=kernel)  # compile
    except KernelUnavailable as exc:
        return dict(path=name, seconds=float("nan"), values=np.full((len(x), len(x)), np.nan),
                    note=f"cannot run: {exc}"[:120])
    seconds, values = best_time(lambda: pairwise_soft_dtw(x_gpu, gamma, method=kernel), repeats,
                                torch.cuda.synchronize)
    return dict(path=name, seconds=seconds, values=values.cpu().numpy(),
                note=f"best of {repeats}")


def _bench_torch_cpu(x: np.ndarray, gamma: float) -> dict:
    """The torch path on CPU, single-threaded: its ~20 small ops per anti-diagonal would
    otherwise pay an OpenMP fork/join each, which dominates (and collapses on a busy machine)."""
    from ecgnb.models.softdtw import soft_dtw_torch

    x_cpu, n_threads = torch.from_numpy(x), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        soft_dtw_torch(x_cpu[:2, :8], gamma)
        seconds, values = best_time(lambda: soft_dtw_torch(x_cpu, gamma).numpy(), 1)
    finally:
        torch.set_num_threads(n_threads)
    return dict(path="ours torch CPU (1 thread)", seconds=seconds, values=values,
                note=f"B={len(x_cpu)}, 1 run")


def _bench_tslearn(x: np.ndarray, gamma: float) -> dict:
    from tslearn.metrics import cdist_soft_dtw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cdist_soft_dtw(x[:2, :8, None], gamma=gamma)  # compile its numba kernels
        seconds, values = best_time(lambda: cdist_soft_dtw(x[..., None], gamma=gamma), 1)
    return dict(path="tslearn cdist_soft_dtw (1 thread)", seconds=seconds, values=values,
                note="1 run")


def pairs_per_second(row: dict) -> float:
    n_series = len(row["values"])
    return n_series * (n_series + 1) / 2 / row["seconds"]


def format_softdtw(rows: list[dict], length: int, gamma: float) -> str:
    """Table: seconds, pairs/s (upper triangle incl. diagonal), speed-up and max rel diff."""
    reference = next((r for r in rows if r["path"].startswith("tslearn")), None)
    lines = [f"pairwise soft-DTW, T={length}, gamma={gamma} (pairs: upper triangle + diagonal)",
             f"{'path':<40}{'B':>4}{'seconds':>10}{'pairs/s':>10}{'speed-up':>10}"
             f"{'max rel diff':>14}  note"]
    for row in rows:
        speed_up = max_diff = "-"
        if reference is not None and np.isfinite(row["seconds"]):
            n = len(row["values"])
            speed_up = f"{pairs_per_second(row) / pairs_per_second(reference):.1f}x"
            max_diff = f"{max_relative_difference(row['values'], reference['values'][:n, :n]):.1e}"
        lines.append(f"{row['path']:<40}{len(row['values']):>4}{row['seconds']:>10.3f}"
                     f"{pairs_per_second(row):>10.1f}{speed_up:>10}{max_diff:>14}  {row['note']}")
    launches = gpu_launches(length, gamma)
    lines.append(f"GPU launches per batch at T={length}: torch sweep {launches['torch sweep']:,} "
                 f"aten ops (>= 1 kernel each); fused kernel 1 launch + "
                 f"{launches['cuda kernel'] - 1} torch ops")
    return "\n".join(lines)
