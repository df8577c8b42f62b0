"""The report's interactive figures (plotly): the study table as a heat map, the per-seed scores
per scenario, label efficiency; :func:`figures` gathers those of one recipe (for ``figures.html``).
Functions take data and return a figure.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ecgnb.data.scenarios import SCENARIOS
from ecgnb.evaluation.train import SUPERVISED
from ecgnb.report.comparisons import (StudyTable, choose_mode, interval_summary, pick_fraction,
                                      summarize)
from ecgnb.report.tables import BASELINE_NAMES, SSL_MODES, label_line, recipe_of


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


def figures(results: pd.DataFrame, table: StudyTable, metric: str = "macro_f1") -> dict:
    """The figures of one recipe's ``results`` and its study table."""
    figs = {"study table": table_heatmap(table), "per-scenario scores": scenario_boxes(results, metric)}
    curve = label_efficiency(results, metric)
    if curve is not None:
        figs["label efficiency"] = curve
    return figs

