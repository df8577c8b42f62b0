"""The rates of ``make gpu-check``: host synchronisations per training step, steady-state training
rates at the study's sizes with each grid's settings, where a step's time goes, seconds per cell
epoch, and each grid's GPU hours (:func:`ecgnb.bench.projection.project`).

A rate is steady-state: one fit of ``RATE_EPOCHS`` epochs of ``RATE_BATCHES`` batches, the first
epoch the warm-up (kernel compilation, cuDNN's autotuning, the allocator's first blocks), the rate
from the median of the others. An epoch's seconds end after the epoch's one read of its loss sum,
a synchronisation, so queued device work is inside them.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ecgnb.bench import gpu_stages
from ecgnb.bench.gpu_check import Report
from ecgnb.bench.projection import PAPER_GRID, format_projection, project, runs_of
from ecgnb.bench.timing import synthetic_batch
from ecgnb.evaluation.settings import SUPERVISED

RATE_BATCHES, RATE_EPOCHS, RATE_LENGTH = 8, 3, 720
GRIDS = {"study": PAPER_GRID, "ecgnb": PAPER_GRID.with_name("paper-ecgnb.yaml")}


# --------------------------------------------------------------------------- host syncs
def _syncs(name: str, x: np.ndarray, n_batches: int, **overrides) -> int:
    """Synchronisations CUDA reports in a one-epoch fit of ``n_batches`` batches of 32."""
    enc = gpu_stages._encoder(name, gpu_stages.GPU, **overrides)
    enc.fit(x[:32], n_epochs=1, batch_size=32)  # compile, autotune, allocate
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            enc.fit(x[:32 * n_batches], n_epochs=1, batch_size=32)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def check_syncs(name: str, x: np.ndarray, report: Report) -> None:
    """Per training step: a 3-batch epoch's synchronisations minus a 1-batch epoch's, halved."""
    if gpu_stages.GPU == "cpu":
        report.skip(f"{name} host syncs per training step", "CUDA's sync detector needs CUDA")
        return
    for label, overrides, allowed, bound in (
            ("fp32", {}, 0, "0"), ("fp16 AMP", {"use_amp": True}, 1,
                                   "<= 1: the gradient scaler reads its inf check")):
        start = time.perf_counter()
        per_step = (_syncs(name, x, 3, **overrides) - _syncs(name, x, 1, **overrides)) / 2
        report.check(f"{name} {label} host syncs per training step", per_step,
                     per_step <= allowed, bound, time.perf_counter() - start)


# --------------------------------------------------------------------------- training rates
def ssl_rate(params: dict, n_batches: int = RATE_BATCHES, length: int = RATE_LENGTH,
             **overrides) -> dict:
    """Steady-state seconds per training batch (and per held-out loss batch where the run's
    checkpoint is chosen on them) of a pretraining run's encoder, ``overrides`` on its config."""
    from ecgnb.bench.rehearse import grid_encoder

    encoder, cfg = grid_encoder(params, device=gpu_stages.GPU)
    encoder.set_params(**overrides)
    bs = cfg.batch_size
    x = synthetic_batch(n_batches * bs, length)[:, None, :]
    encoder.fit(x, n_epochs=RATE_EPOCHS, batch_size=bs)
    seconds = [h["seconds"] for h in encoder.history_]
    out = {"batch_s": float(np.median(seconds[1:])) / n_batches, "val_batch_s": 0.0,
           "shape": f"{bs} x {length}",
           "first_epoch_s": seconds[0], "loss": encoder.history_[-1]["loss"],
           "autocast": encoder.training_record()["autocast"], "encoder": encoder, "x": x}
    if cfg.selection == "holdout":
        encoder.evaluate_loss(x[:bs], bs)
        start = time.perf_counter()
        encoder.evaluate_loss(x, bs)  # its result is read: synchronised
        out["val_batch_s"] = (time.perf_counter() - start) / n_batches
    return out


def _rate_line(report: Report, what: str, rate: dict, bs: int) -> None:
    per_s = bs / rate["batch_s"]
    report.check(f"{what}: samples/s", per_s, bool(np.isfinite(rate["loss"])) and per_s > 0,
                 f"{1 / rate['batch_s']:.2f} steps/s of {rate['shape']}; autocast "
                 f"{rate['autocast']}; first epoch {rate['first_epoch_s']:.1f} s (warm-up)"
                 + (f"; held-out batch {rate['val_batch_s'] * 1e3:.0f} ms"
                    if rate["val_batch_s"] else ""))


def where_time_goes(encoder, x: np.ndarray, batch_size: int, top: int = 5) -> str:
    """One profiled epoch: the device's busy share and the operations with most device time,
    then those with most host time."""
    from torch.profiler import ProfilerActivity, profile

    cuda = gpu_stages.GPU != "cpu"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        encoder.fit(x, n_epochs=1, batch_size=batch_size)
    wall = time.perf_counter() - start
    events = list(prof.key_averages())
    device = "self_device_time_total" if hasattr(events[0], "self_device_time_total") \
        else "self_cuda_time_total"
    lines = []
    for key in ([device] if cuda else []) + ["self_cpu_time_total"]:
        busy = sum(getattr(e, key) for e in events) / 1e6
        ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
        lines.append(f"       {'device' if key == device else 'host'} {busy:.2f} s of "
                     f"{wall:.2f} s: " + ", ".join(f"{e.key[:48]} {getattr(e, key) / 1e3:.0f} "
                                                  f"ms x{e.count}" for e in ranked))
    return "\n".join(lines)


def grid_ssl_rates(report: Report, recipe: str, grid, backbones, **sizes) -> dict:
    """Per backbone, the rates of its ECG pretraining run's settings; beside the study recipe's,
    where a step's time goes and the rate with ``allow_tf32=True``; beside the ecgnb recipe's
    (fp16 AMP), the same in bf16."""
    rates = {}
    for backbone in backbones:
        params = _pretraining_params(grid, backbone, sizes.get("overrides"))
        what = f"{backbone} pretraining, {recipe} recipe"
        with report.guard(what):
            rate = ssl_rate(params, sizes.get("n_batches", RATE_BATCHES),
                            sizes.get("length", RATE_LENGTH))
            _rate_line(report, what, rate, params["batch_size"])
            rates[backbone] = {label: {k: rate[k] for k in ("batch_s", "val_batch_s")}
                               for label in ("pretrain", "continued", "extended")}
            if recipe == "ecgnb":
                bf16 = ssl_rate(params, sizes.get("n_batches", RATE_BATCHES),
                                sizes.get("length", RATE_LENGTH), precision="bf16")
                _rate_line(report, f"{backbone} pretraining, bf16 (no scaler)", bf16,
                           params["batch_size"])
            else:
                print(where_time_goes(rate["encoder"], rate["x"], params["batch_size"]),
                      flush=True)
                tf32 = ssl_rate(params, sizes.get("n_batches", RATE_BATCHES),
                                sizes.get("length", RATE_LENGTH), allow_tf32=True)
                _rate_line(report, f"{backbone} pretraining, study recipe with TF32", tf32,
                           params["batch_size"])
    return rates


def _pretraining_params(grid, backbone: str, overrides: dict | None) -> dict:
    run = next(r for r in runs_of(grid, "pretraining")
               if r.params["backbone"] == backbone and r.params["corpus"] == "ECG")
    return {**run.params, **(overrides or {})}


# --------------------------------------------------------------------------- cells
def grid_cell_rates(report: Report, grid, backbones, overrides: dict | None = None,
                    length: int = RATE_LENGTH, n_groups: int = 125) -> dict:
    """Seconds per cell epoch (per window) and set-up of every head x mode per backbone and of
    the baselines, two epochs each on ``8 n_groups`` synthetic windows (1,000), with the grid's
    settings."""
    from ecgnb import finetuning
    from ecgnb.bench.rehearse import _fields, cell_rates, grid_encoder

    windows, splits = gpu_stages.smoke_task(n_groups=n_groups, per_group=8, length=length)
    rates = {}
    for backbone in [*backbones, None]:
        section = "baselines" if backbone is None else "finetuning"
        run = next(r for r in runs_of(grid, section))
        params = {**run.params, **(overrides or {})}
        cfg = _fields(finetuning.FinetuneConfig, params, n_epochs=2, seeds=(0,),
                      device=gpu_stages.GPU)
        kinds = ([(m, SUPERVISED) for m in params["baselines"]] if backbone is None else
                 [(h, m) for h in params["heads"] for m in params["modes"]])
        cells = {}
        for head, mode in kinds:
            what = (f"{backbone or 'baseline'} {head}/{mode} cell epoch, "
                    f"{len(splits['train'])} windows")
            with report.guard(what):
                encoder = None if backbone is None else grid_encoder(
                    {**params, "backbone": backbone, "model_size": "study", **(overrides or {})},
                    device=gpu_stages.GPU)[0]
                config = finetuning.train_config(cfg, finetuning.Cell(head, mode, 0, 1.0),
                                                 backbone)
                cells[f"{head}-{mode}"], _ = cell_rates(encoder, windows, splits, config)
                epoch = cells[f"{head}-{mode}"]["epoch_s_per_window"] * (
                    len(splits["train"]) + len(splits["val"]))
                report.check(what, epoch, np.isfinite(epoch), "seconds, finite")
        rates[backbone or "baselines"] = cells
    return rates


# --------------------------------------------------------------------------- the projection
def check_rates(report: Report, overrides: dict | None = None, n_batches: int = RATE_BATCHES,
                length: int = RATE_LENGTH, n_groups: int = 125) -> None:
    """Rates per grid (:data:`GRIDS`) and each grid's projected GPU hours. Cells are timed with
    the study grid's settings and stand for both (their epochs differ in optimiser and early
    stopping, not in work)."""
    from ecgnb.workflow.grid import load_grid

    device = (f"one {torch.cuda.get_device_name()}" if gpu_stages.GPU != "cpu"
              else "this CPU")
    cells = None
    for recipe, path in GRIDS.items():
        grid = load_grid(path, validate=False)
        backbones = sorted({r.params["backbone"] for r in runs_of(grid, "pretraining")})
        ssl = grid_ssl_rates(report, recipe, grid, backbones, overrides=overrides,
                             n_batches=n_batches, length=length)
        cells = cells or grid_cell_rates(report, grid, backbones, overrides, length, n_groups)
        with report.guard(f"projection of {path.name}"):
            rates = {b: {"ssl": ssl[b], "cells": cells[b]} for b in backbones}
            rows = project(grid, {**rates, "baselines": {"cells": cells["baselines"]}})
            print(format_projection(rows, f"{device} ({recipe} recipe)"), flush=True)
            total = sum(r["hours"] for r in rows)
            report.check(f"{path.name} projected GPU hours", total, np.isfinite(total),
                         "finite")
