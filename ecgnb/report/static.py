"""The key figures of a grid's results as PNG images (matplotlib), for the README and papers.

``ecgnb report demo --figures docs/`` (``make figures``) writes, from ``results.csv``:

- ``label_efficiency.png``: the headline metric (macro-F1; macro-AUROC for multi-label cells)
  against the labelled share of training fragments (realised where the cells record it), one
  panel per backbone, one line per scenario (``untrained`` dashed grey), the supervised
  baselines dotted, 95 % intervals;
- ``pretrained_vs_untrained.png``: per backbone and mode (LP, FT), each scenario's score beside the
  same network at its initial weights, 95 % intervals, chance marked (AUROC 0.5, else 1/K for the
  task's K classes);
- ``study_table.png``: the study table (:func:`ecgnb.report.comparisons.study_table`) as a heat map.

Each draws the points of :mod:`ecgnb.report.figure_data`, as the interactive twins of
:mod:`ecgnb.report.figures` do; intervals are those of
:func:`ecgnb.report.comparisons.interval_summary`. Static images need no browser.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no display, no global figure state

from ecgnb.data.scenarios import UNTRAINED
from ecgnb.report.comparisons import StudyTable, study_table
from ecgnb.report.figure_data import (as_grid, backbones_of, label_axis, label_efficiency_points,
                                      pretrained_vs_untrained_points, study_table_cells)
from ecgnb.report.tables import SSL_MODES, chance_level, headline_metric

N_CLASSES = 6  # the Fragment DB's, for tables that do not record the task's (no n_classes)
FIGURES = ("label_efficiency.png", "pretrained_vs_untrained.png", "study_table.png")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22")
GREY = "#7f7f7f"
DPI = 110


def write_figures(results: pd.DataFrame, out_dir, metric: str = "macro_f1") -> list[Path]:
    """The figures of :data:`FIGURES` (those the table can make) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = headline_metric(results, metric)
    makers = {"label_efficiency.png": lambda: label_efficiency(results, metric),
              "pretrained_vs_untrained.png": lambda: pretrained_vs_untrained(results, metric),
              "study_table.png": lambda: table_heatmap(study_table(results, metric, n_boot=200))}
    written = []
    for name, make in makers.items():
        fig = make()
        if fig is None:
            continue
        fig.savefig(out / name, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        written.append(out / name)
    return written


def _style(scenario: str, index: int) -> dict:
    if scenario == UNTRAINED:
        return {"color": GREY, "linestyle": "--", "marker": "s"}
    return {"color": COLOURS[index % len(COLOURS)], "linestyle": "-", "marker": "o"}


def n_classes(results: pd.DataFrame) -> int:
    """The task's number of classes: the table's ``n_classes`` (one value), else :data:`N_CLASSES`."""
    values = set(results["n_classes"].dropna().astype(int)) if "n_classes" in results else set()
    return values.pop() if len(values) == 1 else N_CLASSES


def _chance(ax, k: int, metric: str = "macro_f1") -> None:
    """``metric`` at chance (in %): AUROC 50, else a uniform random guess over ``k`` classes."""
    level = 100 * chance_level(metric, k)
    ax.axhline(level, color="black", linewidth=0.8, linestyle=":")
    ax.annotate("chance", (0.01, level), xycoords=("axes fraction", "data"),
                fontsize=7, va="bottom")


def label_efficiency(results: pd.DataFrame, metric: str = "macro_f1"):
    """One panel per backbone: ``metric`` vs the labelled share per scenario (head and mode chosen
    on validation per fraction), baselines dotted
    (:func:`ecgnb.report.figure_data.label_efficiency_points`); ``None`` with a single fraction."""
    points = label_efficiency_points(results, metric)
    if points is None:
        return None
    ssl, baselines = points[~points["is_baseline"]], points[points["is_baseline"]]
    backbones, scenarios = backbones_of(points), list(dict.fromkeys(ssl["scenario"]))
    fig = Figure(figsize=(4.2 * len(backbones), 3.6))
    axes = fig.subplots(1, len(backbones), sharey=True, squeeze=False)
    shares = points.groupby("label_fraction")["x"].mean().sort_values()
    for ax, backbone in zip(axes[0], backbones):
        for i, scenario in enumerate(scenarios):
            part = ssl[(ssl["backbone"] == backbone) & (ssl["scenario"] == scenario)]
            _curve(ax, part.sort_values("x"), scenario, _style(scenario, i))
        for j, (name, part) in enumerate(baselines.groupby("series", sort=False)):
            _curve(ax, part.sort_values("x"), name,
                   {"color": "black", "linestyle": ":", "marker": "^v<>"[j % 4], "alpha": 0.6})
        _chance(ax, n_classes(results), metric)
        ax.set_xscale("log")
        ax.set_xticks(shares.to_numpy(), [f"{x:.3g} %" for x in shares])
        ax.minorticks_off()
        ax.set_title(backbone)
        ax.set_xlabel(label_axis(points))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric} % (95 % interval)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(f"Label efficiency: {metric} vs labelled training fragments (head and mode "
                 "chosen on validation)", fontsize=10)
    fig.tight_layout()
    return fig


def _curve(ax, part: pd.DataFrame, label: str, style: dict) -> None:
    if part.empty:
        return
    x, y = part["x"].to_numpy(), part["y"].to_numpy()
    err = np.vstack([part["y"] - part["y_low"], part["y_high"] - part["y"]])
    ax.errorbar(x, y, yerr=np.clip(np.nan_to_num(err), 0, None), label=label, capsize=3,
                linewidth=1.4, markersize=4, **style)


def pretrained_vs_untrained(results: pd.DataFrame, metric: str = "macro_f1",
                            label_fraction: float | None = None):
    """Per backbone (groups) and mode (panels): each scenario's bar beside ``untrained``, at the
    largest label fraction (head: the best on validation, per cell;
    :func:`ecgnb.report.figure_data.pretrained_vs_untrained_points`); ``None`` without SSL rows."""
    points = pretrained_vs_untrained_points(results, metric, label_fraction)
    if points is None:
        return None
    backbones, scenarios = backbones_of(points), list(dict.fromkeys(points["scenario"]))
    modes = [m for m in SSL_MODES if m in set(points["mode"])]
    width = 0.8 / len(scenarios)
    fig = Figure(figsize=(5.2 * len(modes), 3.6))
    axes = fig.subplots(1, len(modes), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for i, scenario in enumerate(scenarios):
            part = points[(points["mode"] == mode) & (points["scenario"] == scenario)]
            part = part.set_index("backbone").reindex(backbones)
            x = np.arange(len(backbones)) - 0.4 + width * (i + 0.5)
            err = np.vstack([part["y"] - part["y_low"], part["y_high"] - part["y"]])
            ax.bar(x, part["y"], width, yerr=np.clip(np.nan_to_num(err), 0, None),
                   capsize=2, label=scenario, color=_style(scenario, i)["color"],
                   hatch="//" if scenario == UNTRAINED else None, edgecolor="white")
        _chance(ax, n_classes(results), metric)
        ax.set_xticks(np.arange(len(backbones)), backbones)
        heads = "/".join(sorted(set(points.loc[points["mode"] == mode, "head"])))
        ax.set_title({"lp": "linear probing (encoder frozen)",
                      "ft": "fine-tuning"}.get(mode, mode) + f", {heads} head")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric} % (95 % interval)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fraction = float(points["label_fraction"].iloc[0])
    fig.suptitle(f"Pretrained vs the same network untrained (initial weights), "
                 f"{100 * fraction:g} % of the labels", fontsize=10)
    fig.tight_layout()
    return fig


def table_heatmap(table: StudyTable):
    """The study table as a heat map: colour = mean, text = mean ± std and the chosen mode."""
    cells = study_table_cells(table)
    z, text = as_grid(cells, "value"), as_grid(cells, "text")
    fig = Figure(figsize=(1.9 * len(table.columns) + 2.2, 0.55 * len(table.rows) + 1.4))
    ax = fig.subplots()
    image = ax.imshow(z.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(z.to_numpy(dtype=float)):
        if np.isnan(value):
            continue
        ax.text(j, i, text.iloc[i, j].replace(" p=", "\np="), ha="center", va="center",
                fontsize=7, color="white" if value < np.nanmean(z.to_numpy(dtype=float)) else "black")
    ax.set_xticks(range(len(table.columns)), table.columns, fontsize=8)
    ax.set_yticks(range(len(table.rows)), table.rows, fontsize=8)
    fig.colorbar(image, ax=ax, label=f"{table.metric} %")
    ax.set_title(f"Study table: test {table.metric} %, mean ± std over seeds, label fraction "
                 f"{table.label_fraction:g} (* best per column)", fontsize=9)
    fig.tight_layout()
    return fig
