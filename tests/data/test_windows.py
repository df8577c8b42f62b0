"""The Windows type: concatenation, subsets, unlabelled copies, the multi-label layout."""
import numpy as np
import pytest

from ecgnb.data.windows import DataError, Windows


def test_windows_concat_and_subset(toy_windows):
    w = toy_windows()
    both = Windows.concat([w.subset([0, 1]), w.subset([5])])
    assert len(both) == 3 and both.groups.tolist() == ["r0", "r0", "r1"]
    assert (w.unlabelled().y == -1).all()


def multilabel_windows():
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.int8)
    return Windows(x=np.zeros((4, 12, 5), np.float32), y=y, groups=np.array(["a", "a", "b", "c"]),
                   domains=np.full(4, "ECG"), fs=100.0, classes=("NORM", "MI", "CD"),
                   leads=tuple(f"L{j}" for j in range(12)))


def test_multilabel_windows_layout(toy_windows):
    w = multilabel_windows()
    assert w.is_multilabel and not toy_windows().is_multilabel
    assert np.array_equal(w.indicator(), w.y) and w.subset([2, 0]).y.tolist() == [[1, 1, 0],
                                                                                 [1, 0, 1]]
    unlabelled = w.unlabelled()
    assert unlabelled.y.shape == (4,) and (unlabelled.y == -1).all()
    card = w.card().set_index("class")
    assert card.loc["NORM", "windows"] == 2 and card.loc["MI", "groups"] == 2
    assert Windows.concat([w, w.subset([1])]).y.shape == (5, 3)
    with pytest.raises(DataError, match="single-label and multi-label"):
        Windows.concat([w, w.unlabelled()])
    with pytest.raises(ValueError, match="indicator matrix of 3 classes, but 2"):
        Windows(x=w.x, y=w.y, groups=w.groups, domains=w.domains, fs=100.0, classes=("a", "b"))
    with pytest.raises(ValueError, match="leads names 2 channels, x has 12"):
        Windows(x=w.x, y=w.y, groups=w.groups, domains=w.domains, fs=100.0, classes=w.classes,
                leads=("I", "II"))


def test_single_label_indicator_is_one_hot(toy_windows):
    w = toy_windows(n_groups=4, per_group=2)
    y = w.y.copy()
    y[0] = -1
    w = Windows(x=w.x, y=y, groups=w.groups, domains=w.domains, fs=w.fs, classes=w.classes)
    one_hot = w.indicator()
    assert one_hot.dtype == np.int8 and one_hot[0].sum() == 0
    assert (one_hot[1:].argmax(1) == y[1:]).all() and (one_hot[1:].sum(1) == 1).all()
