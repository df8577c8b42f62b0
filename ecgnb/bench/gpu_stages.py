"""The CUDA side of ``make gpu-check`` (:mod:`ecgnb.bench.gpu_check` states the checks and their
bounds): each backbone's step, fits and resume and the cells at smoke size, and the soft-DTW
kernels. Imported only where CUDA is present (the tests run the checks with the CPU standing in
for the GPU); :mod:`ecgnb.bench.gpu_suite` runs them all."""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecgnb.bench.gpu_check import (CURVE_RTOL, ENCODE_CKA, FIT_CKA, GRADIENT_COSINE,
                                   RESUME_FLOOR, SMOKE, SOFTDTW_RTOL, STEP_RTOL, Report,
                                   linear_cka,
                                   relative_curve_difference, weights_difference)
from ecgnb.bench.timing import best_time, max_relative_difference, sync, synthetic_batch
from ecgnb.config import torch_generator
from ecgnb.models.precision import numerics
from ecgnb.evaluation.settings import SUPERVISED

T_SMOKE, N_SMOKE = 128, 96
GPU = "cuda"  # the device checked against the CPU (tests run the checks with "cpu")


def _encoder(name: str, device: str, **overrides):
    from ecgnb.models import build

    config = {**SMOKE[name], "use_amp": False, **overrides}
    return build(name, device=device, seed=0, verbose=False, **config).build(T_SMOKE)


def _losses(encoder) -> list[float]:
    return [h["loss"] for h in encoder.history_]


def check_step(name: str, x: np.ndarray, report: Report) -> None:
    """One batch's loss and gradients from the same weights and draws on both devices."""
    start, results = time.perf_counter(), []
    for device in ("cpu", GPU):
        enc = _encoder(name, device)
        for module in enc.modules_.values():
            module.train()
        gen = torch_generator(1)
        with numerics(enc.device_, enc.settings):
            loss = enc._loss(torch.from_numpy(x[:32]).to(enc.device_), gen, gen)
            loss.backward()
        grads = torch.cat([p.grad.flatten().cpu() for m in enc.modules_.values()
                           for p in m.parameters() if p.grad is not None]).double()
        results.append((float(loss.detach()), grads))
    (loss_cpu, g_cpu), (loss_gpu, g_gpu) = results
    seconds = time.perf_counter() - start
    diff = abs(loss_gpu - loss_cpu) / abs(loss_cpu)
    report.check(f"{name} one step, loss rel. diff GPU vs CPU", diff, diff <= STEP_RTOL,
                 f"<= {STEP_RTOL:g}", seconds)
    cosine = float(g_cpu @ g_gpu / (g_cpu.norm() * g_gpu.norm()))
    report.check(f"{name} one step, gradient cosine", cosine, cosine >= GRADIENT_COSINE,
                 f">= {GRADIENT_COSINE}")


def _timed_fit(name: str, device: str, x: np.ndarray, **overrides):
    start = time.perf_counter()
    encoder = _encoder(name, device, **overrides).fit(x, n_epochs=2, batch_size=32)
    return encoder, time.perf_counter() - start


def check_fits(name: str, x: np.ndarray, report: Report) -> None:
    """Pretraining on both devices; bf16 and fp16 AMP on the GPU; a continuation."""
    from ecgnb.models import REGISTRY
    from ecgnb.models.base import restore

    cpu, _ = _timed_fit(name, "cpu", x)
    gpu, seconds = _timed_fit(name, GPU, x)
    curve = relative_curve_difference(_losses(gpu), _losses(cpu))
    report.check(f"{name} fp32 2-epoch loss curve, GPU vs CPU", curve, curve <= CURVE_RTOL,
                 f"<= {CURVE_RTOL}: other draws", seconds)
    cka = linear_cka(gpu.encode(x), cpu.encode(x))
    report.check(f"{name} fitted embeddings, CKA GPU vs CPU", cka, cka >= FIT_CKA,
                 f">= {FIT_CKA}")
    same = restore(REGISTRY[name], gpu.state(), device="cpu")
    cka = linear_cka(gpu.encode(x), same.encode(x))
    report.check(f"{name} same weights, encode CKA GPU vs CPU", cka, cka >= ENCODE_CKA,
                 f">= {ENCODE_CKA}")
    for label, overrides, autocast in (("bf16", dict(precision="bf16"), "bf16"),
                                       ("fp16 AMP", dict(use_amp=True), "fp16")):
        mixed, seconds = _timed_fit(name, GPU, x, **overrides)
        curve = relative_curve_difference(_losses(mixed), _losses(gpu))
        ran = GPU == "cpu" or mixed.training_record()["autocast"] == autocast
        report.check(f"{name} {label} loss curve vs fp32 (autocast {autocast})", curve,
                     curve <= CURVE_RTOL and ran, f"<= {CURVE_RTOL}", seconds)
    gpu.begin_continuation()
    gpu.fit(x, n_epochs=1, batch_size=32)
    report.check(f"{name} continuation loss", gpu.history_[-1]["loss"],
                 bool(np.isfinite(gpu.history_[-1]["loss"])), "finite")


class _Interrupted(Exception):
    """Stands for a kill: raised by a callback once an epoch is checkpointed."""


def check_resume(name: str, x: np.ndarray, report: Report) -> None:
    """A fit stopped in its second epoch and resumed from its checkpoint (written every epoch)
    ends with the weights of an uninterrupted fit, up to the spread of two uninterrupted fits
    (zero where the kernels are deterministic), with a floor (:data:`RESUME_FLOOR`)."""
    args = dict(n_epochs=3, batch_size=32)
    start = time.perf_counter()
    whole = _encoder(name, GPU).fit(x, **args)
    again = _encoder(name, GPU).fit(x, **args)

    def stop(_encoder_, record):
        if record["epoch"] == 2:
            raise _Interrupted
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fit.pt"
        with contextlib.suppress(_Interrupted):
            _encoder(name, GPU).fit(x, checkpoint=path, checkpoint_every_s=0, callback=stop,
                                    **args)
        resumed = _encoder(name, GPU).fit(x, checkpoint=path, checkpoint_every_s=0, **args)
    spread = weights_difference(again.state_dict(), whole.state_dict())
    diff = weights_difference(resumed.state_dict(), whole.state_dict())
    at = (resumed.checkpoint_.resumed_from or {}).get("epoch")
    bound = max(10 * spread, RESUME_FLOOR)
    report.check(f"{name} killed after epoch 1 and resumed: weights vs uninterrupted", diff,
                 at == 2 and diff <= bound, f"resumed in epoch {at}; <= max(10 x {spread:.2g} "
                 f"(two uninterrupted fits), {RESUME_FLOOR:g})", time.perf_counter() - start)


def smoke_task(n_groups: int = 15, per_group: int = 8, length: int = T_SMOKE, seed: int = 0):
    """Labelled windows and grouped splits: class k a noisy sine of frequency 2 + 3k, records
    holding one or two of the three classes (as ``tests/evaluation/test_train.py``'s task)."""
    from ecgnb.data import Windows, split_grouped

    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    group = np.repeat(np.arange(n_groups), per_group)
    step = np.tile(np.arange(per_group), n_groups)
    k = np.where((group % 2 == 0) | (step % 3 != 0), group % 3, (group + 1) % 3)
    x = np.sin(2 * np.pi * (2 + 3 * k[:, None]) * t + rng.uniform(0, 2 * np.pi, (len(k), 1)))
    x = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)[:, None]
    windows = Windows(x=x, y=k, groups=np.array([f"rec{g}" for g in group]),
                      domains=np.full(len(k), "ECG"), fs=360.0, classes=("a", "b", "c"))
    return windows, split_grouped(windows, val=0.2, test=0.2, seed=0)


def check_cells(report: Report) -> None:
    """An LP and an FT cell per backbone and a supervised baseline, on the GPU."""
    from ecgnb.evaluation.cell import run_cell
    from ecgnb.evaluation.settings import TrainConfig

    windows, splits = smoke_task()
    quick = dict(n_epochs=3, warmup_epochs=1, batch_size=16, verbose=False, device=GPU)
    cells = [(name, mode, head) for name in SMOKE for mode, head in (("lp", "fcn"), ("ft", "mlp"))]
    for name, mode, head in cells + [(None, SUPERVISED, "fcn")]:
        what = f"{name or 'baseline'} {mode}/{head} cell, test macro-F1"
        with report.guard(what):
            start = time.perf_counter()
            encoder = _encoder(name, GPU) if name else None
            result = run_cell(encoder, windows, splits,
                              TrainConfig(head=head, mode=mode, backbone=name, **quick))
            history = result.history[["train_loss", "val_loss"]].to_numpy()
            report.check(what, result.test_metrics["macro_f1"], bool(np.isfinite(history).all()),
                         "losses finite", time.perf_counter() - start)


def check_softdtw(report: Report, device: str = "cuda", n_series: int = 64,
                  length: int = 720) -> None:
    """Each fused kernel and the strict ``auto`` path against the numba CPU kernel, timed."""
    from ecgnb.models.softdtw import pairwise_soft_dtw, soft_dtw_numba
    from ecgnb.models.softdtw_gpu import KernelUnavailable

    x = synthetic_batch(n_series, length).astype(np.float64)
    cpu_s, reference = best_time(lambda: soft_dtw_numba(x, 0.1), 2)
    x_gpu = torch.from_numpy(x).to(device)
    wait = lambda: sync(x_gpu.device)  # noqa: E731
    for kernel in ("triton", "numba-cuda", "auto"):
        what = f"soft-DTW {kernel} on {device}, {n_series} x {length} vs numba CPU: max rel. diff"
        with report.guard(what):
            try:
                pairwise_soft_dtw(x_gpu[:2], method=kernel)  # compile for this length
            except KernelUnavailable as exc:
                if kernel != "numba-cuda":
                    raise
                report.skip(what, f"cannot run here, the Triton kernel is used ({exc})")
                continue
            seconds, values = best_time(lambda: pairwise_soft_dtw(x_gpu, method=kernel), 3, wait)
            diff = max_relative_difference(values.cpu().numpy(), reference)
            report.check(what, diff, diff <= SOFTDTW_RTOL, f"<= {SOFTDTW_RTOL:g}; "
                         f"{seconds * 1e3:.2f} ms per batch, numba CPU {cpu_s * 1e3:.0f} ms")
    with report.guard("soft-DTW torch sweep (the fallback), for comparison"):
        seconds, _ = best_time(lambda: pairwise_soft_dtw(x_gpu, method="torch"), 1, wait)
        report.line("PASS", "soft-DTW torch sweep (the fallback), for comparison",
                    f"{seconds * 1e3:.1f} ms per batch")
