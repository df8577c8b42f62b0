"""The report's interactive figures (plotly): the study table as a heat map, the per-seed scores
per scenario, label efficiency; :func:`figures` gathers those of one recipe (for ``figures.html``).

The heat map and the label-efficiency curves draw the points of :mod:`ecgnb.report.figure_data`,
as their PNG twins in :mod:`ecgnb.report.static` do. Functions take data and return a figure.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ecgnb.data.scenarios import SCENARIOS
from ecgnb.evaluation.settings import SUPERVISED
from ecgnb.report.comparisons import StudyTable, choose_mode, pick_fraction, summarize
from ecgnb.report.figure_data import (as_grid, label_axis, label_efficiency_points,
                                      study_table_cells)
from ecgnb.report.tables import BASELINE_NAMES, label_line, recipe_of


def table_heatmap(table: StudyTable) -> go.Figure:
    """The study table as a heatmap of means (text: mean ± std and the chosen mode)."""
    cells = study_table_cells(table)
    fig = go.Figure(go.Heatmap(z=as_grid(cells, "value").to_numpy(dtype=float), x=table.columns,
                               y=table.rows, text=as_grid(cells, "text").to_numpy(),
                               texttemplate="%{text}", colorscale="Viridis",
                               colorbar=dict(title=f"{table.metric} %")))
    fig.update_layout(title=f"recipe: {table.recipe} · {table.metric} per scenario and backbone / "
                      f"head<br><sup>{table.labels}</sup>", height=110 + 45 * len(table.rows),
                      yaxis=dict(autorange="reversed"))
    return fig


def label_efficiency(results: pd.DataFrame, metric: str = "macro_f1") -> go.Figure | None:
    """Mean ``metric`` against the labelled share of training fragments (realised where
    recorded) per scenario x backbone, head and mode chosen on validation per fraction, and the
    supervised baselines dashed (:func:`ecgnb.report.figure_data.label_efficiency_points`);
    ``None`` for a single fraction."""
    points = label_efficiency_points(results, metric)
    if points is None:
        return None
    fig = go.Figure()
    ssl = points[~points["is_baseline"]]
    for (scenario, backbone), part in ssl.groupby(["scenario", "backbone"], sort=False):
        part = part.sort_values("x")
        fig.add_trace(go.Scatter(x=part["x"], y=part["y"],
                                 error_y=dict(type="data", symmetric=False,
                                              array=part["y_high"] - part["y"],
                                              arrayminus=part["y"] - part["y_low"]),
                                 mode="lines+markers", name=f"{scenario} · {backbone}"))
    for name, part in points[points["is_baseline"]].groupby("series", sort=False):
        part = part.sort_values("x")
        fig.add_trace(go.Scatter(x=part["x"], y=part["y"], mode="lines",
                                 line=dict(dash="dash"), name=name))
    fig.update_layout(title=f"recipe: {recipe_of(results)} · label efficiency: {metric} vs "
                      "labelled training fragments (95 % intervals of the mean over seeds)",
                      height=450, xaxis_title=label_axis(points), yaxis_title=f"{metric} %")
    return fig


def scenario_boxes(results: pd.DataFrame, metric: str = "macro_f1") -> go.Figure:
    """Per scenario, the per-seed scores of the validation-chosen mode, one box per backbone."""
    rows = pick_fraction(results)
    chosen = choose_mode(summarize(rows, metric, n_boot=200))
    keys = ["scenario", "backbone", "head", "mode"]
    kept = rows.merge(chosen[chosen["chosen"]][keys], on=keys)
    present = list(dict.fromkeys(kept["scenario"]))
    order = [s for s in SCENARIOS if s in present] + [s for s in present if s not in SCENARIOS]
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

