"""ecgnb/exploration.py: the window browser of notebook 01."""
import numpy as np

from ecgnb.data import Windows
from ecgnb.exploration import browse


def tiny_windows():
    y = np.array([0, 0, 1, 1, 1, 2])
    x = np.stack([np.full((1, 20), float(i)) for i in range(len(y))]).astype(np.float32)
    groups = np.array(["a", "b", "c", "c", "d", "e"])
    return Windows(x, y, groups, np.full(len(y), "ECG"), 10.0, ("A", "B", "C"))


def test_a_class_change_shows_a_window_of_that_class_at_once():
    box = browse(tiny_windows())
    (kind, group, index), fig = box.children[0].children, box.children[1]
    assert group.value == "a" and fig.data[0].y[0] == 0.0  # the first group of the first class
    kind.value = "B"
    assert group.value == "c" and fig.data[0].y[0] == 2.0  # no group pick needed
    index.value = 1
    assert fig.data[0].y[0] == 3.0
    kind.value = "C"
    assert group.value == "e" and fig.data[0].y[0] == 5.0


def test_multilabel_multilead_windows_are_shown_by_label_set_on_lead_ii(make_multilabel_task):
    from ecgnb.plots import gallery, labels_of

    windows, _ = make_multilabel_task(4, 3, 20)
    box = browse(windows)
    (kind, group, _index), fig = box.children[0].children, box.children[1]
    assert any("+" in option for option in kind.options)
    shown = np.flatnonzero((labels_of(windows, "class") == kind.value)
                           & (windows.groups == group.value))[0]
    np.testing.assert_allclose(fig.data[0].y, windows.x[shown, 1])
    assert fig.layout.title.text.endswith("(lead II)")
    assert gallery(windows, n_per=1).layout.title.text == "Examples per class (lead II)"
