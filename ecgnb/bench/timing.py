"""The one timing helper module of the benchmarks: seeded inputs, best-of-n timing, device
synchronisation, peak memory and fresh processes.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import platform
import resource
import time
from typing import Callable

import numpy as np
import torch


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides CPU speed here


def machine_line() -> str:
    """One line naming what a benchmark ran on: CPU model, cores, the flags of :data:`CPU_FLAGS`
    it has, the load average (1 min) as the benchmark starts, torch and its threads, and the GPU
    if there is one. The load matters: other processes on the cores stall torch's threads at
    every parallel operation (docs/performance.md, "Threads on a busy machine")."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    has = [f for f in CPU_FLAGS if f in flags] if flags else ["flags unknown"]
    listed = " ".join(has) or "none of " + " ".join(CPU_FLAGS)
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    return (f"machine: {model}, {os.cpu_count()} cores, {listed}; load {os.getloadavg()[0]:.1f}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; {gpu}")


def synthetic_batch(n_series: int, length: int, seed: int = 0) -> np.ndarray:
    """Seeded, z-scored sines plus noise: float32 ``[n_series, length]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    rate, phase = rng.uniform(1, 6, (n_series, 1)), rng.uniform(0, 1, (n_series, 1))
    x = np.sin(2 * np.pi * (rate * t + phase))
    x = x + 0.3 * rng.normal(size=x.shape)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return x.astype(np.float32)


def best_time(run: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
              ) -> tuple[float, object]:
    """Smallest wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        result = run()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), result


def max_relative_difference(values, reference) -> float:
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    return float(np.max(np.abs(values - reference) / np.maximum(np.abs(reference), 1e-300)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def in_fresh_process(fn: Callable, *args):
    """``fn(*args)`` in a freshly spawned process: clean imports, its own peak memory and threads."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()
