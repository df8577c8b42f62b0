"""The tidy table of downstream cells, rebuilt from the run folders (``results.csv``).

- :func:`collect_results`: one row per *complete* cell (``cells/<cell>/metrics.json`` matching its
  files) of every *complete* run (:func:`ecgnb.runs.is_complete`) under a folder, rebuilt from
  the files each time; ``code_hash`` says which code produced each row, ``code_change`` what of
  it has changed since (:func:`code_note`), and :func:`collect_warnings` the data warnings runs
  recorded.
- :func:`collect_summaries`: the JSON summaries of notebooks 02 and 03, one row per run.
- :func:`synthetic_results`: a table with a planted structure, for smoke runs and tests.

Layout of ``results.csv``: a row's key is :data:`KEYS` plus ``pretrain_seed`` (the encoder's
pretraining seed; empty for the baselines) and ``recipe`` (study | ecgnb); test metrics
:data:`METRICS`, ``val_<metric>``, ``<metric>_ci_low/_high`` (grouped bootstrap over source
records, this cell), ``<metric>_seed_mean_ci_low/_high`` (the interval of the mean over the seeds
of the cell's run, head and mode: test records and seeds resampled together; a multi-label
cell's of ``macro_auroc``, its metric columns other than macro-AUROC empty), ``n_train``,
``n_train_available``, ``label_fraction_realised`` (the labelled share actually trained on),
``n_test``, ``n_classes`` (of the task), ``best_epoch``, ``run``, ``cell``, ``encoder_run``, ``params_hash``, ``code_hash``,
``code_change``, ``warnings`` (the data warnings of the run), ``wall_s``, ``run_wall_s``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ecgnb.files import atomic_write
from ecgnb import runs
from ecgnb.data.scenarios import SCENARIOS, UNTRAINED
from ecgnb.evaluation.metrics import CI_METRICS, bootstrap_seed_mean_ci
from ecgnb.evaluation.multilabel import is_multilabel_frame
from ecgnb.evaluation.settings import SUPERVISED, training_fields
from ecgnb.report.tables import BACKBONE_ORDER, BASELINE_NAMES, KEYS, LABELS, METRICS, SSL_MODES


SEED_MEAN_N_BOOT = 2000  # resamples of the interval of a cell's mean over seeds
def collect_results(folder, root=None) -> pd.DataFrame:
    """One row per complete cell of every complete run under ``folder`` (see module docstring).

    Run names are paths relative to ``root`` (default: ``folder``'s parent, the outputs root).
    """
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent
    rows = []
    for run in runs.finished_runs(folder):
        record = runs.completion_record(run)
        for cell in runs.complete_cells(run):
            rows.append(_cell_row(runs.cell_folder(run, cell), run.relative_to(root).as_posix(),
                                  record))
    frame = pd.DataFrame(rows)
    return _tidy(_with_seed_mean_ci(frame, root) if len(frame) else frame)


def _cell_row(cell: Path, run_name: str, run_record: dict) -> dict:
    metrics = runs.read_json(cell / runs.CELL_METRICS)
    info = runs.read_json(cell / runs.CELL_RECORD) if (cell / runs.CELL_RECORD).is_file() \
        else metrics.get("cell", {})
    val = metrics.get("val") or metrics.get("val_metrics") or {}
    row = {k: info.get(k) for k in KEYS}
    row.update({m: metrics.get(m) for m in METRICS})
    row.update({f"val_{m}": val.get(m) for m in METRICS})
    for m, (low, high) in (metrics.get("ci") or {}).items():
        row[f"{m}_ci_low"], row[f"{m}_ci_high"] = low, high
    row.update({k: metrics.get(k, info.get(k)) for k in LABELS})
    row["pretrain_seed"] = info.get("pretrain_seed")
    train = metrics.get("train_config") or {}
    row.update({f"train_{k}": train.get(k) for k in training_fields()})
    if "recipe" in info or "recipe" in metrics:
        row["recipe"] = info.get("recipe", metrics.get("recipe"))
    best = metrics.get("best_epoch")
    row.update({"n_test": metrics.get("n_test"),
                "n_classes": _n_classes(info, metrics),
                "best_epoch": best if not isinstance(best, list) else json.dumps(best),
                "run": run_name, "cell": cell.name, "encoder_run": info.get("encoder_run"),
                "recipe": info.get("recipe", "ecgnb"),  # a cell that names none ran ours
                "params_hash": run_record.get("params_hash"),
                "code_hash": (run_record.get("code") or {}).get("source_hash"),
                "code_change": runs.code_change(run_record) or "",
                "warnings": "; ".join(run_record.get("warnings") or []),
                "wall_s": info.get("wall_s"),
                "run_wall_s": run_record.get("wall_s")})
    return row


def _n_classes(info: dict, metrics: dict) -> int | None:
    """The task's classes: recorded in ``cell.json``, else counted from the per-class scores."""
    if info.get("classes"):
        return len(info["classes"])
    if "per_class_f1" in metrics:
        return len(metrics["per_class_f1"])
    return sum(k.startswith("auroc_") for k in metrics) or None


def _with_seed_mean_ci(frame: pd.DataFrame, root: Path,
                       n_boot: int = SEED_MEAN_N_BOOT) -> pd.DataFrame:
    """``<metric>_seed_mean_ci_low/_high`` per (run, head, mode, label fraction): the interval of
    the mean over the group's seeds, from their ``predictions.csv`` (NaN where one is missing)."""
    frame = frame.copy()
    for key, part in frame.groupby(["run", "head", "mode", "label_fraction"], sort=False):
        paths = [root / run / runs.CELLS / cell / runs.CELL_PREDICTIONS
                 for run, cell in zip(part["run"], part["cell"])]
        if not all(p.is_file() for p in paths):
            continue
        predictions = [pd.read_csv(p, dtype={"group": str}) for p in paths]
        for metric in ("macro_auroc",) if is_multilabel_frame(predictions[0]) else CI_METRICS:
            low, high = bootstrap_seed_mean_ci(predictions, metric, n_boot)
            frame.loc[part.index, f"{metric}_seed_mean_ci_low"] = low
            frame.loc[part.index, f"{metric}_seed_mean_ci_high"] = high
    return frame


def code_note(results: pd.DataFrame) -> str | None:
    """A line when some rows were computed by code that has changed since (else None). Runs
    of different backbones load different modules, so their ``code_hash`` differs by design;
    what matters is whether the code each run executed is still the code there is."""
    if "code_change" not in results:
        return None
    old = results[results["code_change"].fillna("").astype(str) != ""]
    if old.empty:
        return None
    first = old.iloc[0]
    return (f"{old['run'].nunique()} run(s) in this table were computed by code that has "
            f"changed since, e.g. {first['run']} ({first['code_change']}); run them again "
            "(see column code_change)")


def collect_warnings(folder, root=None) -> list[tuple[str, str]]:
    """``(run, warning)`` for every data warning a complete run under ``folder`` recorded."""
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent
    return [(run.relative_to(root).as_posix(), message)
            for run in runs.finished_runs(folder)
            for message in (runs.completion_record(run) or {}).get("warnings", [])]


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=list(KEYS) + list(METRICS) + ["val_macro_f1", "run", "cell"])
    frame = frame.sort_values(["run", "cell"], kind="stable").reset_index(drop=True)
    frame["label_fraction"] = frame["label_fraction"].astype(float)
    frame["seed"] = frame["seed"].astype(int)
    for column in ("pretrain_seed",) + LABELS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame \
            else np.nan
    return frame


def write_csv(frame: pd.DataFrame, *paths) -> list[Path]:
    """Write ``frame`` to each path atomically (temp file + rename); never appends."""
    written = []
    for path in map(Path, paths):
        with atomic_write(path, durable=False) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(path)
    return written


def read_results(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}; run `ecgnb report` first")
    return _tidy(pd.read_csv(path))


def synthetic_results(seed: int = 0, n_seeds: int = 5, fractions=(1.0,)) -> pd.DataFrame:
    """A results table in the ``results.csv`` layout with a planted structure (for smoke runs
    and tests): the i-th pretraining scenario of :data:`SCENARIOS` scores i points above "ECG",
    ``untrained`` 10 points below it, fine-tuning 1 point above linear probing, each backbone
    3 points below the previous one; noise sd 3."""
    rng = np.random.default_rng(seed)
    effect = {s: 0.01 * i for i, s in enumerate(s for s in SCENARIOS if s != UNTRAINED)}
    effect[UNTRAINED] = -0.1
    rows = []
    for fraction in fractions:
        for s in SCENARIOS:
            for b_i, backbone in enumerate(BACKBONE_ORDER):
                for head in ("mlp", "fcn"):
                    for mode in SSL_MODES:
                        base = 0.5 + effect[s] - 0.03 * b_i + 0.01 * (mode == "ft") + 0.1 * fraction
                        rows += _synthetic_cells(rng, (s, backbone, head, mode, fraction), base, n_seeds)
        for head in BASELINE_NAMES:
            rows += _synthetic_cells(rng, ("none", SUPERVISED, head, SUPERVISED, fraction),
                                     0.5 + 0.1 * fraction, n_seeds)
    return _tidy(pd.DataFrame(rows))


def _synthetic_cells(rng: np.random.Generator, key: tuple, base: float, n_seeds: int) -> list[dict]:
    rows = []
    for seed in range(n_seeds):
        score = float(np.clip(base + rng.normal(0, 0.03), 0, 1))
        row = dict(zip(KEYS, (*key, seed)))
        row.update({m: float(np.clip(score + rng.normal(0, 0.01), 0, 1)) for m in METRICS})
        row.update({f"val_{m}": float(np.clip(score + rng.normal(0, 0.02), 0, 1)) for m in METRICS})
        row.update({"run": f"synthetic/{key[1]}-{key[0]}", "cell": f"{key[2]}-{key[3]}-s{seed}"})
        rows.append(row)
    return rows


def collect_summaries(folder, filename: str, root=None) -> pd.DataFrame:
    """One row per complete run under ``folder`` that wrote ``filename`` (a JSON summary);
    nested keys are joined with ``_`` (``drift_wesad_ecg_linear_cka``)."""
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent
    rows = [{"run": run.relative_to(root).as_posix(), **_flatten(runs.read_json(run / filename))}
            for run in runs.finished_runs(folder) if (run / filename).is_file()]
    return pd.DataFrame(rows)


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
