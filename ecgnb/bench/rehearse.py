"""``make rehearse`` (``python -m ecgnb.bench rehearse``): a slice of the paper grid on paper-size
data, timed and extrapolated to the whole grid.

The data: ``ECGNB_FRAGMENT_ROOT`` and ``ECGNB_WESAD_ROOT`` when both are set (the real datasets),
else the embedded data at the paper's size (``ecgnb data --size paper``), generated under the data
root (``ECGNB_DATA``) if missing. The grid (``params/grids/paper.yaml``) gives every run's settings
and counts: runs, epochs, cells. Each corpus is loaded through the cache of windowed corpora (its
first load builds it) and its size is what the epochs are extrapolated to.

Per backbone, in a fresh process (its own peak memory), with the grid's settings of that run:

- pretraining (02): one warm-up batch, then ``n_batches`` training batches of the corpus and
  ``n_batches`` held-out loss batches (when the checkpoint is selected on it); an epoch at full
  size is the per-batch times x the corpus's batches;
- regularization (03): the same on the no-ECG corpus (continued) and the target training
  fragments (extended);
- finetuning (04): one epoch of one cell per head and mode (seed 0) on a slice of the fragments
  (``n_batches`` training batches, one batch each of validation and test windows), scaled to the
  whole task by window counts: the epoch (training and validation, both counted at the training
  windows' cost) x 300 epochs, plus the cell's own set-up (LP encodes the fragments once), x the
  grid's cells;
- baselines: the same per model (H-InceptionTime: each of its members).

The rates go to :func:`ecgnb.bench.projection.project` with the corpus sizes as loaded (the model
``make gpu-check`` projects with too). Disk per run is what the run keeps: ``encoder.pt``, or the
cells' ``model.pt``. Hours assume the runs one after another with this process's torch threads;
core hours multiply them by the threads.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ecgnb.bench.projection import (EXTENDED_CORPUS, PAPER_GRID, backbone_of,
                                    format_projection, project, runs_of)
from ecgnb.bench.timing import in_fresh_process, peak_rss_mb
from ecgnb.runs import data_root
from ecgnb.evaluation.settings import SUPERVISED

ROOT_VARIABLES = {"fragment": "ECGNB_FRAGMENT_ROOT", "wesad": "ECGNB_WESAD_ROOT"}


def paper_roots() -> dict[str, Path]:
    """The real datasets when both variables are set, else the paper-size embedded data
    (generated once under the data root); the variables are then set to it for the grid."""
    if all(os.environ.get(v) for v in ROOT_VARIABLES.values()):
        return {k: Path(os.environ[v]).expanduser() for k, v in ROOT_VARIABLES.items()}
    from ecgnb.data.simulate import embedded_data, folder_size

    start = time.perf_counter()
    roots = embedded_data(data_root(), size="paper")
    print(f"paper-size data: {roots['wesad'].parent} ({folder_size(roots['wesad'].parent) / 1e9:.2f}"
          f" GB, ready in {time.perf_counter() - start:.0f} s)")
    for key, variable in ROOT_VARIABLES.items():
        os.environ[variable] = str(roots[key])
    return roots


def _fields(cls, params: dict, **changes):
    """``cls`` from the params its dataclass declares, with ``changes``."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in names}
    return cls(**{**values, **changes})


# --------------------------------------------------------------------------- measurements
def corpus_sizes(params: dict, names) -> dict[str, dict]:
    """Training and validation windows of each corpus, and the time its load took."""
    from ecgnb.data import DataConfig, load_corpus

    data = _fields(DataConfig, params)
    sizes = {}
    for name in names:
        start = time.perf_counter()
        train, val = load_corpus(name, data, seed=0, target_holdout=False)
        sizes[name] = {"n_train": len(train), "n_val": len(val),
                       "load_s": time.perf_counter() - start}
        print(f"corpus {name}: {len(train)} training, {len(val)} validation windows "
              f"({sizes[name]['load_s']:.1f} s)", flush=True)
    return sizes


def own_peak_mb() -> float:
    """This process's peak resident memory (VmHWM: a spawned child's own, where ``ru_maxrss``
    starts from the parent's at the fork)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def _batches_s(fn, x: np.ndarray, batch_size: int, n_batches: int) -> float:
    """Seconds per batch of ``fn(x_slice)`` over ``n_batches`` batches (after a warm-up one)."""
    fn(x[:batch_size])
    start = time.perf_counter()
    fn(x[batch_size:batch_size * (n_batches + 1)])
    return (time.perf_counter() - start) / n_batches


def grid_encoder(params: dict, device: str | None = None):
    """The encoder of a pretraining run's params (the recipe's settings, its size, precision)
    and the run's config: ``(encoder, PretrainConfig)``."""
    from ecgnb import models, pretraining

    cfg = _fields(pretraining.PretrainConfig, params)
    overrides = {"use_amp": cfg.use_amp,
                 **pretraining.model_config(cfg.backbone, cfg.model_size, cfg.model_overrides,
                                            cfg.recipe)}
    if cfg.backbone == "series2vec":
        overrides.setdefault("fs", cfg.fs)
    encoder = models.build(cfg.backbone, device=device or cfg.device, seed=0, verbose=False,
                           **overrides)
    return encoder, cfg


def measure_ssl(pretrain_params: dict, n_batches: int) -> dict:
    """Per-batch seconds of pretraining (ECG) and continued training (no-ECG, target), held-out
    loss batches, peak RSS and the encoder's size on disk (run in a fresh process):
    ``{"ssl": {label: {"batch_s", "val_batch_s"}}, "encoder_mb", "peak_mb"}``."""
    from ecgnb.data import DataConfig, load_corpus

    encoder, cfg = grid_encoder(pretrain_params)
    data, bs = _fields(DataConfig, pretrain_params), cfg.batch_size
    n = (n_batches + 1) * bs
    ssl = {}
    for label, corpus in (("pretrain", cfg.corpus), ("continued", "no-ECG"),
                          ("extended", EXTENDED_CORPUS)):
        # a cap of 4 n keeps n validation windows (load_corpus keeps a quarter of the cap)
        train, val = load_corpus(corpus, data, n_windows=4 * n, seed=0, target_holdout=False)
        x = np.ascontiguousarray(train.x[:n])
        ssl[label] = {"batch_s": _batches_s(
            lambda xb: encoder.fit(xb, n_epochs=1, batch_size=bs, verbose=False), x, bs,
            n_batches), "val_batch_s": 0.0}
        if cfg.selection == "holdout" and len(val) >= n:  # the held-out loss of every epoch
            ssl[label]["val_batch_s"] = _batches_s(
                lambda xb: encoder.evaluate_loss(xb, bs), np.ascontiguousarray(val.x[:n]), bs,
                n_batches)
    with tempfile.TemporaryDirectory() as tmp:
        encoder_mb = encoder.save(Path(tmp) / "encoder.pt").stat().st_size / 2**20
    return {"ssl": ssl, "encoder_mb": encoder_mb, "peak_mb": own_peak_mb()}


def measure_cells(finetune_params: dict, backbone: str | None, kinds: list[tuple[str, str]],
                  n_batches: int) -> dict:
    """One epoch of one cell per (head, mode) with the grid's settings, on a slice of the
    fragments (``n_batches`` batches of training windows, a batch of validation and of test
    windows, every class in each): per cell its epoch seconds per training and validation window
    and its set-up seconds per fragment (:mod:`ecgnb.bench.projection`), the model's size; the
    task's split sizes; peak RSS (fresh process)."""
    from ecgnb import finetuning
    from ecgnb.data import target_task

    cfg = _fields(finetuning.FinetuneConfig, finetune_params, n_epochs=1, seeds=(0,))
    fragments, splits = target_task(cfg)
    part, part_splits = _slice_task(fragments, splits, {"train": n_batches * cfg.batch_size,
                                                        "val": cfg.batch_size,
                                                        "test": cfg.batch_size})
    encoder = None
    if backbone is not None:
        encoder, _ = grid_encoder({**finetune_params, "backbone": backbone,
                                   "model_size": "study"})
    cells, model_mb = {}, {}
    for head, mode in kinds:
        config = finetuning.train_config(cfg, finetuning.Cell(head, mode, 0, cfg.label_fraction),
                                         backbone)
        cells[f"{head}-{mode}"], model_mb[f"{head}-{mode}"] = cell_rates(
            encoder, part, part_splits, config)
    return {"cells": cells, "model_mb": model_mb, "peak_mb": own_peak_mb(),
            "task": {name: len(idx) for name, idx in splits.items()}}


def cell_rates(encoder, windows, splits: dict, config) -> tuple[dict, float]:
    """One cell's run on ``windows``: the median epoch's seconds per training and validation
    window (one member), the set-up's seconds per window, the members; the model's size in MB."""
    from ecgnb.evaluation.cell import run_cell

    start = time.perf_counter()
    result = run_cell(encoder, windows, splits, config)
    total = time.perf_counter() - start
    seconds = result.history["seconds"]
    size = sum(t.numel() * t.element_size() for t in result.model.state_dict().values())
    return {"epoch_s_per_window": float(seconds.median()) / (len(splits["train"])
                                                              + len(splits["val"])),
            "setup_s_per_window": max(0.0, total - float(seconds.sum())) / len(windows),
            "n_members": int(result.history["member"].nunique())}, size / 2**20


def _slice_task(windows, splits: dict, sizes: dict) -> tuple:
    """At most ``sizes[name]`` windows of each split, classes taken in turn (every class kept)."""
    picked = {}
    for name, idx in splits.items():
        by_class = [list(idx[windows.y[idx] == k]) for k in np.unique(windows.y[idx])]
        order = [i for group in zip(*[g + [None] * (len(idx) - len(g)) for g in by_class])
                 for i in group if i is not None]
        picked[name] = np.sort(np.asarray(order[:sizes[name]], dtype=int))
    everything = np.concatenate(list(picked.values()))
    position = {int(i): j for j, i in enumerate(everything)}
    return windows.subset(everything), {name: np.array([position[int(i)] for i in idx])
                                         for name, idx in picked.items()}


# --------------------------------------------------------------------------- the rehearsal
def rehearse(n_batches: int = 2, backbones=None, grid_path=PAPER_GRID) -> list[dict]:
    """The table's rows, one per stage and backbone (see the module docstring)."""
    import torch

    from ecgnb.workflow.grid import load_grid

    paper_roots()
    grid = load_grid(grid_path)
    pre_runs = {r.params["backbone"]: r for r in runs_of(grid, "pretraining")
                if r.params.get("corpus") == "ECG" and r.params.get("n_epochs", 1) > 0}
    backbones = list(backbones or pre_runs)
    common = next(iter(pre_runs.values())).params
    needed = sorted({r.params["corpus"] for r in runs_of(grid, "pretraining")}
                    | {"no-ECG", EXTENDED_CORPUS})
    sizes = in_fresh_process(corpus_sizes, common, needed)  # keeps this process small
    rates, measured = {}, {}
    for backbone in backbones:
        ssl = in_fresh_process(measure_ssl, pre_runs[backbone].params, n_batches)
        print(f"{backbone} SSL: {_rounded(ssl)}", flush=True)
        ft_run = next(r for r in runs_of(grid, "finetuning") if backbone_of(r) == backbone)
        kinds = [(h, m) for h in ft_run.params["heads"] for m in ft_run.params["modes"]]
        cells = in_fresh_process(measure_cells, ft_run.params, backbone, kinds, n_batches)
        print(f"{backbone} cells: {_rounded(cells)}", flush=True)
        rates[backbone] = {"ssl": ssl["ssl"], "cells": cells["cells"]}
        measured[backbone] = (ssl, cells)
    base = runs_of(grid, "baselines")
    if base:
        kinds = [(m, SUPERVISED) for m in base[0].params["baselines"]]
        cells = in_fresh_process(measure_cells, base[0].params, None, kinds, n_batches)
        print(f"baselines: {_rounded(cells)}", flush=True)
        rates["baselines"] = {"cells": cells["cells"]}
        measured["-"] = (None, cells)
    rows = project(grid, rates, sizes, cells["task"], backbones)
    for row in rows:
        _add_resources(row, *measured[row["backbone"]], torch.get_num_threads())
    return rows


def _add_resources(row: dict, ssl: dict | None, cells: dict, threads: int) -> None:
    """Peak memory, disk per run and core hours beside a projected row."""
    if row["stage"] in ("pretraining", "regularization"):
        row["peak_mb"], row["disk_mb"] = ssl["peak_mb"], ssl["encoder_mb"]
    else:
        sizes = list(cells["model_mb"].values())
        row["peak_mb"] = cells["peak_mb"]
        row["disk_mb"] = float(np.mean(sizes)) * row["n_cells"] / max(1, row["runs"])
    row["core_h"] = row["hours"] * threads


def _rounded(values: dict) -> dict:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 6) if isinstance(v, float) else v
            for k, v in values.items()}


REHEARSAL_COLUMNS = (("peak_mb", "peak MB", ".0f"), ("disk_mb", "disk MB/run", ".1f"),
                     ("core_h", "core h", ",.0f"))


def format_rehearsal(rows: list[dict]) -> str:
    return format_projection(rows, "this machine", REHEARSAL_COLUMNS)


def main(n_batches: int = 2, backbones=None) -> None:
    """Print the table (``python -m ecgnb.bench`` prints the machine line first)."""
    start = time.perf_counter()
    rows = rehearse(n_batches, backbones)
    print(format_rehearsal(rows))
    print(f"rehearsal: {time.perf_counter() - start:.0f} s")
