"""Tables beside the study table: every downstream cell at every label fraction, and what
notebooks 02 and 03 measured about their encoders.

- :func:`cell_table`: one row per (scenario, backbone, head, mode) and per supervised baseline,
  one column per label fraction; each entry is the test metric's mean over seeds with the mean of
  the per-seed 95 % intervals (bootstrap over *source records* of the test split, from each
  cell's ``metrics.json``) and the seed count. Both modes are shown: nothing is selected here.
- :func:`probe_table` and :func:`drift_table`: the summaries that notebook 02 (``pretraining.json``:
  linear probe of the pretrained encoder vs the same network at its initial weights) and notebook
  03 (``regularization.json``: drift between parent and child, probes of both) write, readable.
- :func:`in_study_order`: rows in the order of the study (scenarios as brief 3 lists them).
"""
from __future__ import annotations

import pandas as pd

from ecgnb.data.scenarios import SCENARIOS, UNTRAINED, slug

KEYS = ("scenario", "backbone", "head", "mode", "label_fraction", "seed")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auroc")
SSL_MODES = ("lp", "ft")
SUPERVISED = "supervised"
BACKBONE_ORDER = ("ts2vec", "tstcc", "series2vec")
HEAD_ORDER = ("mlp", "fcn", "linear")
BASELINE_NAMES = {"hinception": "H-InceptionTime", "mlp": "MLP (from scratch)",
                  "fcn": "FCN (from scratch)"}
REFERENCE = "ECG"
CELL_KEYS = KEYS[:4]  # scenario, backbone, head, mode


def in_study_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by scenario (study order), backbone, head, mode, label fraction."""
    if frame.empty:
        return frame
    order = {"scenario": list(SCENARIOS), "backbone": list(BACKBONE_ORDER),
             "head": list(HEAD_ORDER), "mode": list(SSL_MODES)}
    keys = {k: frame[k].map(lambda v, o=o: o.index(v) if v in o else len(o))
            for k, o in order.items()}
    return frame.assign(**{f"_{k}": v for k, v in keys.items()}).sort_values(
        [f"_{k}" for k in keys] + ["label_fraction"], kind="stable").drop(
        columns=[f"_{k}" for k in keys]).reset_index(drop=True)



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
def probe_table(pretraining: pd.DataFrame) -> pd.DataFrame:
    """Validation macro-F1 and balanced accuracy (%) of the probe, pretrained vs initial weights;
    an ``untrained`` run (named ``*-untrained``) is its own row, both probes alike."""
    if "run" in pretraining:
        untrained = pretraining["run"].astype(str).str.endswith(f"-{slug(UNTRAINED)}")
        pretraining = pretraining.assign(corpus=pretraining["corpus"].where(~untrained, UNTRAINED))
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
