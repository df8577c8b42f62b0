"""The study's comparisons of a results table (the ``results.csv`` layout of :mod:`ecgnb.report.collect`).

- :func:`study_table`: the metric's mean +/- std over seeds (macro-F1; macro-AUROC for a
  multi-label task) per scenario x (backbone, head); linear probing vs fine-tuning chosen per
  cell on the mean *validation* score of that metric (never test) and marked;
  best per column in bold; the supervised baselines in their own column.
- :func:`compare_to_reference`: each scenario vs "ECG" (and each vs ``untrained``, the same
  network at its initial weights) in the *same* mode, paired by seed, exact sign-flip test
  (:mod:`ecgnb.report.stats`: with n seeds no p below 2/2^n exists, and none is shown);
  :func:`best_vs_baseline`: the best SSL cell vs a supervised baseline, whose seeds are unrelated
  to the SSL seeds: exact *unpaired* permutation test.
- The unit of every test and spread: the downstream seed when one pretraining seed was run (the
  tests then compare pretraining *checkpoints*), the pretraining seed (mean over its downstream
  seeds) when the grid ran several (``pretrain_seeds``: they compare *strategies*).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ecgnb.data.scenarios import SCENARIOS, UNTRAINED
from ecgnb.evaluation.settings import SUPERVISED
from ecgnb.report.stats import bootstrap_mean_ci, paired_test, unpaired_test
from ecgnb.report.tables import (BACKBONE_ORDER, BASELINE_NAMES, HEAD_ORDER, KEYS, NO_RECIPE,
                                 REFERENCE, SSL_MODES, by_recipe, in_study_order, label_line,
                                 metric_name, recipe_of)


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
                         "recipe (ecgnb.report.tables.by_recipe)")


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
    """The best SSL cell (highest mean validation macro-F1; macro-AUROC when ``metrics`` holds
    it) against ``baseline``. Their seeds
    are unrelated (seed i of one is no partner of seed i of the other): exact unpaired
    permutation test of the difference of means."""
    _one_recipe(results)
    ssl = results[results["mode"].isin(SSL_MODES)]
    sup = results[(results["mode"] == SUPERVISED) & (results["head"] == baseline)]
    if ssl.empty or sup.empty:
        return _with_note(pd.DataFrame())
    select = "val_macro_auroc" if "macro_auroc" in metrics else "val_macro_f1"
    best_key = ssl.groupby(list(KEYS[:-1]))[select].mean().idxmax()
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
        name = metric_name(self.metric)
        return (f"recipe: {self.recipe}. {name} (%) mean ± std over {units}; {self.labels}. "
                f"(LP)/(FT): mode chosen on mean validation {name}; bold: best per "
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
