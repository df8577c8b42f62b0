"""Figures of one downstream run: confusion matrix, per-class recall / F1, training curves.

Each function takes data (a metrics dict of :func:`ecgnb.metrics.compute_metrics`, or a history
table of :class:`ecgnb.train.CellResult`) and returns a plotly figure; none saves or shows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str],
                     normalize: bool = True, title: str = "Confusion matrix") -> go.Figure:
    """Heatmap of ``confusion [K, K]`` (rows = true class); ``normalize`` shows row shares."""
    counts = np.asarray(confusion, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        shown = counts / counts.sum(axis=1, keepdims=True) if normalize else counts
    text = [[f"{int(c)}" + (f"<br>{s:.0%}" if normalize and np.isfinite(s) else "")
             for c, s in zip(row_c, row_s)] for row_c, row_s in zip(counts, shown)]
    fig = go.Figure(go.Heatmap(z=shown, x=list(classes), y=list(classes), text=text,
                               texttemplate="%{text}", colorscale="Blues",
                               zmin=0, zmax=1 if normalize else None))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed")
    return fig


def per_class_figure(metrics: dict, title: str = "Per-class recall and F1") -> go.Figure:
    """Grouped bars of ``per_class_recall`` and ``per_class_f1`` (absent classes left empty)."""
    classes = list(metrics["per_class_f1"])
    fig = go.Figure()
    for key, name in (("per_class_recall", "recall"), ("per_class_f1", "F1")):
        values = [metrics[key].get(c) for c in classes]
        fig.add_bar(x=classes, y=[np.nan if v is None else v for v in values], name=name)
    fig.update_layout(title=title, barmode="group", yaxis_range=[0, 1], yaxis_title="score")
    return fig


def training_curves_figure(history: pd.DataFrame, best_epochs: Sequence[int] | None = None,
                           title: str = "Training curves") -> go.Figure:
    """Losses (train, validation) and validation macro-F1 per epoch, one line per member.

    ``history`` has columns ``member, epoch, train_loss, val_loss, val_macro_f1``;
    ``best_epochs[m]`` (optional) marks member ``m``'s selected epoch.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "validation macro-F1"))
    for member, part in history.groupby("member"):
        suffix = f" (member {member})" if history["member"].nunique() > 1 else ""
        fig.add_scatter(x=part["epoch"], y=part["train_loss"], name="train" + suffix,
                        mode="lines", row=1, col=1)
        fig.add_scatter(x=part["epoch"], y=part["val_loss"], name="validation" + suffix,
                        mode="lines", row=1, col=1)
        fig.add_scatter(x=part["epoch"], y=part["val_macro_f1"], name="val macro-F1" + suffix,
                        mode="lines", row=1, col=2)
    for epoch in best_epochs or []:
        fig.add_vline(x=epoch, line_dash="dot", line_color="grey")
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title)
    return fig
