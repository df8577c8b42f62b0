"""The study's results: one tidy table of downstream cells, the study table, exact tests, plots.

- :func:`collect_results`: one row per *complete* cell (``cells/<cell>/metrics.json`` matching its
  files) of every *complete* run (:func:`ecgnb.runs.is_complete`) under a folder, rebuilt from
  the files each time; ``code_hash`` says which code produced each row (:func:`code_note` when
  rows mix codes) and :func:`collect_warnings` the data warnings runs recorded.
- :func:`study_table`: macro-F1 mean +/- std over seeds per scenario x (backbone, head); linear
  probing vs fine-tuning chosen per cell on mean *validation* macro-F1 (never test) and marked;
  best per column in bold; the supervised baselines in their own column.
- :func:`compare_to_reference`: each scenario vs "ECG" (and each vs ``untrained``, the same
  network at its initial weights) in the *same* mode, paired by seed, exact
  sign-flip test (:mod:`ecgnb.evaluation.stats`: with n seeds no p below 2/2^n exists, and none is
  shown); :func:`best_vs_baseline`: the best SSL cell vs a supervised baseline, whose seeds are
  unrelated to the SSL seeds: exact *unpaired* permutation test.
- The unit of every test and spread: the downstream seed when one pretraining seed was run (the
  tests then compare pretraining *checkpoints*), the pretraining seed (mean over its downstream
  seeds) when the grid ran several (``pretrain_seeds``: they compare *strategies*).
- Every table is of one recipe (``recipe`` column, when cells record it): :func:`by_recipe`.
- Plots take a table and return a plotly figure.

Layout of ``results.csv``: a row's key is :data:`KEYS` plus ``pretrain_seed`` (the encoder's
pretraining seed; empty for the baselines) and ``recipe`` (study | ecgnb); test metrics
:data:`METRICS`, ``val_<metric>``, ``<metric>_ci_low/_high`` (grouped bootstrap over source
records, this cell), ``<metric>_seed_mean_ci_low/_high`` (the interval of the mean over the seeds
of the cell's run, head and mode: test records and seeds resampled together), ``n_train``,
``n_train_available``, ``label_fraction_realised`` (the labelled share actually trained on),
``n_test``, ``best_epoch``, ``run``, ``cell``, ``encoder_run``, ``params_hash``, ``code_hash``,
``warnings`` (the data warnings of the run), ``wall_s``, ``run_wall_s``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ecgnb import runs
from ecgnb.config import check_ranges
from ecgnb.data.scenarios import SCENARIOS, UNTRAINED
from ecgnb.evaluation.metrics import CI_METRICS, bootstrap_seed_mean_ci
from ecgnb.evaluation.stats import bootstrap_mean_ci, paired_test, unpaired_test
from ecgnb.evaluation.tables import (BACKBONE_ORDER, BASELINE_NAMES, HEAD_ORDER, KEYS, LABELS,
                                     METRICS, NO_RECIPE, REFERENCE, SSL_MODES, SUPERVISED,
                                     by_recipe, cell_table, drift_table, in_study_order,
                                     label_line, probe_table, recipe_of)

# Stage -> the summary its runs write (``<stage>.json`` per run, ``<stage>.csv`` per grid).
STAGE_SUMMARIES = ("pretraining", "regularization")
SEED_MEAN_N_BOOT = 2000  # resamples of the interval of a cell's mean over seeds


@dataclasses.dataclass(frozen=True)
class ResultsConfig:
    """Parameters of notebooks/06_results.ipynb (same names as its parameters cell)."""

    results_csv: str = ""  # empty: a synthetic results table (smoke run)
    metric: str = "macro_f1"
    label_fraction: float | None = None  # None: the largest fraction run
    n_boot: int = 10000
    seed: int = 0

    def __post_init__(self):
        check_ranges(self)


# --------------------------------------------------------------------------- the tidy table
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
    if "recipe" in info or "recipe" in metrics:
        row["recipe"] = info.get("recipe", metrics.get("recipe"))
    best = metrics.get("best_epoch")
    row.update({"n_test": metrics.get("n_test"),
                "best_epoch": best if not isinstance(best, list) else json.dumps(best),
                "run": run_name, "cell": cell.name, "encoder_run": info.get("encoder_run"),
                "recipe": info.get("recipe", "ecgnb"),  # cells before recipes ran ours
                "params_hash": run_record.get("params_hash"),
                "code_hash": (run_record.get("code") or {}).get("source_hash"),
                "warnings": "; ".join(run_record.get("warnings") or []),
                "wall_s": info.get("wall_s"),
                "run_wall_s": run_record.get("wall_s")})
    return row


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
        for metric in CI_METRICS:
            low, high = bootstrap_seed_mean_ci(predictions, metric, n_boot)
            frame.loc[part.index, f"{metric}_seed_mean_ci_low"] = low
            frame.loc[part.index, f"{metric}_seed_mean_ci_high"] = high
    return frame


def code_note(results: pd.DataFrame) -> str | None:
    """A line when the rows were produced by more than one version of the code (else None)."""
    if "code_hash" not in results or results["code_hash"].nunique(dropna=False) <= 1:
        return None
    counts = results.groupby("code_hash", dropna=False)["run"].nunique()
    parts = ", ".join(f"{code}: {n} run(s)" for code, n in counts.items())
    return f"rows come from {len(counts)} versions of the code ({parts}); see column code_hash"


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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
        written.append(path)
    return written


def read_results(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}; run `ecgnb report` first")
    return _tidy(pd.read_csv(path))


def load_results(results_csv: str, out_dir, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """``(results, where from)``: the table at ``results_csv``, or (when empty) a synthetic one
    written to ``out_dir/synthetic_results.csv`` so that a smoke run has something to render."""
    if results_csv:
        return read_results(results_csv), str(results_csv)
    path = Path(out_dir) / "synthetic_results.csv"
    write_csv(synthetic_results(seed), path)
    return read_results(path), f"{path} (synthetic: planted effects, not a result)"


def pick_fraction(results: pd.DataFrame, label_fraction: float | None = None) -> pd.DataFrame:
    """The rows of one label fraction (None: the largest run)."""
    if results.empty:
        return results
    fraction = results["label_fraction"].max() if label_fraction is None else label_fraction
    rows = results[np.isclose(results["label_fraction"], fraction)]
    if rows.empty:
        raise ValueError(f"no results at label fraction {label_fraction}; run: "
                         f"{sorted(results['label_fraction'].unique())}")
    return rows


# --------------------------------------------------------------------------- summaries
def unit_of(rows: pd.DataFrame) -> str:
    """The independent unit of ``rows``: ``pretraining seed`` when several were run, else ``seed``
    (the downstream seed: then every comparison is of one pretraining checkpoint per strategy)."""
    return "pretraining seed" if "pretrain_seed" in rows and rows["pretrain_seed"].nunique() > 1 \
        else "seed"


def unit_scores(rows: pd.DataFrame, metric: str, unit: str) -> pd.Series:
    """``metric`` per unit of one cell's rows: per downstream seed, or per pretraining seed (the
    mean over its downstream seeds; baselines, which have none, stay per seed)."""
    return rows.groupby(_unit_column(rows, unit))[metric].mean()


def _unit_column(rows: pd.DataFrame, unit: str) -> str:
    if unit == "seed" or "pretrain_seed" not in rows or rows["pretrain_seed"].isna().all():
        return "seed"
    return "pretrain_seed"


def summarize(results: pd.DataFrame, metric: str = "macro_f1", n_boot: int = 10000,
              seed: int = 0) -> pd.DataFrame:
    """Per (scenario, backbone, head, mode, label_fraction) of one recipe: mean, std and n over
    units (:func:`unit_of`), the bootstrap 95 % interval of the mean (from 5 units on), the
    mean validation score and the realised label share."""
    _one_recipe(results)
    unit = unit_of(results)
    rows = []
    for key, part in results.groupby(list(KEYS[:-1]), sort=False):
        scores = unit_scores(part, metric, unit)
        low, high = bootstrap_mean_ci(scores, n_boot, seed)
        rows.append({**dict(zip(KEYS[:-1], key)), "metric": metric,
                     "unit": _unit_column(part, unit).replace("pretrain_seed", "pretraining seed"),
                     "mean": scores.mean(),
                     "std": scores.std(ddof=1) if len(scores) > 1 else np.nan,
                     "n": len(scores), "ci_low": low, "ci_high": high,
                     "val_mean": unit_scores(part, f"val_{metric}", unit).mean(),
                     "label_fraction_realised": part["label_fraction_realised"].mean()
                     if "label_fraction_realised" in part else np.nan})
    return pd.DataFrame(rows)


def interval_summary(results: pd.DataFrame, metric: str = "macro_f1", n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """:func:`summarize` with ``ci_low``/``ci_high`` the interval of the mean over seeds with the
    test records and the seeds resampled together (``<metric>_seed_mean_ci_*``, computed by
    :func:`collect_results`; ``interval``: "records and seeds") where the cells have it, else the
    bootstrap over seeds (``interval``: "seeds"; NaN below 5 seeds)."""
    summary = summarize(results, metric, n_boot, seed)
    low, high = f"{metric}_seed_mean_ci_low", f"{metric}_seed_mean_ci_high"
    if summary.empty or low not in results:
        return summary.assign(interval="seeds")
    keys = list(KEYS[:-1])
    cells = results.groupby(keys, sort=False).agg(_low=(low, "mean"), _high=(high, "mean"))
    merged = summary.merge(cells.reset_index(), on=keys, how="left")
    use = merged["_low"].notna() & merged["_high"].notna()
    merged.loc[use, "ci_low"], merged.loc[use, "ci_high"] = merged["_low"], merged["_high"]
    merged["interval"] = np.where(use, "records and seeds", "seeds")
    return merged.drop(columns=["_low", "_high"])


def _one_recipe(results: pd.DataFrame) -> None:
    if len(by_recipe(results)) > 1:
        raise ValueError(f"results of several recipes ({recipe_of(results)}): one table per "
                         "recipe (ecgnb.results.by_recipe)")


def choose_mode(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (scenario, backbone, head, label_fraction) of the SSL rows: the mode with the highest
    mean *validation* score (ties: linear probing), with a ``chosen`` flag on every row."""
    ssl = summary[summary["mode"].isin(SSL_MODES)].copy()
    ssl["_order"] = ssl["mode"].map({m: i for i, m in enumerate(SSL_MODES)})
    ranked = ssl.sort_values(["val_mean", "_order"], ascending=[False, True], kind="stable")
    best = ranked.groupby(["scenario", "backbone", "head", "label_fraction"], sort=False).head(1)
    ssl["chosen"] = ssl.index.isin(best.index)
    return ssl.drop(columns="_order")


def compare_to_reference(results: pd.DataFrame, reference: str = REFERENCE,
                         metric: str = "macro_f1", n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Each scenario against ``reference`` pretraining in the same backbone, head, *mode* and
    fraction, paired by unit (:func:`unit_of`): exact sign-flip test, one row per comparison.
    ``untrained`` (initial weights) is compared only when it is the reference."""
    _one_recipe(results)
    ssl = results[results["mode"].isin(SSL_MODES)]
    unit = unit_of(ssl)
    cells = dict(list(ssl.groupby(list(KEYS[:-1]), sort=False)))
    rows = []
    for key, part in cells.items():
        base = cells.get((reference, *key[1:]))
        if key[0] == reference or base is None or (key[0] == UNTRAINED != reference):
            continue
        a, b = unit_scores(part, metric, unit), unit_scores(base, metric, unit)
        common = a.index.intersection(b.index)
        if len(common) == 0:
            continue
        rows.append({**dict(zip(KEYS[:-1], key)), "reference": reference, "metric": metric,
                     "unit": unit, "mean": a[common].mean(), "reference_mean": b[common].mean(),
                     **paired_test(a[common], b[common], n_boot, seed)})
    return _with_note(in_study_order(pd.DataFrame(rows)))


def best_vs_baseline(results: pd.DataFrame, baseline: str = "hinception",
                     metrics=("macro_f1", "accuracy"), n_boot: int = 10000,
                     seed: int = 0) -> pd.DataFrame:
    """The best SSL cell (highest mean validation macro-F1) against ``baseline``. Their seeds
    are unrelated (seed i of one is no partner of seed i of the other): exact unpaired
    permutation test of the difference of means."""
    _one_recipe(results)
    ssl = results[results["mode"].isin(SSL_MODES)]
    sup = results[(results["mode"] == SUPERVISED) & (results["head"] == baseline)]
    if ssl.empty or sup.empty:
        return _with_note(pd.DataFrame())
    best_key = ssl.groupby(list(KEYS[:-1]))["val_macro_f1"].mean().idxmax()
    best = ssl.set_index(list(KEYS[:-1])).loc[[best_key]]
    unit = unit_of(best)
    rows = []
    for metric in metrics:
        a, b = unit_scores(best, metric, unit), unit_scores(sup, metric, "seed")
        rows.append({**dict(zip(KEYS[:-1], best_key)), "baseline": BASELINE_NAMES.get(baseline, baseline),
                     "metric": metric, "unit": unit, "mean": a.mean(), "baseline_mean": b.mean(),
                     **unpaired_test(a, b, seed)})
    return _with_note(pd.DataFrame(rows))


def main_baseline(results: pd.DataFrame) -> str:
    """The supervised baseline to compare the best SSL cell with: H-InceptionTime (the study's),
    else the first of :data:`BASELINE_NAMES` that was run."""
    run = set(results.loc[results["mode"] == SUPERVISED, "head"])
    return next((b for b in BASELINE_NAMES if b in run), "hinception")


def _with_note(frame: pd.DataFrame) -> pd.DataFrame:
    if not frame.empty:
        frame["note"] = [f"{test}, n={n}: smallest attainable p = {p_min:.3g}"
                         for test, n, p_min in zip(frame["test"], frame["n"], frame["p_min"])]
    return frame


# --------------------------------------------------------------------------- the study table
@dataclasses.dataclass
class StudyTable:
    """The study's table of one recipe and label fraction, in long form: one entry per (row,
    column) with its numbers and marks.

    ``entries`` columns: row, column, mean, std, n, mode (chosen on validation; ``supervised``
    for baselines), val_mean, p_vs_reference (exact sign-flip test vs the reference in the
    entry's mode), p_min, versus (the reference cell compared, where the reference entry shown
    is in the other mode), is_best (per column, on the shown mean).
    """

    entries: pd.DataFrame
    rows: list[str]
    columns: list[str]
    metric: str
    label_fraction: float
    recipe: str = NO_RECIPE
    labels: str = ""  # the labelled training fragments, requested and realised
    unit: str = "seed"

    def text(self, style: str = "markdown") -> pd.DataFrame:
        """The table as strings, ``style`` markdown | latex | plain."""
        grid = pd.DataFrame("", index=self.rows, columns=self.columns)
        for e in self.entries.itertuples():
            grid.loc[e.row, e.column] = _format_entry(e, style)
        return grid

    def to_markdown(self) -> str:
        table = markdown_table(self.text("markdown"), self.caption())
        return f"**recipe: {self.recipe}**\n\n{table}"

    def to_latex(self) -> str:
        return _latex(self.text("latex"), self.caption())

    def caption(self) -> str:
        p_min = sorted({f"{p:.3g}" for p in self.entries["p_min"].dropna()})
        floor = f"; smallest attainable p: {', '.join(p_min)}" if p_min else ""
        units = ("seeds (downstream training only: one pretraining checkpoint per scenario and "
                 "backbone, one data split, so p compares checkpoints, not strategies)"
                 if self.unit == "seed" else
                 "pretraining seeds (each the mean over its downstream seeds; one data split)")
        return (f"recipe: {self.recipe}. {self.metric} (%) mean ± std over {units}; "
                f"{self.labels}. (LP)/(FT): mode chosen on mean validation score; bold: best per "
                f"column; p: exact two-sided sign-flip test of the mean difference vs {REFERENCE} "
                f"in the same backbone, head and mode as the entry, paired by {self.unit}{floor}; "
                f"a trailing 'vs LP <mean>' names the {REFERENCE} cell compared where the "
                f"{REFERENCE} entry shown is in the other mode.")


def study_table(results: pd.DataFrame, metric: str = "macro_f1",
                label_fraction: float | None = None,
                n_boot: int = 1000, seed: int = 0) -> StudyTable:
    """Build the :class:`StudyTable` of one label fraction from ``results`` (one recipe)."""
    rows_ = pick_fraction(results, label_fraction)
    fraction = float(rows_["label_fraction"].iloc[0]) if len(rows_) else float("nan")
    summary = summarize(rows_, metric, n_boot, seed)
    ssl = choose_mode(summary) if not summary.empty else summary
    chosen = ssl[ssl["chosen"]] if not ssl.empty else ssl
    tests = compare_to_reference(rows_, metric=metric, n_boot=n_boot, seed=seed)
    shown = {(r.backbone, r.head): r.mode for r in chosen.itertuples() if r.scenario == REFERENCE}
    entries = [_ssl_entry(r, tests, shown) for r in chosen.itertuples()]
    entries += [_baseline_entry(r) for r in summary.itertuples() if r.mode == SUPERVISED]
    entries = pd.DataFrame(entries, columns=["row", "column", "mean", "std", "n", "mode",
                                             "val_mean", "p_vs_reference", "p_min", "versus"])
    entries["is_best"] = entries["mean"] == entries.groupby("column")["mean"].transform("max")
    return StudyTable(entries, _row_order(entries), _column_order(entries), metric, fraction,
                      recipe_of(rows_), label_line(rows_), unit_of(rows_))


def _ssl_entry(r, tests: pd.DataFrame, shown: dict) -> dict:
    p = p_min = float("nan")
    versus = ""
    if not tests.empty:
        hit = tests[(tests["scenario"] == r.scenario) & (tests["backbone"] == r.backbone)
                    & (tests["head"] == r.head) & (tests["mode"] == r.mode)]
        if len(hit):
            p, p_min = float(hit["p"].iloc[0]), float(hit["p_min"].iloc[0])
            if shown.get((r.backbone, r.head), r.mode) != r.mode:
                versus = f"{r.mode.upper()} {100 * hit['reference_mean'].iloc[0]:.1f}"
    return {"row": r.scenario, "column": f"{r.backbone} / {r.head}", "mean": r.mean, "std": r.std,
            "n": r.n, "mode": r.mode, "val_mean": r.val_mean, "p_vs_reference": p,
            "p_min": p_min, "versus": versus}


def _baseline_entry(r) -> dict:
    return {"row": BASELINE_NAMES.get(r.head, r.head), "column": SUPERVISED, "mean": r.mean,
            "std": r.std, "n": r.n, "mode": SUPERVISED, "val_mean": r.val_mean,
            "p_vs_reference": float("nan"), "p_min": float("nan"), "versus": ""}


def _row_order(entries: pd.DataFrame) -> list[str]:
    known = list(SCENARIOS) + list(BASELINE_NAMES.values())
    present = list(dict.fromkeys(entries["row"]))
    return [r for r in known if r in present] + [r for r in present if r not in known]


def _column_order(entries: pd.DataFrame) -> list[str]:
    def key(column: str):
        if column == SUPERVISED:
            return (len(BACKBONE_ORDER) + 1, 0, column)
        backbone, head = column.split(" / ")
        return (_index(BACKBONE_ORDER, backbone), _index(HEAD_ORDER, head), column)
    return sorted(dict.fromkeys(entries["column"]), key=key)


def _index(order, value) -> int:
    return order.index(value) if value in order else len(order)


def _format_entry(e, style: str) -> str:
    pm = {"latex": r" $\pm$ "}.get(style, " ± ")
    value = f"{100 * e.mean:.1f}" + ("" if np.isnan(e.std) else f"{pm}{100 * e.std:.1f}")
    if e.is_best:
        value = {"markdown": f"**{value}**", "latex": rf"\textbf{{{value}}}"}.get(style, value + " *")
    mode = "" if e.mode == SUPERVISED else e.mode.upper()
    if mode:
        value += rf"\textsuperscript{{{mode}}}" if style == "latex" else f" ({mode})"
    if not np.isnan(e.p_vs_reference):
        value += f" p={e.p_vs_reference:.3g}" + (f" vs {e.versus}" if e.versus else "")
    return value


def markdown_table(frame: pd.DataFrame, caption: str = "") -> str:
    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        name = " / ".join(map(str, index)) if isinstance(index, tuple) else str(index)
        lines.append("| " + " | ".join([name] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + (f"\n\n{caption}\n" if caption else "\n")


def _latex(frame: pd.DataFrame, caption: str = "") -> str:
    escape = {"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "±": r"$\pm$"}
    def esc(text: str) -> str:
        return "".join(escape.get(ch, ch) for ch in str(text))
    lines = [r"\begin{table}", r"\centering", rf"\caption{{{esc(caption)}}}",
             r"\begin{tabular}{l" + "c" * len(frame.columns) + "}", r"\hline",
             " & ".join([""] + [esc(c) for c in frame.columns]) + r" \\", r"\hline"]
    for index, row in frame.iterrows():
        lines.append(" & ".join([esc(index)] + [str(v) for v in row]) + r" \\")
    return "\n".join(lines + [r"\hline", r"\end{tabular}", r"\end{table}"]) + "\n"


def comparison_markdown(frame: pd.DataFrame) -> str:
    """A comparison table (reference or baseline) as Markdown: means in %, each p beside the
    smallest p its design allows (``p_min``)."""
    if frame.empty:
        return "(no comparison available)\n"
    shown = frame.drop(columns=[c for c in ("note", "reference", "recipe") if c in frame])
    for column in ("mean", "reference_mean", "baseline_mean", "mean_diff", "diff_ci_low",
                   "diff_ci_high"):
        if column in shown:
            shown[column] = (100 * shown[column]).map(
                lambda v: "–" if np.isnan(v) else f"{v:.1f}")
    for column in ("p", "p_min"):
        shown[column] = shown[column].map("{:.3g}".format)
    return markdown_table(shown.set_index(shown.columns[0]))


# --------------------------------------------------------------------------- plots
def table_heatmap(table: StudyTable) -> go.Figure:
    """The study table as a heatmap of means (text: mean ± std and the chosen mode)."""
    z = pd.DataFrame(np.nan, index=table.rows, columns=table.columns)
    for e in table.entries.itertuples():
        z.loc[e.row, e.column] = 100 * e.mean
    text = table.text("plain")
    fig = go.Figure(go.Heatmap(z=z.to_numpy(), x=table.columns, y=table.rows, text=text.to_numpy(),
                               texttemplate="%{text}", colorscale="Viridis",
                               colorbar=dict(title=f"{table.metric} %")))
    fig.update_layout(title=f"recipe: {table.recipe} · {table.metric} per scenario and backbone / "
                      f"head<br><sup>{table.labels}</sup>", height=110 + 45 * len(table.rows),
                      yaxis=dict(autorange="reversed"))
    return fig


def label_efficiency(results: pd.DataFrame, metric: str = "macro_f1") -> go.Figure | None:
    """Mean ``metric`` against the *realised* share of labelled training fragments per scenario x
    backbone (head and mode chosen on validation per fraction); ``None`` for a single fraction."""
    if results["label_fraction"].nunique() < 2:
        return None
    summary = interval_summary(results, metric, n_boot=200)
    realised = summary["label_fraction_realised"].notna().all()
    summary["x"] = 100 * summary["label_fraction_realised" if realised else "label_fraction"]
    ssl = summary[summary["mode"].isin(SSL_MODES)]
    best = ssl.loc[ssl.groupby(["scenario", "backbone", "label_fraction"])["val_mean"].idxmax()]
    fig = go.Figure()
    for (scenario, backbone), part in best.groupby(["scenario", "backbone"], sort=False):
        part = part.sort_values("x")
        fig.add_trace(go.Scatter(x=part["x"], y=100 * part["mean"],
                                 error_y=dict(type="data", symmetric=False,
                                              array=100 * (part["ci_high"] - part["mean"]),
                                              arrayminus=100 * (part["mean"] - part["ci_low"])),
                                 mode="lines+markers", name=f"{scenario} · {backbone}"))
    for head, part in summary[summary["mode"] == SUPERVISED].groupby("head"):
        part = part.sort_values("x")
        fig.add_trace(go.Scatter(x=part["x"], y=100 * part["mean"], mode="lines",
                                 line=dict(dash="dash"), name=BASELINE_NAMES.get(head, head)))
    axis = "labelled training fragments (% realised)" if realised else \
        "labelled training fragments (% requested; realised not recorded)"
    fig.update_layout(title=f"recipe: {recipe_of(results)} · label efficiency: {metric} vs "
                      "labelled training fragments (95 % intervals of the mean over seeds)",
                      height=450, xaxis_title=axis,
                      yaxis_title=f"{metric} %")
    return fig


def scenario_boxes(results: pd.DataFrame, metric: str = "macro_f1") -> go.Figure:
    """Per scenario, the per-seed scores of the validation-chosen mode, one box per backbone."""
    rows = pick_fraction(results)
    chosen = choose_mode(summarize(rows, metric, n_boot=200))
    keys = ["scenario", "backbone", "head", "mode"]
    kept = rows.merge(chosen[chosen["chosen"]][keys], on=keys)
    order = [s for s in SCENARIOS if s in set(kept["scenario"])]
    fig = go.Figure()
    for backbone, part in kept.groupby("backbone", sort=False):
        fig.add_trace(go.Box(x=part["scenario"], y=100 * part[metric], name=backbone,
                             boxpoints="all", jitter=0.3))
    for head, part in rows[rows["mode"] == SUPERVISED].groupby("head"):
        fig.add_trace(go.Box(x=[BASELINE_NAMES.get(head, head)] * len(part), y=100 * part[metric],
                             name=BASELINE_NAMES.get(head, head), boxpoints="all"))
    fig.update_layout(boxmode="group", title=f"recipe: {recipe_of(rows)} · {metric} over seeds "
                      f"per scenario (mode chosen on validation)<br><sup>{label_line(rows)}</sup>",
                      height=470, yaxis_title=f"{metric} %",
                      xaxis=dict(categoryorder="array", categoryarray=order))
    return fig


# --------------------------------------------------------------------------- the report
@dataclasses.dataclass
class RecipeReport:
    """The study table and the comparisons of one recipe."""

    recipe: str
    table: StudyTable
    versus_ref: pd.DataFrame
    versus_base: pd.DataFrame
    versus_untrained: pd.DataFrame  # each scenario vs the untrained network (empty: not run)


def recipe_reports(results: pd.DataFrame, metric: str = "macro_f1",
                   label_fraction: float | None = None, n_boot: int = 10000,
                   seed: int = 0) -> list[RecipeReport]:
    """One :class:`RecipeReport` per recipe of ``results`` (one ``not recorded`` when cells do
    not record their recipe)."""
    reports = []
    for recipe, part in by_recipe(results):
        rows = pick_fraction(part, label_fraction)
        reports.append(RecipeReport(
            recipe, study_table(part, metric, label_fraction, n_boot, seed),
            compare_to_reference(rows, metric=metric, n_boot=n_boot, seed=seed),
            best_vs_baseline(rows, baseline=main_baseline(rows), n_boot=n_boot, seed=seed),
            compare_to_reference(rows, reference=UNTRAINED, metric=metric, n_boot=n_boot,
                                 seed=seed)))
    return reports


def write_report(results: pd.DataFrame, out_dir, metric: str = "macro_f1",
                 label_fraction: float | None = None, n_boot: int = 10000, seed: int = 0,
                 encoder_tables: dict[str, pd.DataFrame] | None = None) -> dict[str, Path]:
    """Tables (Markdown, CSV, LaTeX), statistics and ``figures.html`` into ``out_dir``, one
    study table per recipe; ``encoder_tables`` (title -> table, from :func:`encoder_tables`) are
    appended to ``report.md``."""
    from ecgnb.plots import write_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reports = recipe_reports(results, metric, label_fraction, n_boot, seed)
    (out / "study_table.md").write_text("\n".join(r.table.to_markdown() for r in reports))
    (out / "study_table.tex").write_text("\n".join(r.table.to_latex() for r in reports))
    write_csv(_stack(r.table.text("plain").rename_axis("scenario").reset_index() for r in reports),
              out / "study_table.csv")
    write_csv(_stack(summarize(part, metric, n_boot, seed).assign(recipe=recipe)
                     for recipe, part in by_recipe(results)), out / "summary.csv")
    write_csv(_stack(r.versus_ref.assign(recipe=r.recipe) for r in reports),
              out / "vs_reference.csv")
    write_csv(_stack(r.versus_base.assign(recipe=r.recipe) for r in reports),
              out / "vs_baseline.csv")
    untrained = _stack(r.versus_untrained.assign(recipe=r.recipe) for r in reports)
    if not untrained.empty:
        write_csv(untrained, out / "vs_untrained.csv")
    cells = cell_table(results, metric)
    write_csv(cells.reset_index(), out / "cells.csv")
    extra = {f"Every cell at every label fraction ({metric}, both modes)": cells,
             **(encoder_tables or {})}
    (out / "report.md").write_text(report_markdown(reports, results)
                                   + "".join(f"\n## {title}\n\n{markdown_table(frame)}"
                                             for title, frame in extra.items()))
    write_html(all_figures(results, reports, metric), out / "figures.html")
    names = ("report.md", "study_table.md", "study_table.tex", "study_table.csv", "summary.csv",
             "cells.csv", "vs_reference.csv", "vs_baseline.csv", "figures.html")
    return {name: out / name for name in names}


def _stack(frames) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def figures(results: pd.DataFrame, table: StudyTable, metric: str = "macro_f1") -> dict:
    """The figures of one recipe's ``results`` and its study table."""
    figs = {"study table": table_heatmap(table), "per-scenario scores": scenario_boxes(results, metric)}
    curve = label_efficiency(results, metric)
    if curve is not None:
        figs["label efficiency"] = curve
    return figs


def report_notes(results: pd.DataFrame) -> list[str]:
    """What a reader must know before the numbers: mixed code versions, data warnings."""
    notes = [code_note(results)]
    if "warnings" in results:
        for run, text in results.drop_duplicates("run")[["run", "warnings"]].to_numpy():
            notes += [f"{run}: {w}" for w in str(text).split("; ") if text == text and text]
    return [n for n in notes if n]


def all_figures(results: pd.DataFrame, reports: list[RecipeReport],
                metric: str = "macro_f1") -> dict:
    """:func:`figures` per recipe, titled by it when there are several."""
    parts = dict(by_recipe(results))
    if len(reports) == 1:
        return figures(parts[reports[0].recipe], reports[0].table, metric)
    return {f"{name} (recipe: {r.recipe})": fig for r in reports
            for name, fig in figures(parts[r.recipe], r.table, metric).items()}


def report_markdown(reports: list[RecipeReport], results: pd.DataFrame) -> str:
    n_seeds = results.groupby(list(KEYS[:-1]))["seed"].nunique()
    n_pretrain = results["pretrain_seed"].nunique() if "pretrain_seed" in results else 0
    lines = ["# Results", "",
             f"{len(results)} downstream cells from {results['run'].nunique()} runs; recipe: "
             f"{recipe_of(results)}; downstream seeds per cell: "
             f"{sorted(n_seeds.unique().tolist())}; pretraining seeds: "
             f"{n_pretrain or 'not recorded'}.", "",
             _design_note(n_pretrain), "",
             *[f"**Note:** {line}\n" for line in report_notes(results)]]
    for r in reports:
        unit = r.table.unit
        untrained = [] if r.versus_untrained.empty else [
            f"### Pretrained vs the same network {UNTRAINED} (initial weights; recipe: "
            f"{r.recipe}; exact sign-flip test, paired by {unit})", "",
            comparison_markdown(r.versus_untrained)]
        lines += [f"## The study table (recipe: {r.recipe})", "", r.table.to_markdown(),
                  *untrained,
                  f"### Each scenario vs {REFERENCE} in the same mode (recipe: {r.recipe}; exact "
                  f"sign-flip test, paired by {unit})", "", comparison_markdown(r.versus_ref),
                  f"### Best SSL cell (chosen on validation) vs {_baseline_name(r.versus_base)} "
                  f"(recipe: {r.recipe}; exact permutation test, unpaired)", "",
                  comparison_markdown(r.versus_base)]
    lines.append(
        "Tests: exact two-sided permutation tests (they assume only that, with no true "
        "difference, the signs of the paired differences, or the group labels, are exchangeable). "
        "Against ECG, the sign-flip test of the paired mean difference (pairs: the same seed, so "
        "the same label subset and head initialisation, and the same test split); with n pairs "
        "its smallest possible p is 2/2^n (0.5 at 2 seeds, 0.25 at 3, 0.0625 at 5), so no p "
        "below 0.05 exists under 6 seeds, and none is printed: `p_min` stands beside every p. "
        "Against H-InceptionTime the seeds are unrelated, so the test is unpaired (the "
        "difference of means over every split of the pooled seeds; 5 + 5 seeds: smallest p "
        "0.0079). Intervals: the bootstrap interval of a mean (or of a paired difference) over "
        "seeds is shown from 5 seeds on (–: fewer); the cell table's interval is that of the "
        "mean over seeds, the test records and the seeds resampled together.")
    return "\n".join(lines) + "\n"


def _design_note(n_pretrain: int) -> str:
    if n_pretrain > 1:
        return (f"Design: {n_pretrain} pretraining seeds, one data split; every test and spread "
                "takes the pretraining seed as its unit (the mean over its downstream seeds), so "
                "the comparisons are of pretraining strategies.")
    return ("Design: the seeds vary the downstream training only (label subset, head "
            "initialisation, batches): one pretraining run per scenario and backbone, one data "
            "split. The tests compare these pretrained checkpoints, not the strategies; "
            "`pretrain_seeds` in a grid repeats the pretraining to compare strategies.")


def _baseline_name(versus_base: pd.DataFrame) -> str:
    return versus_base["baseline"].iloc[0] if not versus_base.empty else BASELINE_NAMES["hinception"]


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


# --------------------------------------------------------------------------- notebooks 02, 03 summaries
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
