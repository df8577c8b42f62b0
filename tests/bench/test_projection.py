"""The one projection of a grid's hours (make rehearse and make gpu-check): params/grids/paper.yaml
with a fake rate table, its runs, epochs and windows counted by hand."""
import math

import pytest

from ecgnb.bench import projection
from ecgnb.bench.projection import PAPER_SIZES, PAPER_TASK, format_projection, project
from ecgnb.workflow.grid import load_grid

BACKBONES = ("series2vec", "ts2vec", "tstcc")


def fake_rates(batch_s=1.0, val_batch_s=0.5) -> dict:
    ssl = {label: {"batch_s": batch_s, "val_batch_s": val_batch_s}
           for label in ("pretrain", "continued", "extended")}
    cell = {"epoch_s_per_window": 0.01, "setup_s_per_window": 0.1, "n_members": 1}
    cells = {f"{h}-{m}": cell for h in ("mlp", "fcn") for m in ("lp", "ft")}
    baselines = {"hinception-supervised": {**cell, "n_members": 5},
                 "mlp-supervised": cell, "fcn-supervised": cell}
    return {**{b: {"ssl": ssl, "cells": cells} for b in BACKBONES},
            "baselines": {"cells": baselines}}


@pytest.fixture(scope="module")
def rows():
    grid = load_grid(projection.PAPER_GRID, validate=False)
    return {(r["stage"], r["backbone"]): r for r in project(grid, fake_rates())}


def batches(corpus, epochs, with_val=True):
    size = PAPER_SIZES[corpus]
    return epochs * (math.ceil(size["n_train"] / 64) + with_val * 0.5
                     * math.ceil(size["n_val"] / 64))


def test_pretraining_is_four_corpora_of_600_epochs(rows):
    row = rows[("pretraining", "ts2vec")]
    corpora = ("ECG", "All", "ECG+target", "All+target")
    assert (row["runs"], row["epochs"], row["on"]) == (4, "600", "ECG")
    assert row["windows"] == 600 * (98_274 + 98_280 + 98_893 + 98_899)
    assert PAPER_SIZES["ECG+target"]["n_train"] == 98_274 + PAPER_TASK["train"] == 98_893
    assert row["hours"] * 3600 == pytest.approx(sum(batches(c, 600) for c in corpora))


def test_continuations_are_1_30_or_60_epochs_on_no_ecg_or_the_target_fragments(rows):
    row = rows[("regularization", "tstcc")]
    assert (row["runs"], row["epochs"], row["on"]) == (5, "1/30/60", "no-ECG")
    # continued1, continued30 on no-ECG; ECG extended, All extended, continued1 + extended
    assert row["windows"] == (1 + 30) * 78_624 + 3 * 60 * 619
    expected = batches("no-ECG", 31) + 3 * batches("target", 60)
    assert row["hours"] * 3600 == pytest.approx(expected)


def test_cells_and_baselines(rows):
    row = rows[("finetuning", "series2vec")]
    assert (row["runs"], row["n_cells"], row["epochs"]) == (9, 180, "300")
    assert row["windows"] == 180 * 300 * 619
    cell_s = 0.1 * 1000 + 300 * 0.01 * (619 + 172)  # set-up per fragment; epochs of train + val
    assert row["hours"] * 3600 == pytest.approx(180 * cell_s)
    base = rows[("baselines", "-")]
    assert (base["runs"], base["n_cells"]) == (1, 15)
    mean_cell = (0.1 * 1000 + 300 * 0.01 * 791 * (5 + 1 + 1) / 3)
    assert base["hours"] * 3600 == pytest.approx(15 * mean_cell)
    assert base["windows"] == pytest.approx(15 * 300 * 619 * 7 / 3)


def test_every_row_of_the_grid_and_the_total(rows):
    assert len(rows) == 3 * 3 + 1
    text = format_projection(list(rows.values()), "a fake GPU")
    total = sum(r["hours"] for r in rows.values())
    assert f"whole grid: {total:,.1f} hours" in text and "on a fake GPU" in text
    assert text.count("\n") == len(rows) + 1


def test_a_faster_device_projects_proportionally_fewer_hours():
    grid = load_grid(projection.PAPER_GRID, validate=False)
    slow = project(grid, fake_rates(1.0, 0.5), backbones=["ts2vec"])
    fast = project(grid, fake_rates(0.1, 0.05), backbones=["ts2vec"])
    assert fast[0]["hours"] == pytest.approx(slow[0]["hours"] / 10)
    assert [r["windows"] for r in fast] == [r["windows"] for r in slow]
