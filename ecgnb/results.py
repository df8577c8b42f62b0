"""Notebook 06, the study's results: ``results.csv``, the report of each recipe and its figures.

The work is done in :mod:`ecgnb.report`: :mod:`~ecgnb.report.collect` rebuilds the tidy table
(its layout is described there) from the run folders, :mod:`~ecgnb.report.comparisons` makes the
study table and the exact tests, :mod:`~ecgnb.report.build` puts them together per recipe and
:mod:`~ecgnb.report.figures` draws them. This module holds the notebook's parameters
(:class:`ResultsConfig`) and the table it reads (:func:`load_results`).

Each row of ``results.csv`` also says what the cell trained with, resolved from its recipe:
``train_<name>`` for each knob of :class:`ecgnb.evaluation.settings.HeadTraining` (optimizer, lr,
weight decay, schedule, select_on...).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ecgnb.config import check_ranges
from ecgnb.report.collect import read_results, synthetic_results, write_csv


@dataclasses.dataclass(frozen=True)
class ResultsConfig:
    """Parameters of notebooks/06_results.ipynb (same names as its parameters cell)."""

    results_csv: str = ""  # empty: a synthetic results table (smoke run)
    metric: str = "macro_f1"
    label_fraction: float | None = None  # None: the largest fraction run
    n_boot: int = 10000
    seed: int = 0

    def __post_init__(self):
        check_ranges(self)


def load_results(results_csv: str, out_dir, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """``(results, where from)``: the table at ``results_csv``, or (when empty) a synthetic one
    written to ``out_dir/synthetic_results.csv`` so that a smoke run has something to render."""
    if results_csv:
        return read_results(results_csv), str(results_csv)
    path = Path(out_dir) / "synthetic_results.csv"
    write_csv(synthetic_results(seed), path)
    return read_results(path), f"{path} (synthetic: planted effects, not a result)"
