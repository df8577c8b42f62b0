"""Notebook 06's stage module: the table it reads, a synthetic one when none is given."""
import pytest

from ecgnb import results
from ecgnb.report.collect import read_results, synthetic_results, write_csv


def test_results_are_read_or_synthesised(tmp_path):
    frame, source = results.load_results("", tmp_path, seed=3)
    assert "synthetic" in source and (tmp_path / "synthetic_results.csv").is_file()
    assert frame.equals(read_results(tmp_path / "synthetic_results.csv"))
    write_csv(synthetic_results(seed=1, n_seeds=2), tmp_path / "results.csv")
    frame, source = results.load_results(str(tmp_path / "results.csv"), tmp_path / "run")
    assert source == str(tmp_path / "results.csv") and frame["seed"].nunique() == 2


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        results.ResultsConfig(n_boot=-1)
