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

Disk per run is what the run keeps: ``encoder.pt``, or the cells' ``model.pt``. Machine hours
assume the runs one after another with this process's torch threads; core hours multiply them
by the threads.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ecgnb.bench.timing import in_fresh_process, peak_rss_mb
from ecgnb.runs import PROJECT_ROOT, data_root

PAPER_GRID = PROJECT_ROOT / "params" / "grids" / "paper.yaml"
ROOT_VARIABLES = {"fragment": "ECGNB_FRAGMENT_ROOT", "wesad": "ECGNB_WESAD_ROOT"}
EXTENDED_CORPUS = "target"


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


def _runs(grid, section: str) -> list:
    return [r for r in grid.runs.values() if r.section == section]


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


def measure_ssl(pretrain_params: dict, n_batches: int) -> dict:
    """Per-batch seconds of pretraining (ECG) and continued training (no-ECG, target), held-out
    loss batches, peak RSS and the encoder's size on disk (run in a fresh process)."""
    from ecgnb import models, pretraining
    from ecgnb.data import DataConfig, load_corpus

    cfg = _fields(pretraining.PretrainConfig, pretrain_params)
    overrides = {"use_amp": cfg.use_amp_,
                 **pretraining.model_config(cfg.backbone, cfg.model_size, cfg.model_overrides,
                                            cfg.recipe)}
    if cfg.backbone == "series2vec":
        overrides.setdefault("fs", cfg.fs)
    encoder = models.build(cfg.backbone, device=cfg.device, seed=0, verbose=False, **overrides)
    data, bs = _fields(DataConfig, pretrain_params), cfg.batch_size
    n = (n_batches + 1) * bs
    out = {}
    for label, corpus in (("pretrain", cfg.corpus), ("continued", "no-ECG"),
                          ("extended", EXTENDED_CORPUS)):
        # a cap of 4 n keeps n validation windows (load_corpus keeps a quarter of the cap)
        train, val = load_corpus(corpus, data, n_windows=4 * n, seed=0, target_holdout=False)
        x = np.ascontiguousarray(train.x[:n])
        out[f"{label}_batch_s"] = _batches_s(
            lambda xb: encoder.fit(xb, n_epochs=1, batch_size=bs, verbose=False), x, bs, n_batches)
        if cfg.selection_ == "holdout" and len(val) >= n:  # the held-out loss of every epoch
            out[f"{label}_val_batch_s"] = _batches_s(
                lambda xb: encoder.evaluate_loss(xb, bs), np.ascontiguousarray(val.x[:n]), bs,
                n_batches)
    with tempfile.TemporaryDirectory() as tmp:
        out["encoder_mb"] = encoder.save(Path(tmp) / "encoder.pt").stat().st_size / 2**20
    out["peak_mb"] = own_peak_mb()
    return out


def measure_cells(finetune_params: dict, backbone: str | None, kinds: list[tuple[str, str]],
                  n_batches: int) -> dict:
    """One epoch of one cell per (head, mode) with the grid's settings, on a slice of the
    fragments (``n_batches`` batches of training windows, a batch of validation and of test
    windows, every class in each): per cell its epoch and set-up seconds extrapolated to the
    whole task by window counts, and the model's size; peak RSS (fresh process)."""
    from ecgnb import finetuning, models, pretraining
    from ecgnb.data import target_task
    from ecgnb.evaluation.train import run_cell

    cfg = _fields(finetuning.FinetuneConfig, finetune_params, n_epochs=1, seeds=(0,))
    fragments, splits = target_task(cfg)
    part, part_splits = _slice_task(fragments, splits, {"train": n_batches * cfg.batch_size,
                                                        "val": cfg.batch_size,
                                                        "test": cfg.batch_size})
    epoch_scale = (len(splits["train"]) + len(splits["val"])) / (
        len(part_splits["train"]) + len(part_splits["val"]))
    setup_scale = len(fragments) / len(part)
    encoder = None
    if backbone is not None:
        overrides = pretraining.model_config(backbone, "study", {}, cfg.recipe)
        if backbone == "series2vec":
            overrides.setdefault("fs", cfg.fs)
        encoder = models.build(backbone, device=cfg.device, seed=0, verbose=False, **overrides)
    out = {"n_train": len(splits["train"])}
    for head, mode in kinds:
        config = finetuning.train_config(cfg, finetuning.Cell(head, mode, 0, cfg.label_fraction),
                                         backbone)
        start = time.perf_counter()
        result = run_cell(encoder, part, part_splits, config)
        total = time.perf_counter() - start
        epoch_s = float(result.history["seconds"].sum())
        n_members = int(result.history["member"].nunique())
        size = sum(t.numel() * t.element_size() for t in result.model.state_dict().values())
        out[f"{head}-{mode}"] = {"epoch_s": epoch_s / n_members * epoch_scale,
                                 "n_members": n_members,
                                 "setup_s": max(0.0, total - epoch_s) * setup_scale,
                                 "model_mb": size / 2**20}
    out["peak_mb"] = own_peak_mb()
    return out


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

    from ecgnb.data import scenarios
    from ecgnb.workflow.grid import load_grid

    paper_roots()
    grid = load_grid(grid_path)
    pre_runs = {r.params["backbone"]: r for r in _runs(grid, "pretraining")
                if r.params.get("corpus") == "ECG" and r.params.get("n_epochs", 1) > 0}
    backbones = list(backbones or pre_runs)
    common = next(iter(pre_runs.values())).params
    needed = sorted({r.params["corpus"] for r in _runs(grid, "pretraining")}
                    | {"no-ECG", EXTENDED_CORPUS})
    sizes = in_fresh_process(corpus_sizes, common, needed)  # keeps this process small
    threads = torch.get_num_threads()
    rows = []
    for backbone in backbones:
        ssl = in_fresh_process(measure_ssl, pre_runs[backbone].params, n_batches)
        print(f"{backbone} SSL: {_rounded(ssl)}", flush=True)
        rows += _ssl_rows(grid, backbone, ssl, sizes, scenarios)
        ft_run = next(r for r in _runs(grid, "finetuning") if r.params.get("encoder_run", "")
                      .split("/")[-1].startswith(f"{backbone}-"))
        kinds = [(h, m) for h in ft_run.params["heads"] for m in ft_run.params["modes"]]
        cells = in_fresh_process(measure_cells, ft_run.params, backbone, kinds, n_batches)
        print(f"{backbone} cells: {_rounded(cells)}", flush=True)
        rows.append(_cell_row(grid, "finetuning", backbone, cells, kinds,
                              [r for r in _runs(grid, "finetuning")
                               if f"/{backbone}-" in r.params.get("encoder_run", "")]))
    base = _runs(grid, "baselines")
    if base:
        kinds = [(m, "supervised") for m in base[0].params["baselines"]]
        cells = in_fresh_process(measure_cells, base[0].params, None, kinds, n_batches)
        print(f"baselines: {_rounded(cells)}", flush=True)
        rows.append(_cell_row(grid, "baselines", "-", cells, kinds, base))
    for row in rows:
        row["core_h"] = row["machine_h"] * threads
    return rows


def _rounded(values: dict) -> dict:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 3) if isinstance(v, float) else v
            for k, v in values.items()}


def _ssl_rows(grid, backbone: str, ssl: dict, sizes: dict, scenarios) -> list[dict]:
    """Pretraining and regularization rows of one backbone."""
    rows = []
    pre = [r for r in _runs(grid, "pretraining") if r.params["backbone"] == backbone]
    hours, epochs = 0.0, []
    for run in pre:
        corpus, n_epochs = run.params["corpus"], int(run.params.get("n_epochs") or 0)
        epoch = _epoch_s(ssl, "pretrain", sizes[corpus], run.params["batch_size"])
        hours += n_epochs * epoch / 3600
        epochs.append(n_epochs)
    ecg = _epoch_s(ssl, "pretrain", sizes["ECG"], 64)
    rows.append(_row("pretraining", backbone, len(pre), epochs, ssl["pretrain_batch_s"], ecg,
                     ssl["peak_mb"], ssl["encoder_mb"], hours, "ECG"))
    reg = [r for r in _runs(grid, "regularization") if r.params.get("parent_run", "")
           .split("/")[-1].startswith(f"{backbone}-")]
    hours, epochs = 0.0, []
    for run in reg:
        step = scenarios.get(run.params["scenario"]).last_step
        n_epochs = int(run.params.get("n_epochs") or step.n_epochs)
        label = "extended" if step.corpus == EXTENDED_CORPUS else "continued"
        hours += n_epochs * _epoch_s(ssl, label, sizes[step.corpus],
                                     run.params["batch_size"]) / 3600
        epochs.append(n_epochs)
    no_ecg = _epoch_s(ssl, "continued", sizes["no-ECG"], 64)
    rows.append(_row("regularization", backbone, len(reg), epochs, ssl["continued_batch_s"],
                     no_ecg, ssl["peak_mb"], ssl["encoder_mb"], hours, "no-ECG"))
    return rows


def _epoch_s(ssl: dict, label: str, size: dict, batch_size: int) -> float:
    """An epoch at full size: training batches, plus held-out loss batches where measured."""
    train = math.ceil(size["n_train"] / batch_size) * ssl[f"{label}_batch_s"]
    val = math.ceil(size["n_val"] / batch_size) * ssl.get(f"{label}_val_batch_s", 0.0)
    return train + val


def _cell_row(grid, section: str, backbone: str, cells: dict, kinds, runs) -> dict:
    """A finetuning or baselines row: every run's cells, each the grid's epochs long."""
    n_epochs = int(runs[0].params.get("n_epochs") or 300)
    per_cell = [cells[f"{h}-{m}"] for h, m in kinds]
    cell_h = [(c["setup_s"] + n_epochs * c["n_members"] * c["epoch_s"]) / 3600 for c in per_cell]
    n_cells = sum(r.n_cells for r in runs)
    hours = n_cells * float(np.mean(cell_h))
    disk = sum(c["model_mb"] for c in per_cell) * n_cells / max(1, len(runs)) / len(per_cell)
    epoch = float(np.mean([c["epoch_s"] * c["n_members"] for c in per_cell]))
    return _row(section, backbone, len(runs), [n_epochs], float("nan"), epoch, cells["peak_mb"],
                disk, hours, f"{cells['n_train']} fragments, {n_cells} cells")


def _row(stage, backbone, n_runs, epochs, batch_s, epoch_s, peak_mb, disk_mb, hours, on) -> dict:
    return {"stage": stage, "backbone": backbone, "runs": n_runs,
            "epochs": "/".join(str(e) for e in sorted(set(epochs))), "batch_s": batch_s,
            "epoch_s": epoch_s, "peak_mb": peak_mb, "disk_mb": disk_mb, "machine_h": hours,
            "on": on}


def format_rehearsal(rows: list[dict]) -> str:
    header = (f"{'stage':<15}{'backbone':<11}{'runs':>5}{'epochs':>12}{'s/batch':>9}"
              f"{'s/epoch':>10}{'peak MB':>9}{'disk MB/run':>12}{'machine h':>11}"
              f"{'core h':>9}  epoch of")
    lines = [header]
    for r in rows:
        batch = "-" if math.isnan(r["batch_s"]) else f"{r['batch_s']:.2f}"
        lines.append(f"{r['stage']:<15}{r['backbone']:<11}{r['runs']:>5}{r['epochs']:>12}"
                     f"{batch:>9}{r['epoch_s']:>10.0f}{r['peak_mb']:>9.0f}{r['disk_mb']:>12.1f}"
                     f"{r['machine_h']:>11.0f}{r['core_h']:>9.0f}  {r['on']}")
    total = sum(r["machine_h"] for r in rows)
    lines.append(f"whole grid: {total:,.0f} machine hours ({total / 24:,.0f} days), "
                 f"{sum(r['core_h'] for r in rows):,.0f} core hours on this machine")
    return "\n".join(lines)


def main(n_batches: int = 2, backbones=None) -> None:
    """Print the table (``python -m ecgnb.bench`` prints the machine line first)."""
    start = time.perf_counter()
    rows = rehearse(n_batches, backbones)
    print(format_rehearsal(rows))
    print(f"rehearsal: {time.perf_counter() - start:.0f} s")
