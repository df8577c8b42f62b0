"""Tables beside the study table: every downstream cell at every label fraction, and what
notebooks 02 and 03 measured about their encoders.

- :func:`cell_table`: one row per (scenario, backbone, head, mode[, pretraining seed]) and per
  supervised baseline, one column per label fraction (named by the share of training fragments
  realised); each entry is the test metric's mean over seeds with the 95 % interval of that mean
  (test records and seeds resampled together, ``<metric>_seed_mean_ci_*`` of ``results.csv``)
  and the seed count. Both modes are shown: nothing is selected here.
- :func:`by_recipe`, :func:`recipe_of`, :func:`label_line`: what every table names at its top
  or in its caption: the recipe (``not recorded`` when cells do not say), the labelled share.
- :func:`probe_table` and :func:`drift_table`: the summaries that notebook 02 (``pretraining.json``:
  linear probe of the pretrained encoder vs the same network at its initial weights) and notebook
  03 (``regularization.json``: drift between parent and child, probes of both) write, readable.
- :func:`encoder_tables`: those two tables read from the CSV files beside ``results.csv``.
- :func:`headline_metric`: the metric the report leads with (macro-AUROC for multi-label cells),
  :func:`metric_name` its name in sentences, :func:`chance_level` its value at chance.
- :func:`in_study_order`: rows in the order of the study (scenarios as :data:`SCENARIOS` lists them).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ecgnb.data.scenarios import SCENARIOS, UNTRAINED, slug
from ecgnb.evaluation.settings import SUPERVISED

KEYS = ("scenario", "backbone", "head", "mode", "label_fraction", "seed")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auroc")
SSL_MODES = ("lp", "ft")
BACKBONE_ORDER = ("ts2vec", "tstcc", "series2vec")
HEAD_ORDER = ("mlp", "fcn", "linear")
BASELINE_NAMES = {"hinception": "H-InceptionTime", "mlp": "MLP (from scratch)",
                  "fcn": "FCN (from scratch)"}
REFERENCE = "ECG"
CELL_KEYS = KEYS[:4]  # scenario, backbone, head, mode
LABELS = ("n_train", "n_train_available", "label_fraction_realised")  # what a cell trained on
NO_RECIPE = "not recorded"
METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
                "macro_f1": "macro-F1", "weighted_f1": "weighted F1",
                "macro_auroc": "macro-AUROC"}


def headline_metric(results: pd.DataFrame, metric: str = "macro_f1") -> str:
    """``metric``, or macro-AUROC where it is macro-F1 and the cells are multi-label (they
    record macro-AUROC and no macro-F1)."""
    is_multilabel = ("macro_auroc" in results and results["macro_auroc"].notna().any()
                     and ("macro_f1" not in results or results["macro_f1"].isna().all()))
    return "macro_auroc" if metric == "macro_f1" and is_multilabel else metric


def metric_name(metric: str) -> str:
    """How prose names ``metric``: ``macro_auroc`` -> ``macro-AUROC`` (unknown: as given)."""
    return METRIC_NAMES.get(metric, metric)


def chance_level(metric: str, n_classes: int) -> float:
    """A classifier's score at chance: 0.5 for AUROC, else 1/K of the task's K classes."""
    return 0.5 if "auroc" in metric else 1 / n_classes


def by_recipe(results: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``(recipe, rows)`` per recipe, in order of appearance; one ``not recorded`` part when the
    cells do not record their recipe."""
    if "recipe" not in results or results["recipe"].isna().all():
        return [(NO_RECIPE, results)]
    labels = results["recipe"].fillna(NO_RECIPE).astype(str)
    return [(recipe, results[labels == recipe]) for recipe in dict.fromkeys(labels)]


def recipe_of(results: pd.DataFrame) -> str:
    """The recipe of ``results`` (``a, b`` when it mixes several: tables should not)."""
    return ", ".join(recipe for recipe, _ in by_recipe(results))


def label_line(rows: pd.DataFrame) -> str:
    """The labelled training fragments of ``rows`` (one label fraction): requested and realised."""
    if rows.empty:
        return "labelled training fragments: none"
    requested = f"{100 * rows['label_fraction'].iloc[0]:g} % requested"
    realised = rows["label_fraction_realised"] if "label_fraction_realised" in rows else None
    if realised is None or realised.isna().all():
        return f"labelled training fragments: {requested}, realised not recorded"
    n_train = rows["n_train"].dropna().astype(int) if "n_train" in rows else pd.Series([], int)
    span = "" if n_train.empty else f" (n_train {n_train.min()})" \
        if n_train.min() == n_train.max() else f" (n_train {n_train.min()}-{n_train.max()})"
    return f"labelled training fragments: {requested}, {100 * realised.mean():.1f} % realised{span}"


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
    """``mean [interval of the mean] (n)`` in %, rows = cells (with the pretraining seed when
    several were run, with the recipe when several were), columns = label fractions."""
    entries, headers = {}, {}
    metric = headline_metric(results, metric)
    if "pretrain_seed" not in results:
        results = results.assign(pretrain_seed=float("nan"))
    keys = list(CELL_KEYS) + ["pretrain_seed", "label_fraction"]
    many = {"pretrain_seed": _has_many(results, "pretrain_seed"),
            "recipe": len(by_recipe(results)) > 1}
    for recipe, part in by_recipe(results):
        ordered = in_study_order(part)  # scenarios in study order, the baselines last
        for key, cell_rows in ordered.groupby(keys, sort=False, dropna=False):
            cell = dict(zip(keys, key))
            name = _row_name(cell, many["pretrain_seed"]) + (f" ({recipe})" if many["recipe"]
                                                             else "")
            column = f"f{cell['label_fraction']:g}"
            entries.setdefault(name, {})[column] = _entry(cell_rows, metric)
    for fraction, rows in results.groupby("label_fraction"):
        headers[f"f{fraction:g}"] = label_line(rows).split(": ", 1)[1]
    frame = pd.DataFrame.from_dict(entries, orient="index").fillna("")
    frame = frame[sorted(frame.columns, key=lambda c: -float(c[1:]))].rename(columns=headers)
    return frame.rename_axis(f"{metric} % by labelled training fragments (mean over seeds [95 % "
                             "interval of that mean: test records and seeds resampled] (seeds)); "
                             f"recipe: {recipe_of(results)}")


def _has_many(results: pd.DataFrame, column: str) -> bool:
    return column in results and results[column].nunique() > 1


def _row_name(cell: dict, with_pretrain_seed: bool = False) -> str:
    if cell["mode"] == SUPERVISED:
        return f"supervised {cell['head']}"
    name = f"{cell['scenario']} / {cell['backbone']} / {cell['head']} / {cell['mode'].upper()}"
    seed = cell.get("pretrain_seed")
    return name + (f" / p{int(seed)}" if with_pretrain_seed and pd.notna(seed) else "")


def _entry(part: pd.DataFrame, metric: str) -> str:
    mean = 100 * part[metric].mean()
    low, high = (f"{metric}_seed_mean_ci_low", f"{metric}_seed_mean_ci_high")
    if low in part and part[low].notna().all() and part[low].nunique() == 1:
        return (f"{mean:.1f} [{100 * part[low].iloc[0]:.1f}, {100 * part[high].iloc[0]:.1f}] "
                f"({len(part)})")
    return f"{mean:.1f} ({len(part)})"


# --------------------------------------------------------------------------- notebooks 02, 03
def probe_table(pretraining: pd.DataFrame) -> pd.DataFrame:
    """Validation macro-F1 and balanced accuracy (%) of the probe, pretrained vs initial weights
    (a multi-label task: macro-AUROC); an ``untrained`` run (named ``*-untrained``) is its own
    row, both probes alike."""
    if "run" in pretraining:
        untrained = pretraining["run"].astype(str).str.endswith(f"-{slug(UNTRAINED)}")
        pretraining = pretraining.assign(corpus=pretraining["corpus"].where(~untrained, UNTRAINED))
    columns = {"probe_pretrained_val_macro_f1": "pretrained macro-F1 %",
               "probe_initial weights_val_macro_f1": "initial weights macro-F1 %",
               "probe_pretrained_val_balanced_accuracy": "pretrained bal. acc. %",
               "probe_initial weights_val_balanced_accuracy": "initial weights bal. acc. %",
               "probe_pretrained_val_macro_auroc": "pretrained macro-AUROC %",
               "probe_initial weights_val_macro_auroc": "initial weights macro-AUROC %"}
    return _readable(pretraining, ["backbone", "corpus"], columns)


def drift_table(regularization: pd.DataFrame) -> pd.DataFrame:
    """Drift (CKA, mean cosine) on WESAD ECG and target validation windows; probes (%: macro-F1,
    or macro-AUROC for a multi-label task)."""
    columns = {"drift_wesad_ecg_linear_cka": "CKA (WESAD ECG)",
               "drift_wesad_ecg_mean_cosine": "cosine (WESAD ECG)",
               "drift_target_val_linear_cka": "CKA (target val)",
               "drift_target_val_mean_cosine": "cosine (target val)",
               "probe_parent_val_macro_f1": "parent macro-F1 %",
               "probe_child_val_macro_f1": "child macro-F1 %",
               "probe_parent_val_macro_auroc": "parent macro-AUROC %",
               "probe_child_val_macro_auroc": "child macro-AUROC %"}
    return _readable(regularization, ["backbone", "scenario"], columns)


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


def _readable(frame: pd.DataFrame, keys: list[str], columns: dict) -> pd.DataFrame:
    """The named columns renamed; scores ending in % times 100 (1 decimal), others 3 decimals."""
    present = {k: v for k, v in columns.items() if k in frame}
    table = frame.set_index(keys)[list(present)].rename(columns=present).astype(float)
    for name in table.columns:
        table[name] = (100 * table[name]).round(1) if name.endswith("%") else table[name].round(3)
    return table
