"""Results tables with known answers, shared by the report's tests."""
import pandas as pd
import pytest

from ecgnb.report.tables import KEYS, METRICS

SEEDS = range(5)


def make_cells(scenario, mode, test, val, backbone="ts2vec", head="mlp", fraction=1.0):
    """Five seeds of one cell: test = ``test`` + 0.01 * seed, validation = ``val`` + 0.01 * seed."""
    rows = []
    for seed in SEEDS:
        row = dict(zip(KEYS, (scenario, backbone, head, mode, fraction, seed)))
        row.update({m: test + 0.01 * seed for m in METRICS})
        row.update({f"val_{m}": val + 0.01 * seed for m in METRICS})
        row.update({"run": f"g/{backbone}-{scenario}", "cell": f"{head}-{mode}-s{seed}"})
        rows.append(row)
    return rows


@pytest.fixture
def cells():
    """``cells(scenario, mode, test, val, backbone="ts2vec", head="mlp", fraction=1.0)``: five
    seeds of one cell (:func:`make_cells`)."""
    return make_cells


@pytest.fixture
def known(cells) -> pd.DataFrame:
    """ECG continued1 = ECG + 5 points in both modes; FT wins on test, LP on validation;
    H-InceptionTime = the best SSL cell (continued1, LP) - 10 points."""
    rows = (cells("ECG", "lp", 0.50, 0.60) + cells("ECG", "ft", 0.60, 0.40)
            + cells("ECG continued1", "lp", 0.55, 0.65) + cells("ECG continued1", "ft", 0.65, 0.45)
            + cells("none", "supervised", 0.45, 0.45, backbone="supervised", head="hinception"))
    return pd.DataFrame(rows)
