"""The report of a results table: per recipe the study table, the exact tests, the tables beside
them and ``figures.html`` (notebook 06 calls these; :mod:`ecgnb.report.grid_report` runs the
notebook on a grid).

The metric is the caller's, or macro-AUROC for multi-label cells where it says macro-F1
(:func:`~ecgnb.report.tables.headline_metric`).

- :func:`recipe_reports`: one :class:`RecipeReport` per recipe (study table and comparisons,
  :mod:`ecgnb.report.comparisons`); :func:`write_report` writes them, :func:`report_markdown`
  is ``report.md``, :func:`all_figures` the figures (:mod:`ecgnb.report.figures`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ecgnb.data.scenarios import UNTRAINED
from ecgnb.plots import write_html
from ecgnb.report.collect import code_note, write_csv
from ecgnb.report.comparisons import (StudyTable, best_vs_baseline, compare_to_reference,
                                      comparison_markdown, main_baseline, markdown_table,
                                      pick_fraction, study_table, summarize)
from ecgnb.report.figures import figures
from ecgnb.report.tables import (BASELINE_NAMES, KEYS, REFERENCE, by_recipe, cell_table,
                                 headline_metric, metric_name, recipe_of)


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
    metric = headline_metric(results, metric)
    for recipe, part in by_recipe(results):
        rows = pick_fraction(part, label_fraction)
        reports.append(RecipeReport(
            recipe, study_table(part, metric, label_fraction, n_boot, seed),
            compare_to_reference(rows, metric=metric, n_boot=n_boot, seed=seed),
            best_vs_baseline(rows, baseline=main_baseline(rows), n_boot=n_boot, seed=seed,
                             **_baseline_metrics(metric)),
            compare_to_reference(rows, reference=UNTRAINED, metric=metric, n_boot=n_boot,
                                 seed=seed)))
    return reports


def write_report(results: pd.DataFrame, out_dir, metric: str = "macro_f1",
                 label_fraction: float | None = None, n_boot: int = 10000, seed: int = 0,
                 encoder_tables: dict[str, pd.DataFrame] | None = None) -> dict[str, Path]:
    """Tables (Markdown, CSV, LaTeX), statistics and ``figures.html`` into ``out_dir``, one
    study table per recipe; ``encoder_tables`` (title -> table, from :func:`ecgnb.report.tables.encoder_tables`) are
    appended to ``report.md``."""
    out = Path(out_dir)
    metric = headline_metric(results, metric)
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
    extra = {f"Every cell at every label fraction (test {metric_name(metric)}, both modes)": cells,
             **(encoder_tables or {})}
    (out / "report.md").write_text(report_markdown(reports, results)
                                   + "".join(f"\n## {title}\n\n{markdown_table(frame)}"
                                             for title, frame in extra.items()))
    write_html(all_figures(results, reports, metric), out / "figures.html")
    names = ("report.md", "study_table.md", "study_table.tex", "study_table.csv", "summary.csv",
             "cells.csv", "vs_reference.csv", "vs_baseline.csv", "figures.html")
    return {name: out / name for name in names}


def _baseline_metrics(metric: str) -> dict:
    """The metrics of the best-vs-baseline test: its default (macro-F1, accuracy), or the
    multi-label headline alone."""
    return {"metrics": (metric,)} if metric == "macro_auroc" else {}


def _stack(frames) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    metric = headline_metric(results, metric)
    parts = dict(by_recipe(results))
    if len(reports) == 1:
        return figures(parts[reports[0].recipe], reports[0].table, metric)
    return {f"{name} (recipe: {r.recipe})": fig for r in reports
            for name, fig in figures(parts[r.recipe], r.table, metric).items()}


def report_markdown(reports: list[RecipeReport], results: pd.DataFrame) -> str:
    n_seeds = results.groupby(list(KEYS[:-1]))["seed"].nunique()
    n_pretrain = results["pretrain_seed"].nunique() if "pretrain_seed" in results else 0
    name = ", ".join(sorted({metric_name(r.table.metric) for r in reports})) or "none"
    lines = ["# Results", "",
             f"{len(results)} downstream cells from {results['run'].nunique()} runs; recipe: "
             f"{recipe_of(results)}; downstream seeds per cell: "
             f"{sorted(n_seeds.unique().tolist())}; pretraining seeds: "
             f"{n_pretrain or 'not recorded'}; metric: test {name} (each entry's mode chosen on "
             f"validation {name}).", "",
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
