"""The run folder: where runs live, what they hold, when they are complete.

Every notebook execution is a *run*, named by its path relative to the outputs root, e.g.
``pretraining/smoke-ts2vec`` or ``demo/regularization/ts2vec-ecg-continued1``. A run folder holds:

- ``config.json``: resolved parameters, seed, package versions, git commit, device (first cell);
- the stage's artefacts (``encoder.pt``, ``figures.html``, ``<stage>.json`` summaries ...);
- for stage 04, one folder per downstream cell under ``cells/<cell name>/`` with ``cell.json``,
  ``model.pt``, ``history.csv``, ``predictions.csv`` and ``metrics.json`` (written last);
- ``_SUCCESS.json`` once the notebook's last cell ran (``_FAILED.json`` when it raised).

``ECGNB_OUTPUTS`` and ``ECGNB_DATA`` move the outputs and data roots (tests point them to temporary
folders). This module is the only one that knows these names.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from ecgnb.config import (git_commit, math_threads, package_versions, pick_device, seed_everything,
                          write_json)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SUCCESS = "_SUCCESS.json"  # written last: its presence marks a complete run
FAILED = "_FAILED.json"
CONFIG = "config.json"
ENCODER = "encoder.pt"
CELLS = "cells"
CELL_RECORD = "cell.json"
CELL_MODEL = "model.pt"
CELL_METRICS = "metrics.json"  # written last in a cell folder: marks a complete cell
# One name per stage: notebook ``NN_<stage>``, module ``ecgnb.<stage>``, grid section and run prefix.
STAGES = ("exploration", "pretraining", "regularization", "finetuning", "embeddings", "results")
NOTEBOOKS = {stage: f"notebooks/{i:02d}_{stage}.ipynb" for i, stage in enumerate(STAGES, 1)}
INTERACTIVE = "interactive"  # the run name of a notebook run by hand or by nbval
NO_ENCODER = "none"  # ``encoder_run`` of the supervised baselines (no encoder)


def outputs_root() -> Path:
    return Path(os.environ.get("ECGNB_OUTPUTS", PROJECT_ROOT / "outputs"))


def data_root() -> Path:
    return Path(os.environ.get("ECGNB_DATA", PROJECT_ROOT / "data"))


def stage_of(notebook: str | Path) -> str:
    """``notebooks/02_pretraining.ipynb`` -> ``pretraining``."""
    stem = Path(notebook).stem
    stage = stem.split("_", 1)[1] if stem[:2].isdigit() and "_" in stem else stem
    if stage not in STAGES:
        raise ValueError(f"{notebook}: not a stage notebook; stages: {list(STAGES)}")
    return stage


def run_folder(name: str) -> Path:
    """The folder of run ``name`` (finished or not)."""
    return outputs_root() / name


def run_output_dir(output_dir: str, stage: str) -> Path:
    """The folder a notebook writes to: ``output_dir`` when set (the runner sets it), else
    ``<outputs>/<stage>/interactive`` for runs by hand and nbval."""
    return Path(output_dir) if output_dir else run_folder(f"{stage}/{INTERACTIVE}")


def is_complete(folder: Path, expected_hash: str | None = None) -> bool:
    """Whether ``folder`` holds a finished run (with parameter hash ``expected_hash`` if given)."""
    marker = Path(folder) / SUCCESS
    if not marker.is_file():
        return False
    if expected_hash is None:
        return True
    return json.loads(marker.read_text()).get("params_hash") == expected_hash


def find_run(name: str) -> Path:
    """The folder of a *finished* run, by run name; a clear error otherwise."""
    folder = run_folder(name)
    if not is_complete(folder):
        status = "failed" if (folder / FAILED).is_file() else "missing or unfinished"
        raise FileNotFoundError(f"run '{name}' is {status} (looked in {folder}); run it first")
    return folder


def find_encoder(name: str) -> Path:
    """The checkpoint of a finished notebook-02/03 run."""
    return find_run(name) / ENCODER


# --------------------------------------------------------------------------- start and finish
def start_stage(config, stage: str, output_dir: str = "") -> Path:
    """First cell of every notebook: resolve the run folder, seed, write ``config.json``.

    ``config`` is the stage's typed dataclass. Stale completion markers are removed first, so a
    re-run is complete only once :func:`finish_stage` has run again.
    """
    out = run_output_dir(output_dir, stage)
    out.mkdir(parents=True, exist_ok=True)
    for marker in (SUCCESS, FAILED):
        (out / marker).unlink(missing_ok=True)
    params = dataclasses.asdict(config)
    seed = params.get("seed")
    if seed is not None:
        seed_everything(seed)
    record = {"stage": stage, "params": params, "seed": seed, "versions": package_versions(),
              "git_commit": git_commit(), "device": str(pick_device(params.get("device"))),
              "torch_threads": math_threads(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(out / CONFIG, record)
    return out


def finish_stage(output_dir: Path, summary: dict | None = None) -> Path:
    """Last cell of every notebook: mark the run complete (written last, atomically)."""
    started = read_json(Path(output_dir) / CONFIG)["started"]
    record = {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "summary": summary or {}}
    return write_json(Path(output_dir) / SUCCESS, record)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def run_params(folder: Path) -> dict:
    """The resolved parameters a run recorded in its ``config.json`` (empty when absent)."""
    record = Path(folder) / CONFIG
    return read_json(record).get("params", {}) if record.is_file() else {}


# --------------------------------------------------------------------------- downstream cells
CELL_NAME = re.compile(r"^(?P<head>[a-z]+)-(?P<mode>[a-z]+)-f(?P<fraction>[0-9.e-]+)-s(?P<seed>\d+)$")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One downstream cell of a notebook-04 run: head (or baseline), mode, seed, label fraction."""

    head: str
    mode: str
    seed: int
    label_fraction: float

    @property
    def name(self) -> str:
        return f"{self.head}-{self.mode}-f{self.label_fraction:g}-s{self.seed}"

    @classmethod
    def parse(cls, name: str) -> "Cell":
        match = CELL_NAME.match(name)
        if match is None:
            raise ValueError(f"cell name '{name}' is not <head>-<mode>-f<fraction>-s<seed>")
        return cls(match["head"], match["mode"], int(match["seed"]), float(match["fraction"]))


def cell_folder(run_dir: Path, cell: Cell | str) -> Path:
    return Path(run_dir) / CELLS / (cell if isinstance(cell, str) else cell.name)


def is_cell_complete(folder: Path) -> bool:
    return (Path(folder) / CELL_METRICS).is_file()


def complete_cells(run_dir: Path) -> list[str]:
    """Sorted names of the complete cells of a notebook-04 run."""
    return sorted(p.parent.name for p in (Path(run_dir) / CELLS).glob(f"*/{CELL_METRICS}"))


def finished_runs(folder: Path) -> list[Path]:
    """Every complete run folder under ``folder`` (recursively), sorted."""
    return sorted(marker.parent for marker in Path(folder).rglob(SUCCESS))
