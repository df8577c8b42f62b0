"""The Windows type: concatenation, subsets, unlabelled copies."""
import numpy as np

from ecgnb.data.windows import Windows


def _toy_windows(n_groups=30, per_group=5, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"r{i}" for i in range(n_groups)], per_group)
    y = np.repeat(rng.integers(0, 3, n_groups), per_group)
    return Windows(x=np.zeros((len(y), 1, 8), np.float32), y=y, groups=groups,
                   domains=np.full(len(y), "ECG"), fs=4.0, classes=("a", "b", "c"))


def test_windows_concat_and_subset():
    w = _toy_windows()
    both = Windows.concat([w.subset([0, 1]), w.subset([5])])
    assert len(both) == 3 and both.groups.tolist() == ["r0", "r0", "r1"]
    assert (w.unlabelled().y == -1).all()
