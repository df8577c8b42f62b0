"""The Windows type: concatenation, subsets, unlabelled copies."""

from ecgnb.data.windows import Windows


def test_windows_concat_and_subset(toy_windows):
    w = toy_windows()
    both = Windows.concat([w.subset([0, 1]), w.subset([5])])
    assert len(both) == 3 and both.groups.tolist() == ["r0", "r0", "r1"]
    assert (w.unlabelled().y == -1).all()
