"""``python -m ecgnb.bench flops``: how far a training step is from this machine's limit.

The machine's peak is measured, not looked up: the best rate of a large matrix product
(``--size`` squared, float32, and bfloat16 where the CPU has native bf16: AVX-512 BF16 or AMX, or
on a GPU). Each backbone's training step is then timed (a one-epoch ``fit`` of ``--batches``
batches after a warm-up batch, as ``bench pretrain``) and its FLOPs counted on an identical fit
(same seed: same crops and views) under :class:`torch.utils.flop_counter.FlopCounterMode`.

What is counted, for every backbone alike: the FLOPs (2 per multiply-add) of the aten operations
in torch's ``flop_registry``, as the step executes them: matrix products (``mm``, ``addmm``,
``bmm``, ``baddbmm``), convolutions (``convolution`` and ``convolution_backward``) and fused
attention kernels, in the forward pass, the backward pass, and every recomputation (TS2Vec's
``recompute_blocks`` runs its blocks' forward twice; its loss's custom backward forms its
gradient with matrix products, counted there). Not counted: element-wise work, normalisation,
pooling, softmax, the optimiser, and Series2Vec's soft-DTW (a numba or GPU kernel outside torch's
dispatcher), so the share of peak is a lower bound on how busy the machine is, and for Series2Vec
mostly a measure of how much of a step is not matrix work. The table splits the count into
products, convolutions and attention. TS2Vec's count follows its random crops: the timed and the
counted fit draw the same crops (same seed and batches); another ``--batches`` draws others.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch

from ecgnb.bench.timing import best_time, in_fresh_process, sync, synthetic_batch
from ecgnb.config import pick_device


def has_native_bf16(device: torch.device) -> bool:
    """bf16 matrix products in hardware: a GPU, or a CPU with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return True
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_peak(dtype: torch.dtype, size: int = 4096, repeats: int = 3,
                device: str | None = None) -> float:
    """Best FLOP/s of ``[size, size] @ [size, size]`` in ``dtype`` (2 size**3 FLOPs)."""
    device_ = pick_device(device)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device_, dtype)
    b = torch.randn(size, size, generator=gen).to(device_, dtype)
    a @ b  # warm-up: kernels, threads
    seconds, _ = best_time(lambda: a @ b, repeats, lambda: sync(device_))
    return 2 * size ** 3 / seconds


def step_rate(name: str, n_batches: int, batch_size: int, length: int,
              device: str | None = None, overrides: dict | None = None, seed: int = 0) -> dict:
    """Seconds per training step and FLOPs per step of one backbone (run in a fresh process)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ecgnb.models import build

    device_ = pick_device(device)
    x = synthetic_batch((n_batches + 1) * batch_size, length, seed)[:, None, :]

    def fresh():
        return build(name, device=device, seed=seed, verbose=False,
                     **(overrides or {})).build(length)
    enc = fresh()
    enc.fit(x[:batch_size], n_epochs=1, batch_size=batch_size)  # warm-up
    timed = fresh()
    sync(device_)
    start = time.perf_counter()
    timed.fit(x[batch_size:], n_epochs=1, batch_size=batch_size)
    sync(device_)
    seconds = (time.perf_counter() - start) / n_batches
    with FlopCounterMode(display=False) as counter:
        fresh().fit(x[batch_size:], n_epochs=1, batch_size=batch_size)
    precision = getattr(timed.config, "precision", "fp32")
    by_kind = {kind: 0.0 for kind in KINDS}
    for op, flops in counter.get_flop_counts()["Global"].items():
        by_kind[kind_of(str(op))] += flops / n_batches
    return dict(backbone=name, device=str(device_), precision=precision,
                seconds_per_step=seconds, flops_per_step=counter.get_total_flops() / n_batches,
                flops_by_kind=by_kind)


KINDS = ("products", "convolutions", "attention")


def kind_of(op: str) -> str:
    """The part of the count an aten operation of the registry belongs to."""
    name = op.split(".")[1] if op.startswith("aten.") else op
    if name in ("mm", "addmm", "bmm", "baddbmm", "_scaled_mm"):
        return "products"
    return "attention" if "attention" in name else "convolutions"


def bench_flops(names: Sequence[str], n_batches: int, batch_size: int, length: int,
                device: str | None = None, size: int = 4096) -> tuple[dict, list[dict]]:
    """``({"fp32": FLOP/s, "bf16": FLOP/s or None}, rows)``, one fresh process per backbone."""
    device_ = pick_device(device)
    peaks = {"fp32": matmul_peak(torch.float32, size, device=device),
             "bf16": (matmul_peak(torch.bfloat16, size, device=device)
                      if has_native_bf16(device_) else None)}
    rows = [in_fresh_process(step_rate, name, n_batches, batch_size, length, device)
            for name in names]
    return peaks, rows


def share_of_peak(row: dict, peaks: dict) -> float:
    """The step's counted FLOP/s over the matrix-product peak of its precision."""
    peak = peaks.get(row["precision"]) or peaks["fp32"]
    return row["flops_per_step"] / row["seconds_per_step"] / peak


def format_flops(peaks: dict, rows: list[dict], batch_size: int, length: int) -> str:
    bf16 = f"{peaks['bf16'] / 1e9:.0f} GFLOP/s" if peaks["bf16"] else "no native bf16"
    lines = [f"peak (best large matrix product): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
             f"bf16 {bf16}",
             f"training step, batch {batch_size} x [1, {length}], default configs; FLOPs of "
             "matrix products, convolutions and attention (forward, backward, recomputation)",
             f"{'backbone':<12}{'precision':>10}{'s/step':>9}{'GFLOP/step':>12}"
             + "".join(f"{k:>14}" for k in KINDS) + f"{'GFLOP/s':>9}{'of peak':>9}"]
    for r in rows:
        rate = r["flops_per_step"] / r["seconds_per_step"]
        lines.append(f"{r['backbone']:<12}{r['precision']:>10}{r['seconds_per_step']:>9.2f}"
                     f"{r['flops_per_step'] / 1e9:>12.1f}"
                     + "".join(f"{r['flops_by_kind'][k] / 1e9:>14.1f}" for k in KINDS)
                     + f"{rate / 1e9:>9.1f}{share_of_peak(r, peaks):>9.1%}")
    lines.append("ratio to the published code: python -m ecgnb.bench published (needs checkouts)")
    return "\n".join(lines)
