"""Fixtures of the data tests: labelled toy windows grouped in records."""
import numpy as np
import pytest

from ecgnb.data.windows import Windows


def make_toy_windows(n_groups=30, per_group=5, seed=0) -> Windows:
    """``n_groups`` records of ``per_group`` flat windows, one random class (of 3) per record."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"r{i}" for i in range(n_groups)], per_group)
    y = np.repeat(rng.integers(0, 3, n_groups), per_group)
    return Windows(x=np.zeros((len(y), 1, 8), np.float32), y=y, groups=groups,
                   domains=np.full(len(y), "ECG"), fs=4.0, classes=("a", "b", "c"))


@pytest.fixture
def toy_windows():
    """:func:`make_toy_windows`, to call with its arguments."""
    return make_toy_windows
