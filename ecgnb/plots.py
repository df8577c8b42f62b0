"""Plotly figures of windows, spectra, training curves and of one downstream run (confusion
matrix, per-class recall / F1, classifier training curves). Functions take data, return a figure;
the study's results are drawn by :mod:`ecgnb.report.figures`.

``write_html`` is the one place that writes figures: one offline HTML file (no CDN) for a run's
figures. An interactive run's file embeds plotly.js (4.6 MB); a batch run's file links one shared
copy at the outputs root (:func:`plotlyjs_for`), so a grid's dozens of pages do not repeat it and
still open offline as long as the outputs folder travels whole.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version
from plotly.subplots import make_subplots

from ecgnb.files import write_text
from ecgnb import runs
from ecgnb.data import Windows
from ecgnb.data.signals import power_spectrum
from ecgnb.data.windows import label_names

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
SHOWN_LEAD = "II"  # the lead drawn of multi-lead windows that name it


def shown_lead(windows: Windows) -> int:
    """The channel drawn of each window: lead II where ``windows.leads`` names it, else the
    first (the only one of univariate windows)."""
    return windows.leads.index(SHOWN_LEAD) if SHOWN_LEAD in windows.leads else 0


def lead_note(windows: Windows) -> str:
    """`` (lead II)``: the lead drawn of multi-lead windows; empty for univariate ones."""
    if windows.x.shape[1] == 1:
        return ""
    lead = shown_lead(windows)
    return f" (lead {windows.leads[lead] if windows.leads else lead})"


def labels_of(windows: Windows, by: str) -> np.ndarray:
    """Per-window label for colouring/grouping: ``class`` (multi-label: the window's classes
    joined by ``+``, :func:`~ecgnb.data.windows.label_names`), ``domain`` or ``group``."""
    if by == "class":
        return label_names(windows.y, windows.classes)
    if by == "domain":
        return np.asarray(windows.domains)
    if by == "group":
        return np.asarray(windows.groups)
    raise KeyError(f"unknown grouping '{by}'; use class, domain or group")


def gallery(windows: Windows, by: str = "class", n_per: int = 3, seed: int = 0) -> go.Figure:
    """A grid of example windows: one row per class/domain, ``n_per`` random examples each
    (multi-lead windows: :func:`shown_lead`)."""
    names = labels_of(windows, by)
    lead = shown_lead(windows)
    kinds = list(dict.fromkeys(names))
    rng = np.random.default_rng(seed)
    fig = make_subplots(rows=len(kinds), cols=n_per, shared_xaxes=True, vertical_spacing=0.03,
                        horizontal_spacing=0.02, row_titles=[k[:18] for k in kinds])
    t = np.arange(windows.n_timesteps) / windows.fs
    for row, kind in enumerate(kinds, start=1):
        idx = np.flatnonzero(names == kind)
        for col, i in enumerate(rng.choice(idx, size=min(n_per, len(idx)), replace=False), 1):
            fig.add_trace(go.Scattergl(x=t, y=windows.x[i, lead], mode="lines", showlegend=False,
                                       line=dict(width=1, color=PALETTE[(row - 1) % 10]),
                                       name=f"{kind} / {windows.groups[i]} #{i}"), row, col)
    fig.update_layout(height=140 * len(kinds) + 80, title=f"Examples per {by}{lead_note(windows)}",
                      margin=dict(l=40, r=120, t=60, b=40))
    fig.update_xaxes(title_text="s", row=len(kinds))
    return fig


def waveform(windows: Windows, index: int, title: str | None = None) -> go.Figure:
    """One window against time in seconds (multi-lead: :func:`shown_lead`)."""
    t = np.arange(windows.n_timesteps) / windows.fs
    fig = go.Figure(go.Scatter(x=t, y=windows.x[index, shown_lead(windows)], mode="lines",
                               line=dict(width=1)))
    cls = label_names(windows.y[index:index + 1], windows.classes)[0]
    fig.update_layout(title=title or f"#{index}: {cls}, {windows.domains[index]}, "
                      f"group {windows.groups[index]}{lead_note(windows)}", xaxis_title="s",
                      height=300)
    return fig


def amplitude_summary(windows: Windows, by: str = "class") -> go.Figure:
    """Box plots of per-window standard deviation and peak-to-peak amplitude (multi-lead:
    :func:`shown_lead`)."""
    x = windows.x[:, shown_lead(windows)]
    df = pd.DataFrame({by: labels_of(windows, by), "std": x.std(axis=1),
                       "peak-to-peak": np.ptp(x, axis=1)})
    fig = make_subplots(rows=1, cols=2, subplot_titles=("standard deviation", "peak-to-peak"))
    for col, metric in enumerate(("std", "peak-to-peak"), start=1):
        for k, (name, part) in enumerate(df.groupby(by, sort=False)):
            fig.add_trace(go.Box(y=part[metric], name=str(name)[:18], showlegend=False,
                                 marker_color=PALETTE[k % 10]), 1, col)
    fig.update_layout(title=f"Amplitude per {by}{lead_note(windows)}", height=380)
    return fig


def spectra(windows: Windows, by: str = "class", max_hz: float = 40.0) -> go.Figure:
    """Median Welch spectrum per class/domain (log power), with the 25-75 % band (multi-lead:
    :func:`shown_lead`)."""
    names = labels_of(windows, by)
    freqs, power = power_spectrum(windows.x[:, shown_lead(windows)].astype(np.float64),
                                  windows.fs)
    keep = freqs <= max_hz
    fig = go.Figure()
    for k, name in enumerate(dict.fromkeys(names)):
        logp = np.log10(power[names == name][:, keep] + 1e-12)
        lo, med, hi = np.percentile(logp, [25, 50, 75], axis=0)
        color = PALETTE[k % 10]
        fig.add_trace(go.Scatter(x=freqs[keep], y=med, name=str(name)[:18], line=dict(color=color)))
        fig.add_trace(go.Scatter(x=np.r_[freqs[keep], freqs[keep][::-1]], y=np.r_[hi, lo[::-1]],
                                 fill="toself", line=dict(width=0), fillcolor=color,
                                 opacity=0.15, showlegend=False, hoverinfo="skip"))
    fig.update_layout(title=f"Power spectrum per {by} (median, IQR){lead_note(windows)}",
                      xaxis_title="Hz", yaxis_title="log10 power", height=400)
    return fig


def counts(card: pd.DataFrame, x: str, y: str = "windows", color: str | None = None,
           title: str = "") -> go.Figure:
    """Bar chart of a card (a DataFrame of counts)."""
    fig = go.Figure()
    groups = card.groupby(color, sort=False) if color else [("", card)]
    for k, (name, part) in enumerate(groups):
        fig.add_trace(go.Bar(x=part[x], y=part[y], name=str(name), marker_color=PALETTE[k % 10]))
    fig.update_layout(barmode="group", title=title, height=360, yaxis_title=y)
    return fig


def loss_curves(history: list[dict] | pd.DataFrame, title: str = "SSL loss") -> go.Figure:
    """Training (and validation) loss per epoch from an encoder's ``history_``."""
    df = pd.DataFrame(history)
    fig = go.Figure()
    for column in [c for c in ("loss", "val_loss") if c in df]:
        fig.add_trace(go.Scatter(x=df["epoch"], y=df[column], mode="lines+markers", name=column))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="loss", height=350)
    return fig


def scatter_2d(points: np.ndarray, labels, title: str = "", hover=None) -> go.Figure:
    """A 2-D scatter coloured by ``labels`` (e.g. a PCA of embeddings)."""
    labels = np.asarray(labels).astype(str)
    fig = go.Figure()
    for k, name in enumerate(dict.fromkeys(labels)):
        mask = labels == name
        fig.add_trace(go.Scattergl(x=points[mask, 0], y=points[mask, 1], mode="markers",
                                   name=name[:20], marker=dict(size=5, color=PALETTE[k % 10]),
                                   text=None if hover is None else np.asarray(hover)[mask]))
    fig.update_layout(title=title, height=450)
    return fig


# --------------------------------------------------------------------------- one downstream run
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


def per_class_auroc_figure(metrics: dict, classes: Sequence[str],
                           title: str = "Per-class AUROC") -> go.Figure:
    """Bars of a multi-label cell's ``auroc_<class>`` (undefined classes left empty), chance
    (0.5) dotted."""
    values = [metrics.get(f"auroc_{c}") for c in classes]
    fig = go.Figure(go.Bar(x=list(classes), y=[np.nan if v is None else v for v in values],
                           name="AUROC"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey")
    fig.update_layout(title=title, yaxis_range=[0, 1], yaxis_title="test AUROC")
    return fig


def cell_figures(metrics: dict, history: pd.DataFrame, classes: Sequence[str],
                 name: str) -> dict[str, go.Figure]:
    """The figures of one cell (``metrics.json``, ``history.csv``): per-class test scores (a
    single-label cell: the confusion matrix, recall and F1; multi-label: AUROC) and the
    training curves."""
    best = metrics["best_epoch"] if isinstance(metrics["best_epoch"], list) \
        else [metrics["best_epoch"]]
    if "confusion_matrix" in metrics:
        scores = {"confusion matrix": confusion_figure(metrics["confusion_matrix"], classes,
                                                       title=f"{name}: test confusion matrix"),
                  "per-class": per_class_figure(metrics,
                                                title=f"{name}: per-class test recall and F1")}
    else:
        scores = {"per-class": per_class_auroc_figure(metrics, classes,
                                                      title=f"{name}: per-class test AUROC")}
    return {**scores, "training curves": training_curves_figure(
        history, best_epochs=best, title=f"{name}: training curves")}


def training_curves_figure(history: pd.DataFrame, best_epochs: Sequence[int] | None = None,
                           title: str = "Training curves") -> go.Figure:
    """Losses (train, validation) and the validation score per epoch, one line per member.

    ``history`` has columns ``member, epoch, train_loss, val_loss`` and ``val_macro_f1`` (or,
    multi-label, ``val_macro_auroc``); ``best_epochs[m]`` (optional) marks member ``m``'s
    selected epoch.
    """
    score, label = (("val_macro_auroc", "macro-AUROC") if "val_macro_f1" not in history
                    else ("val_macro_f1", "macro-F1"))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", f"validation {label}"))
    for member, part in history.groupby("member"):
        suffix = f" (member {member})" if history["member"].nunique() > 1 else ""
        fig.add_scatter(x=part["epoch"], y=part["train_loss"], name="train" + suffix,
                        mode="lines", row=1, col=1)
        fig.add_scatter(x=part["epoch"], y=part["val_loss"], name="validation" + suffix,
                        mode="lines", row=1, col=1)
        fig.add_scatter(x=part["epoch"], y=part[score], name=f"val {label}" + suffix,
                        mode="lines", row=1, col=2)
    for epoch in best_epochs or []:
        fig.add_vline(x=epoch, line_dash="dot", line_color="grey")
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title)
    return fig


# --------------------------------------------------------------------------- writing
def plotlyjs_for(path, share: bool | None = None) -> str | bool:
    """``include_plotlyjs`` for a page written at ``path``: ``True`` (embed the bundle) or the
    relative address of one shared ``plotly-<version>.min.js``, written once at the outputs root
    (or next to ``path`` when it lies outside). ``share=None``: shared for batch runs, embedded
    for interactive ones (a run folder named ``interactive``)."""
    path = Path(path).resolve()
    if share is None:
        share = path.parent.name != runs.INTERACTIVE
    if not share:
        return True
    root = runs.outputs_root().resolve()
    folder = root if path.is_relative_to(root) else path.parent
    bundle = folder / f"plotly-{get_plotlyjs_version()}.min.js"
    if not bundle.is_file():
        write_text(bundle, get_plotlyjs(), durable=False)
    return Path(os.path.relpath(bundle, path.parent)).as_posix()


def write_html(figures: dict[str, go.Figure], path, share_plotlyjs: bool | None = None) -> Path:
    """All ``figures`` in one offline HTML file; plotly.js embedded once or shared
    (:func:`plotlyjs_for`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plotlyjs = plotlyjs_for(path, share_plotlyjs)
    parts = []
    for i, (name, fig) in enumerate(figures.items()):
        body = pio.to_html(fig, full_html=False, include_plotlyjs=plotlyjs if i == 0 else False)
        parts.append(f"<section><h2>{name}</h2>{body}</section>")
    html = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>ecgnb figures</title></head>"
            "<body style='font-family:sans-serif'>" + "".join(parts) + "</body></html>")
    return write_text(path, html, durable=False)

