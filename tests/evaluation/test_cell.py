"""ecgnb/evaluation/cell.py: a length-bound encoder is refused on windows of another length."""
import numpy as np
import pytest

from ecgnb.data import Windows
from ecgnb.evaluation.cell import check_length
from ecgnb.models import build


def windows_of(n_timesteps: int, n_leads: int = 3) -> Windows:
    """Four labelled windows of ``n_leads`` leads at 100 Hz."""
    x = np.random.default_rng(0).normal(size=(4, n_leads, n_timesteps)).astype(np.float32)
    return Windows(x, np.array([0, 1, 0, 1]), np.array(["a", "b", "c", "d"]),
                   np.full(4, "ECG"), 100.0, ("NORM", "MI"))


def test_series2vec_built_for_one_length_is_refused_on_another():
    encoder = build("series2vec", seed=0, verbose=False, emb_size=4, rep_size=16, n_heads=2,
                    dim_ff=16, fs=100.0).build(200)
    assert not encoder.reads_any_length
    check_length(encoder, windows_of(200))  # its pretraining length: accepted
    with pytest.raises(ValueError, match=r"series2vec reads windows of 200 samples only .* are "
                                         r"1000 at 100 Hz: set the card's window_s to 2$"):
        check_length(encoder, windows_of(1000))


def test_ts2vec_reads_any_length():
    encoder = build("ts2vec", seed=0, verbose=False, hidden_dims=4, output_dims=8,
                    depth=1).build(200)
    assert encoder.reads_any_length
    check_length(encoder, windows_of(1000))  # no error
    assert encoder.encode(windows_of(1000, n_leads=1).x).shape == (4, 8)
