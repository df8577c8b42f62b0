"""The CUDA side of ``make gpu-check`` (:mod:`ecgnb.bench.gpu_check` states the checks and their
tolerances); imported only where CUDA is present."""
from __future__ import annotations

import time

import numpy as np
import torch

from ecgnb.bench.gpu_check import (CURVE_RTOL, ENCODE_CKA, FIT_CKA, GRADIENT_COSINE, PAPER_GRID,
                                   SMOKE, STEP_RTOL, linear_cka, project_gpu_hours,
                                   relative_curve_difference)
from ecgnb.bench.timing import best_time, machine_line, synthetic_batch
from ecgnb.config import torch_generator
from ecgnb.models.precision import numerics

T_SMOKE, N_SMOKE = 128, 96
GPU = "cuda"  # the device checked against the CPU (tests run the checks with "cpu")


def _encoder(name: str, device: str, **overrides):
    from ecgnb.models import build

    config = {**SMOKE[name], "use_amp": False, **overrides}
    return build(name, device=device, seed=0, verbose=False, **config).build(T_SMOKE)


def _report(failures: list, what: str, value: float, ok: bool, bound: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: {value:.3g} ({bound})")
    if not ok:
        failures.append(what)


def check_step(name: str, x: np.ndarray, failures: list) -> None:
    """One batch's loss and gradients from the same weights and draws on both devices."""
    results = []
    for device in ("cpu", GPU):
        enc = _encoder(name, device)
        for module in enc.modules_.values():
            module.train()
        gen = torch_generator(1)
        with numerics(enc.device_, enc.config):
            loss = enc._loss(torch.from_numpy(x[:32]).to(enc.device_), gen, gen)
            loss.backward()
        grads = torch.cat([p.grad.flatten().cpu() for m in enc.modules_.values()
                           for p in m.parameters() if p.grad is not None]).double()
        results.append((float(loss.detach()), grads))
    (loss_cpu, g_cpu), (loss_gpu, g_gpu) = results
    _report(failures, f"{name} one step: loss rel. diff", abs(loss_gpu - loss_cpu) / abs(loss_cpu),
            abs(loss_gpu - loss_cpu) <= STEP_RTOL * abs(loss_cpu), f"<= {STEP_RTOL:g}")
    cosine = float(g_cpu @ g_gpu / (g_cpu.norm() * g_gpu.norm()))
    _report(failures, f"{name} one step: gradient cosine", cosine, cosine >= GRADIENT_COSINE,
            f">= {GRADIENT_COSINE}")


def check_fits(name: str, x: np.ndarray, failures: list) -> None:
    """Pretraining on both devices, bf16 on the GPU, a continuation on the GPU."""
    from ecgnb.models import REGISTRY
    from ecgnb.models.base import restore

    cpu = _encoder(name, "cpu").fit(x, n_epochs=2, batch_size=32)
    gpu = _encoder(name, GPU).fit(x, n_epochs=2, batch_size=32)
    curve = relative_curve_difference([h["loss"] for h in gpu.history_],
                                      [h["loss"] for h in cpu.history_])
    _report(failures, f"{name} 2-epoch loss curve, GPU vs CPU", curve, curve <= CURVE_RTOL,
            f"<= {CURVE_RTOL}: other draws")
    cka = linear_cka(gpu.encode(x), cpu.encode(x))
    _report(failures, f"{name} fitted embeddings CKA", cka, cka >= FIT_CKA, f">= {FIT_CKA}")
    same = restore(REGISTRY[name], gpu.state(), device="cpu")
    cka = linear_cka(gpu.encode(x), same.encode(x))
    _report(failures, f"{name} same weights, encode CKA GPU vs CPU", cka, cka >= ENCODE_CKA,
            f">= {ENCODE_CKA}")
    bf16 = _encoder(name, GPU, precision="bf16").fit(x, n_epochs=2, batch_size=32)
    curve = relative_curve_difference([h["loss"] for h in bf16.history_],
                                      [h["loss"] for h in gpu.history_])
    _report(failures, f"{name} bf16 loss curve vs fp32 (GPU)", curve, curve <= CURVE_RTOL,
            f"<= {CURVE_RTOL}")
    print(f"       record: {gpu.training_record()}")
    gpu.begin_continuation()
    gpu.fit(x, n_epochs=1, batch_size=32)
    loss = gpu.history_[-1]["loss"]
    _report(failures, f"{name} continuation loss", loss, bool(np.isfinite(loss)), "finite")


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


def check_cells(failures: list) -> None:
    """An LP and an FT cell per backbone and a supervised baseline, on the GPU."""
    from ecgnb.evaluation.train import TrainConfig, run_cell

    windows, splits = smoke_task()
    quick = dict(n_epochs=3, warmup_epochs=1, batch_size=16, verbose=False, device=GPU)
    cells = [(name, mode, head) for name in SMOKE for mode, head in (("lp", "fcn"), ("ft", "mlp"))]
    for name, mode, head in cells + [(None, "supervised", "fcn")]:
        encoder = _encoder(name, GPU) if name else None
        result = run_cell(encoder, windows, splits,
                          TrainConfig(head=head, mode=mode, backbone=name, **quick))
        finite = bool(np.isfinite(result.history[["train_loss", "val_loss"]].to_numpy()).all())
        _report(failures, f"{name or 'baseline'} {mode}/{head} cell, test macro-F1",
                result.test_metrics["macro_f1"], finite, "losses finite")


def check_softdtw(failures: list) -> None:
    from ecgnb.models.softdtw import pairwise_soft_dtw, soft_dtw_numba

    x = synthetic_batch(64, 720).astype(np.float64)
    cpu_s, reference = best_time(lambda: soft_dtw_numba(x, 0.1), 2)
    x_gpu = torch.from_numpy(x).cuda()
    pairwise_soft_dtw(x_gpu[:2, :16])  # compile
    gpu_s, values = best_time(lambda: pairwise_soft_dtw(x_gpu, 0.1), 3, torch.cuda.synchronize)
    diff = float(np.max(np.abs(values.cpu().numpy() - reference) / np.abs(reference)))
    _report(failures, "soft-DTW 64 x 720, GPU path vs numba: max rel. diff", diff, diff <= 1e-9,
            "<= 1e-9")
    print(f"       per batch: GPU {gpu_s * 1e3:.1f} ms, numba CPU {cpu_s * 1e3:.0f} ms")


def measure_rates() -> tuple[dict, dict]:
    """Training samples/s per backbone (study sizes) and seconds per FT epoch of one cell."""
    from ecgnb.bench.pretrain import bench_backbone
    from ecgnb.evaluation.train import TrainConfig, run_cell
    from ecgnb.models import build

    rates, epochs = {}, {}
    windows, splits = smoke_task(n_groups=163, per_group=8, length=720)  # 1,304 windows
    for name in SMOKE:
        row = bench_backbone(name, 10, 64, 720, "cuda")
        rates[name] = row["samples_per_s"]
        encoder = build(name, device="cuda", seed=0, verbose=False).build(720)
        start = time.perf_counter()
        result = run_cell(encoder, windows, splits, TrainConfig(
            head="mlp", mode="ft", backbone=name, n_epochs=2, device="cuda", verbose=False))
        epochs[name] = float(result.history["seconds"].mean())
        print(f"  {name}: {rates[name]:.0f} samples/s pretraining (batch 64 x 720), "
              f"{epochs[name]:.2f} s per FT epoch ({len(splits['train'])} windows; cell "
              f"{time.perf_counter() - start:.0f} s)")
    return rates, epochs


def check_all() -> int:
    print(machine_line())
    failures: list = []
    x = synthetic_batch(N_SMOKE, T_SMOKE)[:, None, :]
    for name in SMOKE:
        print(f"{name}:")
        check_step(name, x, failures)
        check_fits(name, x, failures)
    print("cells:")
    check_cells(failures)
    print("soft-DTW:")
    check_softdtw(failures)
    print("rates:")
    rates, epochs = measure_rates()
    hours = project_gpu_hours(rates, epochs)
    print(f"paper grid ({PAPER_GRID}):")
    print("  GPU hours: " + ", ".join(f"{k} {v:.1f}" for k, v in hours.items()))
    print(f"gpu-check: {'all checks passed' if not failures else 'FAILED: ' + '; '.join(failures)}")
    return 1 if failures else 0
