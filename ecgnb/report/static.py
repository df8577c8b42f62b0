"""The key figures of a grid's results as PNG images (matplotlib), for the README and papers.

``ecgnb report demo --figures docs/`` (``make figures``) writes, from ``results.csv``:

- ``label_efficiency.png``: macro-F1 against the labelled fraction, one panel per backbone, one
  line per scenario (``untrained`` dashed grey), the supervised baselines dotted, 95 % intervals;
- ``pretrained_vs_untrained.png``: per backbone and mode (LP, FT), each scenario's score beside the
  same network at its initial weights, 95 % intervals, chance (1/6) marked;
- ``study_table.png``: the study table (:func:`ecgnb.report.comparisons.study_table`) as a heat map.

Intervals are those of :func:`ecgnb.report.comparisons.interval_summary` (per-seed bootstrap over source
records, averaged over seeds, where the cells have them). Static images need no browser.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no display, no global figure state

from ecgnb.data.scenarios import SCENARIOS, UNTRAINED
from ecgnb.evaluation.train import SUPERVISED
from ecgnb.report.comparisons import StudyTable, interval_summary, pick_fraction, study_table
from ecgnb.report.tables import BACKBONE_ORDER, BASELINE_NAMES, SSL_MODES

N_CLASSES = 6
FIGURES = ("label_efficiency.png", "pretrained_vs_untrained.png", "study_table.png")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22")
GREY = "#7f7f7f"
DPI = 110


def write_figures(results: pd.DataFrame, out_dir, metric: str = "macro_f1") -> list[Path]:
    """The figures of :data:`FIGURES` (those the table can make) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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


def _scenarios(frame: pd.DataFrame) -> list[str]:
    present = set(frame["scenario"])
    return [s for s in SCENARIOS if s in present]


def _backbones(frame: pd.DataFrame) -> list[str]:
    present = set(frame.loc[frame["mode"].isin(SSL_MODES), "backbone"])
    return [b for b in BACKBONE_ORDER if b in present] + sorted(present - set(BACKBONE_ORDER))


def _style(scenario: str, index: int) -> dict:
    if scenario == UNTRAINED:
        return {"color": GREY, "linestyle": "--", "marker": "s"}
    return {"color": COLOURS[index % len(COLOURS)], "linestyle": "-", "marker": "o"}


def _chance(ax) -> None:
    ax.axhline(100 / N_CLASSES, color="black", linewidth=0.8, linestyle=":")
    ax.annotate("chance", (0.01, 100 / N_CLASSES), xycoords=("axes fraction", "data"),
                fontsize=7, va="bottom")


def label_efficiency(results: pd.DataFrame, metric: str = "macro_f1"):
    """One panel per backbone: ``metric`` vs label fraction per scenario (head and mode chosen on
    validation per fraction), baselines dotted; ``None`` with a single fraction."""
    if results["label_fraction"].nunique() < 2:
        return None
    summary = interval_summary(results, metric)
    ssl = summary[summary["mode"].isin(SSL_MODES)]
    best = ssl.loc[ssl.groupby(["scenario", "backbone", "label_fraction"])["val_mean"].idxmax()]
    supervised = summary[summary["mode"] == SUPERVISED]
    backbones, scenarios = _backbones(results), _scenarios(ssl)
    fig = Figure(figsize=(4.2 * len(backbones), 3.6))
    axes = fig.subplots(1, len(backbones), sharey=True, squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        for i, scenario in enumerate(scenarios):
            part = best[(best["backbone"] == backbone) & (best["scenario"] == scenario)]
            _curve(ax, part.sort_values("label_fraction"), scenario, _style(scenario, i))
        for j, (head, part) in enumerate(supervised.groupby("head", sort=False)):
            _curve(ax, part.sort_values("label_fraction"), BASELINE_NAMES.get(head, head),
                   {"color": "black", "linestyle": ":", "marker": "^v<>"[j % 4], "alpha": 0.6})
        _chance(ax)
        ax.set_xscale("log")
        fractions = sorted(results["label_fraction"].unique())
        ax.set_xticks(fractions, [f"{100 * f:g} %" for f in fractions])
        ax.minorticks_off()
        ax.set_title(backbone)
        ax.set_xlabel("labelled training records")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric} % (95 % interval)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(f"Label efficiency: {metric} vs labelled fraction (head and mode chosen on "
                 "validation)", fontsize=10)
    fig.tight_layout()
    return fig


def _curve(ax, part: pd.DataFrame, label: str, style: dict) -> None:
    if part.empty:
        return
    x, y = part["label_fraction"].to_numpy(), 100 * part["mean"].to_numpy()
    err = 100 * np.vstack([part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]])
    ax.errorbar(x, y, yerr=np.clip(np.nan_to_num(err), 0, None), label=label, capsize=3,
                linewidth=1.4, markersize=4, **style)


def pretrained_vs_untrained(results: pd.DataFrame, metric: str = "macro_f1",
                            label_fraction: float | None = None):
    """Per backbone (groups) and mode (panels): each scenario's bar beside ``untrained``, at the
    largest label fraction (head: the best on validation, per cell); ``None`` without SSL rows."""
    rows = pick_fraction(results, label_fraction)
    summary = interval_summary(rows[rows["mode"].isin(SSL_MODES)], metric)
    if summary.empty:
        return None
    best = summary.loc[summary.groupby(["scenario", "backbone", "mode"])["val_mean"].idxmax()]
    backbones, scenarios = _backbones(rows), _scenarios(best)
    modes = [m for m in SSL_MODES if m in set(best["mode"])]
    width = 0.8 / len(scenarios)
    fig = Figure(figsize=(5.2 * len(modes), 3.6))
    axes = fig.subplots(1, len(modes), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for i, scenario in enumerate(scenarios):
            part = best[(best["mode"] == mode) & (best["scenario"] == scenario)].set_index("backbone")
            part = part.reindex(backbones)
            x = np.arange(len(backbones)) - 0.4 + width * (i + 0.5)
            err = 100 * np.vstack([part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]])
            ax.bar(x, 100 * part["mean"], width, yerr=np.clip(np.nan_to_num(err), 0, None),
                   capsize=2, label=scenario, color=_style(scenario, i)["color"],
                   hatch="//" if scenario == UNTRAINED else None, edgecolor="white")
        _chance(ax)
        ax.set_xticks(np.arange(len(backbones)), backbones)
        heads = "/".join(sorted(set(best.loc[best["mode"] == mode, "head"])))
        ax.set_title({"lp": "linear probing (encoder frozen)",
                      "ft": "fine-tuning"}.get(mode, mode) + f", {heads} head")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric} % (95 % interval)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fraction = float(rows["label_fraction"].iloc[0])
    fig.suptitle(f"Pretrained vs the same network untrained (initial weights), "
                 f"{100 * fraction:g} % of the labels", fontsize=10)
    fig.tight_layout()
    return fig


def table_heatmap(table: StudyTable):
    """The study table as a heat map: colour = mean, text = mean ± std and the chosen mode."""
    z = pd.DataFrame(np.nan, index=table.rows, columns=table.columns)
    for e in table.entries.itertuples():
        z.loc[e.row, e.column] = 100 * e.mean
    text = table.text("plain")
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
