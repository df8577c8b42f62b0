"""The study's results: one tidy table of downstream cells, the study table, paired statistics, plots.

- :func:`collect_results`: one row per *complete* cell (``cells/<cell>/metrics.json``) of every
  *complete* run (``_SUCCESS.json``) under a folder, rebuilt from the files each time.
- :func:`study_table`: macro-F1 mean +/- std over seeds per scenario x (backbone, head); linear
  probing vs fine-tuning chosen per cell on mean *validation* macro-F1 (never test) and marked;
  best per column in bold; the supervised baselines in their own column.
- :func:`compare_to_reference` / :func:`best_vs_baseline`: paired by seed, Wilcoxon signed-rank
  (exact for small n: with 5 seeds the smallest two-sided p is 2/2^5 = 0.0625) and a paired
  bootstrap of the mean difference (95 % interval, two-sided p).
- Plots take a table and return a plotly figure.

Layout of ``results.csv``: :data:`KEYS`, test metrics :data:`METRICS`, ``val_<metric>``,
``<metric>_ci_low/_high`` (grouped bootstrap over source records, per cell), ``n_test``,
``best_epoch``, ``run``, ``cell``, ``encoder_run``, ``recipe`` (study | ecgnb), ``params_hash``, ``wall_s``, ``run_wall_s``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ecgnb import runs
from ecgnb.data.scenarios import SCENARIOS
from ecgnb.evaluation.stats import bootstrap_mean_ci, paired_test, smallest_wilcoxon_p
from ecgnb.evaluation.tables import (BACKBONE_ORDER, BASELINE_NAMES, HEAD_ORDER, KEYS, METRICS,
                                     REFERENCE, SSL_MODES, SUPERVISED, cell_table, drift_table,
                                     in_study_order, probe_table)

# Stage -> the summary its runs write (``<stage>.json`` per run, ``<stage>.csv`` per grid).
STAGE_SUMMARIES = ("pretraining", "regularization")

@dataclasses.dataclass(frozen=True)
class ResultsConfig:
    """Parameters of notebooks/06_results.ipynb (same names as its parameters cell)."""

    results_csv: str = ""  # empty: a synthetic results table (smoke run)
    metric: str = "macro_f1"
    label_fraction: float | None = None  # None: the largest fraction run
    n_boot: int = 10000
    seed: int = 0


# --------------------------------------------------------------------------- the tidy table
def collect_results(folder, root=None) -> pd.DataFrame:
    """One row per complete cell of every complete run under ``folder`` (see module docstring).

    Run names are paths relative to ``root`` (default: ``folder``'s parent, the outputs root).
    """
    folder = Path(folder)
    root = Path(root) if root is not None else folder.parent
    rows = []
    for run in runs.finished_runs(folder):
        record = runs.read_json(run / runs.SUCCESS)
        for cell in runs.complete_cells(run):
            rows.append(_cell_row(runs.cell_folder(run, cell), run.relative_to(root).as_posix(),
                                  record))
    return _tidy(pd.DataFrame(rows))


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
    best = metrics.get("best_epoch")
    row.update({"n_test": metrics.get("n_test"),
                "best_epoch": best if not isinstance(best, list) else json.dumps(best),
                "run": run_name, "cell": cell.name, "encoder_run": info.get("encoder_run"),
                "recipe": info.get("recipe", "ecgnb"),  # cells before recipes ran ours
                "params_hash": run_record.get("params_hash"), "wall_s": info.get("wall_s"),
                "run_wall_s": run_record.get("wall_s")})
    return row


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=list(KEYS) + list(METRICS) + ["val_macro_f1", "run", "cell"])
    frame = frame.sort_values(["run", "cell"], kind="stable").reset_index(drop=True)
    frame["label_fraction"] = frame["label_fraction"].astype(float)
    frame["seed"] = frame["seed"].astype(int)
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
def summarize(results: pd.DataFrame, metric: str = "macro_f1", n_boot: int = 10000,
              seed: int = 0) -> pd.DataFrame:
    """Per (scenario, backbone, head, mode, label_fraction): mean, std, n over seeds, the
    bootstrap 95 % interval of the mean, and the mean validation score."""
    rows = []
    for key, part in results.groupby(list(KEYS[:-1]), sort=False):
        low, high = bootstrap_mean_ci(part[metric], n_boot, seed)
        rows.append({**dict(zip(KEYS[:-1], key)), "metric": metric, "mean": part[metric].mean(),
                     "std": part[metric].std(ddof=1) if len(part) > 1 else float("nan"),
                     "n": len(part), "ci_low": low, "ci_high": high,
                     "val_mean": part[f"val_{metric}"].mean()})
    return pd.DataFrame(rows)


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
    """Each scenario against ``reference`` pretraining, same backbone, head, mode and fraction,
    paired by seed: one row per comparison with both means, the difference and both p-values."""
    ssl = results[results["mode"].isin(SSL_MODES)]
    base = ssl[ssl["scenario"] == reference].set_index(list(KEYS))[metric]
    rows = []
    for key, part in ssl[ssl["scenario"] != reference].groupby(list(KEYS[:-1]), sort=False):
        ref_keys = [(reference, *key[1:], s) for s in part["seed"]]
        paired = [(v, base[k]) for v, k in zip(part[metric], ref_keys) if k in base.index]
        if not paired:
            continue
        a, b = np.array(paired).T
        rows.append({**dict(zip(KEYS[:-1], key)), "reference": reference, "metric": metric,
                     "mean": a.mean(), "reference_mean": b.mean(),
                     **paired_test(a, b, n_boot, seed)})
    return _with_note(in_study_order(pd.DataFrame(rows)))


def best_vs_baseline(results: pd.DataFrame, baseline: str = "hinception",
                     metrics=("macro_f1", "accuracy"), n_boot: int = 10000,
                     seed: int = 0) -> pd.DataFrame:
    """The best SSL cell (highest mean validation macro-F1) against ``baseline``, paired by seed."""
    ssl = results[results["mode"].isin(SSL_MODES)]
    sup = results[(results["mode"] == SUPERVISED) & (results["head"] == baseline)]
    if ssl.empty or sup.empty:
        return _with_note(pd.DataFrame())
    best_key = ssl.groupby(list(KEYS[:-1]))["val_macro_f1"].mean().idxmax()
    best = ssl.set_index(list(KEYS[:-1])).loc[[best_key]].set_index("seed")
    sup = sup.set_index("seed")
    seeds = sorted(set(best.index) & set(sup.index))
    rows = []
    for metric in metrics:
        a, b = best.loc[seeds, metric].to_numpy(), sup.loc[seeds, metric].to_numpy()
        rows.append({**dict(zip(KEYS[:-1], best_key)), "baseline": BASELINE_NAMES.get(baseline, baseline),
                     "metric": metric, "mean": a.mean(), "baseline_mean": b.mean(),
                     **paired_test(a, b, n_boot, seed)})
    return _with_note(pd.DataFrame(rows))


def _with_note(frame: pd.DataFrame) -> pd.DataFrame:
    if not frame.empty:
        frame["note"] = [f"n={n}: smallest two-sided Wilcoxon p = {smallest_wilcoxon_p(n):.4g}"
                         for n in frame["n"]]
    return frame


# --------------------------------------------------------------------------- the study table
@dataclasses.dataclass
class StudyTable:
    """The study's table in long form: one entry per (row, column) with its numbers and marks.

    ``entries`` columns: row, column, mean, std, n, mode (chosen on validation; ``supervised``
    for baselines), val_mean, p_vs_reference (Wilcoxon), is_best (per column, on the shown mean).
    """

    entries: pd.DataFrame
    rows: list[str]
    columns: list[str]
    metric: str
    label_fraction: float

    def text(self, style: str = "markdown") -> pd.DataFrame:
        """The table as strings, ``style`` markdown | latex | plain."""
        grid = pd.DataFrame("", index=self.rows, columns=self.columns)
        for e in self.entries.itertuples():
            grid.loc[e.row, e.column] = _format_entry(e, style)
        return grid

    def to_markdown(self) -> str:
        return markdown_table(self.text("markdown"), self.caption())

    def to_latex(self) -> str:
        return _latex(self.text("latex"), self.caption())

    def caption(self) -> str:
        return (f"{self.metric} (%) mean ± std over seeds, label fraction {self.label_fraction:g}; "
                "(LP)/(FT): mode chosen on mean validation score; bold: best per column; "
                f"p: Wilcoxon signed-rank vs {REFERENCE}, same backbone, head, mode, paired by seed.")


def study_table(results: pd.DataFrame, metric: str = "macro_f1",
                label_fraction: float | None = None,
                n_boot: int = 1000, seed: int = 0) -> StudyTable:
    """Build the :class:`StudyTable` of one label fraction from ``results`` (``results.csv``)."""
    rows_ = pick_fraction(results, label_fraction)
    fraction = float(rows_["label_fraction"].iloc[0]) if len(rows_) else float("nan")
    summary = summarize(rows_, metric, n_boot, seed)
    ssl = choose_mode(summary) if not summary.empty else summary
    chosen = ssl[ssl["chosen"]] if not ssl.empty else ssl
    tests = compare_to_reference(rows_, metric=metric, n_boot=n_boot, seed=seed)
    entries = [_ssl_entry(r, tests) for r in chosen.itertuples()]
    entries += [_baseline_entry(r) for r in summary.itertuples() if r.mode == SUPERVISED]
    entries = pd.DataFrame(entries, columns=["row", "column", "mean", "std", "n", "mode",
                                             "val_mean", "p_vs_reference"])
    entries["is_best"] = entries["mean"] == entries.groupby("column")["mean"].transform("max")
    return StudyTable(entries, _row_order(entries), _column_order(entries), metric, fraction)


def _ssl_entry(r, tests: pd.DataFrame) -> dict:
    p = float("nan")
    if not tests.empty:
        hit = tests[(tests["scenario"] == r.scenario) & (tests["backbone"] == r.backbone)
                    & (tests["head"] == r.head) & (tests["mode"] == r.mode)]
        p = float(hit["p_wilcoxon"].iloc[0]) if len(hit) else p
    return {"row": r.scenario, "column": f"{r.backbone} / {r.head}", "mean": r.mean, "std": r.std,
            "n": r.n, "mode": r.mode, "val_mean": r.val_mean, "p_vs_reference": p}


def _baseline_entry(r) -> dict:
    return {"row": BASELINE_NAMES.get(r.head, r.head), "column": SUPERVISED, "mean": r.mean,
            "std": r.std, "n": r.n, "mode": SUPERVISED, "val_mean": r.val_mean,
            "p_vs_reference": float("nan")}


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
        value += f" p={e.p_vs_reference:.3g}"
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
    """A comparison table (reference or baseline) as Markdown, p-values shown to 3 digits."""
    if frame.empty:
        return "(no paired comparison available)\n"
    shown = frame.drop(columns=[c for c in ("note", "reference") if c in frame])
    for column in ("mean", "reference_mean", "baseline_mean", "mean_diff", "diff_ci_low",
                   "diff_ci_high"):
        if column in shown:
            shown[column] = (100 * shown[column]).map("{:.1f}".format)
    for column in ("p_wilcoxon", "p_bootstrap"):
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
    fig.update_layout(title=f"{table.metric} per scenario and backbone / head "
                      f"(label fraction {table.label_fraction:g})", height=90 + 45 * len(table.rows),
                      yaxis=dict(autorange="reversed"))
    return fig


def label_efficiency(results: pd.DataFrame, metric: str = "macro_f1") -> go.Figure | None:
    """Mean ``metric`` against label fraction per scenario x backbone (head and mode chosen on
    validation per fraction); ``None`` when a single fraction was run."""
    if results["label_fraction"].nunique() < 2:
        return None
    summary = summarize(results, metric, n_boot=200)
    ssl = summary[summary["mode"].isin(SSL_MODES)]
    best = ssl.loc[ssl.groupby(["scenario", "backbone", "label_fraction"])["val_mean"].idxmax()]
    fig = go.Figure()
    for (scenario, backbone), part in best.groupby(["scenario", "backbone"], sort=False):
        part = part.sort_values("label_fraction")
        fig.add_trace(go.Scatter(x=part["label_fraction"], y=100 * part["mean"],
                                 error_y=dict(array=100 * part["std"].fillna(0)),
                                 mode="lines+markers", name=f"{scenario} · {backbone}"))
    for r in summary[summary["mode"] == SUPERVISED].groupby("head"):
        part = r[1].sort_values("label_fraction")
        fig.add_trace(go.Scatter(x=part["label_fraction"], y=100 * part["mean"], mode="lines",
                                 line=dict(dash="dash"), name=BASELINE_NAMES.get(r[0], r[0])))
    fig.update_layout(title=f"Label efficiency: {metric} vs labelled fraction", height=450,
                      xaxis_title="label fraction", yaxis_title=f"{metric} %")
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
    fig.update_layout(boxmode="group", title=f"{metric} over seeds per scenario (mode chosen on "
                      "validation)", height=450, yaxis_title=f"{metric} %",
                      xaxis=dict(categoryorder="array", categoryarray=order))
    return fig


# --------------------------------------------------------------------------- the report
def write_report(results: pd.DataFrame, out_dir, metric: str = "macro_f1",
                 label_fraction: float | None = None, n_boot: int = 10000, seed: int = 0,
                 encoder_tables: dict[str, pd.DataFrame] | None = None) -> dict[str, Path]:
    """Tables (Markdown, CSV, LaTeX), statistics and ``figures.html`` into ``out_dir``;
    ``encoder_tables`` (title -> table, from :func:`encoder_tables`) are
    appended to ``report.md``."""
    from ecgnb.plots import write_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = study_table(results, metric, label_fraction, n_boot, seed)
    rows = pick_fraction(results, label_fraction)
    versus_ref = compare_to_reference(rows, metric=metric, n_boot=n_boot, seed=seed)
    versus_base = best_vs_baseline(rows, n_boot=n_boot, seed=seed)
    paths = {"study_table.md": table.to_markdown(), "study_table.tex": table.to_latex()}
    for name, text in paths.items():
        (out / name).write_text(text)
    write_csv(table.text("plain").rename_axis("scenario").reset_index(), out / "study_table.csv")
    write_csv(summarize(results, metric, n_boot, seed), out / "summary.csv")
    write_csv(versus_ref, out / "vs_reference.csv")
    write_csv(versus_base, out / "vs_baseline.csv")
    cells = cell_table(results, metric)
    write_csv(cells.reset_index(), out / "cells.csv")
    extra = {f"Every cell at every label fraction ({metric}, both modes)": cells,
             **(encoder_tables or {})}
    (out / "report.md").write_text(report_markdown(table, versus_ref, versus_base, results)
                                   + "".join(f"\n## {title}\n\n{markdown_table(frame)}"
                                             for title, frame in extra.items()))
    write_html(figures(results, table, metric), out / "figures.html")
    names = ("report.md", "study_table.md", "study_table.tex", "study_table.csv", "summary.csv",
             "cells.csv", "vs_reference.csv", "vs_baseline.csv", "figures.html")
    return {name: out / name for name in names}


def figures(results: pd.DataFrame, table: StudyTable, metric: str = "macro_f1") -> dict:
    figs = {"study table": table_heatmap(table), "per-scenario scores": scenario_boxes(results, metric)}
    curve = label_efficiency(results, metric)
    if curve is not None:
        figs["label efficiency"] = curve
    return figs


def report_markdown(table: StudyTable, versus_ref: pd.DataFrame, versus_base: pd.DataFrame,
                    results: pd.DataFrame) -> str:
    n_seeds = results.groupby(list(KEYS[:-1]))["seed"].nunique()
    return "\n".join([
        "# Results", "",
        f"{len(results)} downstream cells from {results['run'].nunique()} runs; "
        f"seeds per cell: {sorted(n_seeds.unique().tolist())}.", "",
        "## The study table", "", table.to_markdown(),
        f"## Each scenario vs {REFERENCE} (paired by seed)", "", comparison_markdown(versus_ref),
        "## Best SSL cell (chosen on validation) vs H-InceptionTime (paired by seed)", "",
        comparison_markdown(versus_base),
        "Wilcoxon: two-sided signed-rank test, exact for small n; with n pairs the smallest "
        "possible p is 2/2^n (0.0625 for 5 seeds), so p < 0.05 is impossible with 5 seeds. "
        "Bootstrap: paired resampling of the per-seed differences (interval: 95 % percentile; "
        "p from the null-centred resamples, at least 1/(n_boot+1)); with few seeds the bootstrap "
        "is optimistic: read it beside the Wilcoxon p, not instead of it.",
    ]) + "\n"


def synthetic_results(seed: int = 0, n_seeds: int = 5, fractions=(1.0,)) -> pd.DataFrame:
    """A results table in the ``results.csv`` layout with a planted structure (for smoke runs
    and tests): the i-th scenario of :data:`SCENARIOS` scores i points above "ECG", fine-tuning
    1 point above linear probing, each backbone 3 points below the previous one; noise sd 3."""
    rng = np.random.default_rng(seed)
    effect = {s: 0.01 * i for i, s in enumerate(SCENARIOS)}
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
