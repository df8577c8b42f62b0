"""A grid's machine hours from a table of measured rates: the one model behind ``make rehearse``
(this CPU, paper-size data) and ``make gpu-check`` (a GPU, synthetic windows of the same shape).

What the grid trains is read from its file (``params/grids/paper.yaml``), run by run:

- **pretraining**: every run (the corpora ECG, All, ECG+target, All+target) x its epochs x an
  epoch of its corpus: the training batches, and the held-out loss batches where the checkpoint
  is chosen on them;
- **regularization**: every continuation x its step's epochs (continued1: 1, continued30: 30,
  extended: 60, unless the grid sets ``n_epochs``) on the step's corpus (no-ECG, or the target's
  training fragments);
- **finetuning** and **baselines**: every cell x (its set-up + epochs x ensemble members x the
  training and validation fragments), each head x mode (or model) equally often.

The rate table, per backbone::

    {"ssl": {label: {"batch_s": s, "val_batch_s": s}},     # label: pretrain, continued, extended
     "cells": {"mlp-lp": {"epoch_s_per_window": s, "setup_s_per_window": s, "n_members": 1}, ...}}

and ``"baselines": {"cells": {"hinception-supervised": {...}, ...}}``. ``batch_s`` is one training
batch of the grid's batch size, ``val_batch_s`` one held-out loss batch (0 where the selection
reads none); a cell's epoch is per training + validation window, its set-up per fragment.
Sizes: per corpus ``{"n_train", "n_val"}`` and the target task's split sizes; the defaults
(:data:`PAPER_SIZES`, :data:`PAPER_TASK`) are those of the paper-size data (``ecgnb data --size
paper``: 105,292 ECG windows, 1,000 fragments split 619 / 172 / 209 with ``split_seed: 0``).
Hours count the runs one after another on one device, every cell for all its epochs (the
``ecgnb`` recipe's early stopping would end some sooner: for it, an upper bound).
"""
from __future__ import annotations

import math

import numpy as np

from ecgnb.runs import PROJECT_ROOT

PAPER_GRID = PROJECT_ROOT / "params" / "grids" / "paper.yaml"
EXTENDED_CORPUS = "target"
TARGET_FRAGMENTS = 619  # training fragments of the paper-size Fragment DB (split_seed 0)
PAPER_TASK = {"train": TARGET_FRAGMENTS, "val": 172, "test": 209}
PAPER_SIZES = {  # training / held-out (S17) windows, as `make rehearse` loads them
    "ECG": {"n_train": 98_274, "n_val": 7_018},
    "All": {"n_train": 98_280, "n_val": 7_020},
    "ECG+target": {"n_train": 98_274 + TARGET_FRAGMENTS, "n_val": 7_018},
    "All+target": {"n_train": 98_280 + TARGET_FRAGMENTS, "n_val": 7_020},
    "no-ECG": {"n_train": 78_624, "n_val": 5_616},
    EXTENDED_CORPUS: {"n_train": TARGET_FRAGMENTS, "n_val": 0},  # the study's: every record
}


def runs_of(grid, section: str) -> list:
    return [r for r in grid.runs.values() if r.section == section]


def backbone_of(run) -> str | None:
    """The backbone a run trains: its own, or that of the run it continues or fine-tunes."""
    if run.params.get("backbone"):
        return run.params["backbone"]
    parent = run.params.get("parent_run") or run.params.get("encoder_run") or ""
    name = parent.split("/")[-1]
    return name.split("-")[0] if name and name != "none" else None


def project(grid, rates: dict, sizes: dict = PAPER_SIZES, task: dict = PAPER_TASK,
            backbones=None) -> list[dict]:
    """Rows (stage, backbone, runs, epochs, windows, batch_s, epoch_s, hours, on, n_cells): per
    backbone its pretraining, regularization and finetuning; then the baselines."""
    backbones = backbones or sorted({backbone_of(r) for r in runs_of(grid, "pretraining")})
    rows = []
    for backbone in backbones:
        rows += [_pretraining_row(grid, backbone, rates[backbone]["ssl"], sizes),
                 _regularization_row(grid, backbone, rates[backbone]["ssl"], sizes),
                 _cells_row(grid, "finetuning", backbone, rates[backbone]["cells"], task)]
    if runs_of(grid, "baselines") and "baselines" in rates:
        rows.append(_cells_row(grid, "baselines", "-", rates["baselines"]["cells"], task))
    return rows


def epoch_s(ssl: dict, size: dict, batch_size: int) -> float:
    """An epoch of a corpus: its training batches, and its held-out loss batches."""
    return (math.ceil(size["n_train"] / batch_size) * ssl["batch_s"]
            + math.ceil(size["n_val"] / batch_size) * ssl.get("val_batch_s", 0.0))


def _ssl_row(stage: str, backbone: str, plan: list, ssl: dict, sizes: dict, on: str) -> dict:
    """``plan``: (label, corpus, epochs, batch size) per run."""
    hours = sum(n * epoch_s(ssl[label], sizes[corpus], bs) for label, corpus, n, bs in plan) / 3600
    label, corpus, _, bs = plan[0]
    return _row(stage, backbone, len(plan), [n for _, _, n, _ in plan],
                sum(n * sizes[c]["n_train"] for _, c, n, _ in plan), ssl[label]["batch_s"],
                epoch_s(ssl[label], sizes[on], bs), hours, on)


def _pretraining_row(grid, backbone: str, ssl: dict, sizes: dict) -> dict:
    plan = [("pretrain", r.params["corpus"], int(r.params.get("n_epochs") or 0),
             int(r.params["batch_size"]))
            for r in runs_of(grid, "pretraining") if backbone_of(r) == backbone]
    return _ssl_row("pretraining", backbone, plan, ssl, sizes, plan[0][1])


def _regularization_row(grid, backbone: str, ssl: dict, sizes: dict) -> dict:
    from ecgnb.data import scenarios

    plan = []
    for run in runs_of(grid, "regularization"):
        if backbone_of(run) == backbone:
            step = scenarios.get(run.params["scenario"]).last_step
            label = "extended" if step.corpus == EXTENDED_CORPUS else "continued"
            plan.append((label, step.corpus, int(run.params.get("n_epochs") or step.n_epochs),
                         int(run.params["batch_size"])))
    plan.sort(key=lambda p: p[0] != "continued")  # the first row's epoch: no-ECG's
    return _ssl_row("regularization", backbone, plan, ssl, sizes, plan[0][1])


def _cells_row(grid, section: str, backbone: str, cells: dict, task: dict) -> dict:
    """Every cell of the section's runs of ``backbone``, the kinds equally often."""
    runs = [r for r in runs_of(grid, section) if section == "baselines"
            or backbone_of(r) == backbone]
    hours = windows = 0.0
    for run in runs:
        n_epochs = int(run.params.get("n_epochs") or 300)
        n_train = task["train"] * float(run.params.get("label_fraction", 1.0))
        per_kind = [_cell_s(c, n_epochs, n_train, task) for c in cells.values()]
        hours += run.n_cells * float(np.mean(per_kind)) / 3600
        members = float(np.mean([c["n_members"] for c in cells.values()]))
        windows += run.n_cells * n_epochs * members * n_train
    epoch = float(np.mean([c["epoch_s_per_window"] * c["n_members"] * (task["train"] + task["val"])
                           for c in cells.values()]))
    n_cells = sum(r.n_cells for r in runs)
    return _row(section, backbone, len(runs), [int(r.params.get("n_epochs") or 300) for r in runs],
                windows, float("nan"), epoch, hours, f"{task['train']} fragments, {n_cells} cells",
                n_cells)


def _cell_s(cell: dict, n_epochs: int, n_train: float, task: dict) -> float:
    fragments = task["train"] + task["val"] + task["test"]
    return (cell.get("setup_s_per_window", 0.0) * fragments
            + n_epochs * cell["n_members"] * cell["epoch_s_per_window"] * (n_train + task["val"]))


def _row(stage, backbone, n_runs, epochs, windows, batch_s, epoch, hours, on, n_cells=0) -> dict:
    return {"stage": stage, "backbone": backbone, "runs": n_runs,
            "epochs": "/".join(str(e) for e in sorted(set(epochs))), "windows": windows,
            "batch_s": batch_s, "epoch_s": epoch, "hours": hours, "on": on, "n_cells": n_cells}


def format_projection(rows: list[dict], machine: str, extra: tuple = ()) -> str:
    """The table; ``extra``: (key, header, format) columns some rows carry (e.g. peak MB)."""
    header = (f"{'stage':<15}{'backbone':<11}{'runs':>5}{'epochs':>10}{'windows':>11}"
              f"{'s/batch':>9}{'s/epoch':>10}" + "".join(f"{h:>{len(h) + 2}}" for _, h, _ in extra)
              + f"{'hours':>10}  epoch of")
    lines = [header]
    for r in rows:
        batch = "-" if math.isnan(r["batch_s"]) else f"{r['batch_s']:.3f}"
        cells = "".join(f"{format(r[k], f) if k in r else '-':>{len(h) + 2}}" for k, h, f in extra)
        lines.append(f"{r['stage']:<15}{r['backbone']:<11}{r['runs']:>5}{r['epochs']:>10}"
                     f"{r['windows']:>11.3g}{batch:>9}{r['epoch_s']:>10.1f}{cells}"
                     f"{r['hours']:>10.1f}  {r['on']}")
    total = sum(r["hours"] for r in rows)
    lines.append(f"whole grid: {total:,.1f} hours ({total / 24:,.1f} days) on {machine}")
    return "\n".join(lines)
