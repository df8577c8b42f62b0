"""What each key figure of the report shows, prepared once for both of its drawers.

The interactive figures (:mod:`ecgnb.report.figures`, plotly) and the PNG images
(:mod:`ecgnb.report.static`, matplotlib) draw the same prepared points, so a figure in the
README and its twin in ``figures.html`` cannot disagree:

- :func:`label_efficiency_points`: per scenario x backbone (head and mode chosen on validation per
  label fraction) and per supervised baseline, the mean score against the *realised* share of
  labelled training fragments (the requested share where the cells do not record it; column
  ``fraction`` says which, :func:`label_axis` says it on the axis);
- :func:`pretrained_vs_untrained_points`: per scenario, backbone and mode at one label fraction,
  the mean score of the head chosen on validation;
- :func:`study_table_cells`: the study table's cells, value (mean) and text, in its order.

Scores are in %, intervals those of :func:`ecgnb.report.comparisons.interval_summary`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ecgnb.evaluation.settings import SUPERVISED
from ecgnb.report.comparisons import StudyTable, interval_summary, pick_fraction
from ecgnb.report.tables import BACKBONE_ORDER, BASELINE_NAMES, SSL_MODES, in_study_order

POINT_COLUMNS = ["series", "scenario", "backbone", "head", "mode", "label_fraction", "x",
                 "fraction", "y", "y_low", "y_high", "is_baseline"]


def label_efficiency_points(results: pd.DataFrame, metric: str = "macro_f1",
                            n_boot: int = 1000) -> pd.DataFrame | None:
    """One row per plotted point (columns :data:`POINT_COLUMNS`): ``x`` the labelled share in %
    (realised when every cell records it, else requested: ``fraction``), ``y`` the mean ``metric``
    in % with its 95 % interval ``y_low``/``y_high``; ``series`` the scenario or the baseline's
    name. ``None`` with a single label fraction."""
    if results["label_fraction"].nunique() < 2:
        return None
    summary = interval_summary(results, metric, n_boot=n_boot)
    realised = bool(summary["label_fraction_realised"].notna().all())
    share = summary["label_fraction_realised" if realised else "label_fraction"]
    summary = summary.assign(x=100 * share, fraction="realised" if realised else "requested")
    ssl = summary[summary["mode"].isin(SSL_MODES)]
    best = ssl.loc[ssl.groupby(["scenario", "backbone", "label_fraction"])["val_mean"].idxmax()]
    baselines = summary[summary["mode"] == SUPERVISED]
    points = pd.concat([best.assign(series=best["scenario"], is_baseline=False),
                        baselines.assign(series=[BASELINE_NAMES.get(h, h) for h in baselines["head"]],
                                         is_baseline=True)], ignore_index=True)
    return _scores(in_study_order(points))[POINT_COLUMNS]


def label_axis(points: pd.DataFrame) -> str:
    """The x-axis title of :func:`label_efficiency_points`: which labelled share it shows."""
    if (points["fraction"] == "realised").all():
        return "labelled training fragments (% realised)"
    return "labelled training fragments (% requested; realised not recorded)"


def pretrained_vs_untrained_points(results: pd.DataFrame, metric: str = "macro_f1",
                                   label_fraction: float | None = None,
                                   n_boot: int = 1000) -> pd.DataFrame | None:
    """One row per (scenario, backbone, mode) of the SSL cells at ``label_fraction`` (None: the
    largest): the head chosen on validation, ``y`` its mean ``metric`` in % with the interval
    ``y_low``/``y_high``. ``None`` without SSL rows."""
    rows = pick_fraction(results, label_fraction)
    summary = interval_summary(rows[rows["mode"].isin(SSL_MODES)], metric, n_boot=n_boot)
    if summary.empty:
        return None
    best = summary.loc[summary.groupby(["scenario", "backbone", "mode"])["val_mean"].idxmax()]
    columns = ["scenario", "backbone", "head", "mode", "label_fraction", "y", "y_low", "y_high"]
    return _scores(in_study_order(best))[columns]


def _scores(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(y=100 * frame["mean"], y_low=100 * frame["ci_low"],
                        y_high=100 * frame["ci_high"])


def backbones_of(points: pd.DataFrame) -> list[str]:
    """The backbones of the SSL points: the study's order, then any other, sorted."""
    present = set(points.loc[points["mode"].isin(SSL_MODES), "backbone"])
    return [b for b in BACKBONE_ORDER if b in present] + sorted(present - set(BACKBONE_ORDER))


def study_table_cells(table: StudyTable) -> pd.DataFrame:
    """One row per cell of ``table`` (rows then columns, in the table's order): ``row``,
    ``column``, ``value`` (the mean in %, NaN where empty) and ``text`` (as printed)."""
    value = pd.DataFrame(np.nan, index=table.rows, columns=table.columns)
    for e in table.entries.itertuples():
        value.loc[e.row, e.column] = 100 * e.mean
    text = table.text("plain")
    return pd.DataFrame([{"row": r, "column": c, "value": value.loc[r, c], "text": text.loc[r, c]}
                         for r in table.rows for c in table.columns],
                        columns=["row", "column", "value", "text"])


def as_grid(cells: pd.DataFrame, name: str) -> pd.DataFrame:
    """Column ``name`` of :func:`study_table_cells` as a rows x columns grid, in the table's order."""
    rows, columns = list(dict.fromkeys(cells["row"])), list(dict.fromkeys(cells["column"]))
    return cells.set_index(["row", "column"])[name].unstack().reindex(index=rows, columns=columns)
