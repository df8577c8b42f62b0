"""Tables beside the study table: every downstream cell at every label fraction, and what
notebooks 02 and 03 measured about their encoders.

- :func:`cell_table`: one row per (scenario, backbone, head, mode) and per supervised baseline,
  one column per label fraction; each entry is the test metric's mean over seeds with the mean of
  the per-seed 95 % intervals (bootstrap over *source records* of the test split, from each
  cell's ``metrics.json``) and the seed count. Both modes are shown: nothing is selected here.
- :func:`collect_summaries`: the JSON summaries that notebook 02 (``pretraining.json``: linear
  probe of the pretrained encoder vs the same network at its initial weights) and notebook 03
  (``regularization.json``: drift between parent and child, probes of both) write, one row per
  complete run; :func:`probe_table` and :func:`drift_table` make them readable.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ecgnb.paths import SUCCESS
from ecgnb.report import KEYS, in_study_order

CELL_KEYS = KEYS[:4]  # scenario, backbone, head, mode
# Notebook -> the summary it writes (``<stage>.json`` per run, ``<stage>.csv`` per grid).
STAGE_SUMMARIES = {"02_pretraining": "pretraining", "03_regularization": "regularization"}


def cell_table(results: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """``mean [ci_low, ci_high] (n)`` in %, rows = cells, columns = ``f<fraction>``."""
    entries = {}
    ordered = in_study_order(results)  # scenarios as brief 3 lists them, the baselines last
    for key, part in ordered.groupby(list(CELL_KEYS) + ["label_fraction"], sort=False):
        cell = dict(zip(CELL_KEYS + ("label_fraction",), key))
        entries.setdefault(_row_name(cell), {})[f"f{cell['label_fraction']:g}"] = \
            _entry(part, metric)
    frame = pd.DataFrame.from_dict(entries, orient="index").fillna("")
    frame = frame[sorted(frame.columns, key=lambda c: -float(c[1:]))]
    return frame.rename_axis(f"{metric} % (mean over seeds [95 % CI over records] (seeds))")


def _row_name(cell: dict) -> str:
    if cell["mode"] == "supervised":
        return f"supervised {cell['head']}"
    return f"{cell['scenario']} / {cell['backbone']} / {cell['head']} / {cell['mode'].upper()}"


def _entry(part: pd.DataFrame, metric: str) -> str:
    mean = 100 * part[metric].mean()
    low, high = (f"{metric}_ci_low", f"{metric}_ci_high")
    if low in part and part[low].notna().all():
        return (f"{mean:.1f} [{100 * part[low].mean():.1f}, {100 * part[high].mean():.1f}] "
                f"({len(part)})")
    return f"{mean:.1f} ({len(part)})"


# --------------------------------------------------------------------------- notebooks 02, 03
def collect_summaries(folder, filename: str, root=None) -> pd.DataFrame:
    """One row per complete run under ``folder`` that wrote ``filename`` (a JSON summary);
    nested keys are joined with ``_`` (``drift_wesad_ecg_linear_cka``)."""
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent
    rows = []
    for path in sorted(folder.rglob(filename)):
        if (path.parent / SUCCESS).is_file():
            rows.append({"run": path.parent.relative_to(root).as_posix(),
                         **_flatten(json.loads(path.read_text()))})
    return pd.DataFrame(rows)


def _flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def probe_table(pretraining: pd.DataFrame) -> pd.DataFrame:
    """Validation macro-F1 and balanced accuracy (%) of the probe, pretrained vs initial weights."""
    columns = {"probe_pretrained_val_macro_f1": "pretrained macro-F1 %",
               "probe_initial weights_val_macro_f1": "initial weights macro-F1 %",
               "probe_pretrained_val_balanced_accuracy": "pretrained bal. acc. %",
               "probe_initial weights_val_balanced_accuracy": "initial weights bal. acc. %"}
    return _readable(pretraining, ["backbone", "corpus"], columns)


def drift_table(regularization: pd.DataFrame) -> pd.DataFrame:
    """Drift (CKA, mean cosine) on WESAD ECG and target validation windows; probes (%)."""
    columns = {"drift_wesad_ecg_linear_cka": "CKA (WESAD ECG)",
               "drift_wesad_ecg_mean_cosine": "cosine (WESAD ECG)",
               "drift_target_val_linear_cka": "CKA (target val)",
               "drift_target_val_mean_cosine": "cosine (target val)",
               "probe_parent_val_macro_f1": "parent macro-F1 %",
               "probe_child_val_macro_f1": "child macro-F1 %"}
    return _readable(regularization, ["backbone", "scenario"], columns)


def _readable(frame: pd.DataFrame, keys: list[str], columns: dict) -> pd.DataFrame:
    """The named columns renamed; scores ending in % times 100 (1 decimal), others 3 decimals."""
    present = {k: v for k, v in columns.items() if k in frame}
    table = frame.set_index(keys)[list(present)].rename(columns=present).astype(float)
    for name in table.columns:
        table[name] = (100 * table[name]).round(1) if name.endswith("%") else table[name].round(3)
    return table


def encoder_tables(results_csv) -> dict[str, pd.DataFrame]:
    """The probe and drift tables from ``pretraining.csv`` / ``regularization.csv`` beside
    ``results_csv`` (written by ``ecgnb report``), titled; empty when there are none."""
    folder = Path(results_csv).parent if results_csv else None
    tables = {}
    for name, make, title in (
            ("pretraining", probe_table,
             "Did pretraining help? Probe on the target's validation split (notebook 02)"),
            ("regularization", drift_table,
             "What the continuations did: drift and probes (notebook 03)")):
        path = folder / f"{name}.csv" if folder is not None else None
        if path is not None and path.is_file():
            tables[title] = make(pd.read_csv(path))
    return tables
