"""The runner: parameter validation against the notebook, papermill execution, run folders."""
import json
import os
from pathlib import Path

import pytest
import yaml

from ecgnb.workflow import runner
from ecgnb.runs import NOTEBOOKS, PROJECT_ROOT, SUCCESS, find_run

NB01 = PROJECT_ROOT / "notebooks" / "01_exploration.ipynb"


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


def test_declared_parameters_read_from_notebook():
    declared = runner.declared_parameters(NB01)
    assert {"fragment_root", "wesad_root", "use_small_data", "output_dir"} <= set(declared)
    assert declared["data_seed"]["inferred_type_name"] == "int"


def test_unknown_key_is_a_clear_error():
    with pytest.raises(runner.ParameterError, match=r"unknown parameter\(s\) \['fragment_rot'\]"):
        runner.validate_parameters(NB01, {"fragment_rot": "x"}, where="my.yaml")


@pytest.mark.parametrize("key, value", [("data_seed", "zero"), ("fs", "fast"),
                                        ("use_small_data", 1), ("channels", "ECG")])
def test_wrong_type_is_a_clear_error(key, value):
    with pytest.raises(runner.ParameterError, match=key):
        runner.validate_parameters(NB01, {key: value})


def test_int_accepted_for_float():
    runner.validate_parameters(NB01, {"fs": 250})


def test_every_params_file_fits_its_notebook():
    files = sorted(p for p in (PROJECT_ROOT / "params").glob("*/*.yaml") if p.parent.name != "grids")
    assert files, "no params files found"
    for path in files:
        notebook = PROJECT_ROOT / NOTEBOOKS[path.parent.name]
        assert notebook.is_file(), f"{path}: no notebook {notebook.name}"
        runner.validate_parameters(notebook, runner.read_params(path), where=str(path))


def test_params_hash_depends_on_params_and_parents():
    a = runner.params_hash({"x": 1})
    assert a == runner.params_hash({"x": 1})
    assert a != runner.params_hash({"x": 2}) != runner.params_hash({"x": 1}, ("p",))


@pytest.mark.slow
def test_execute_params_file_with_papermill(outputs, tmp_path):
    params = tmp_path / "smoke.yaml"
    params.write_text(yaml.safe_dump({"use_small_data": True, "n_examples": 1,
                                      "channels": ["ECG", "EDA"]}))
    folder = runner.execute(NB01, params, cwd=tmp_path)
    assert folder == outputs / "exploration" / "smoke"
    assert (folder / "01_exploration.ipynb").is_file()
    assert (folder / "figures.html").stat().st_size > 100_000
    config = json.loads((folder / "config.json").read_text())
    assert config["params"]["channels"] == ["ECG", "EDA"] and "torch" in config["versions"]
    record = json.loads((folder / SUCCESS).read_text())
    assert record["params_hash"] and record["summary"]["n_fragments"] > 0
    assert find_run("exploration/smoke") == folder
    with pytest.raises(FileExistsError, match="--overwrite"):
        runner.execute(NB01, params, cwd=tmp_path)


@pytest.mark.slow
def test_failed_run_is_recorded(outputs, tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text(yaml.safe_dump({"fragment_root": str(tmp_path / "missing"),
                                      "wesad_root": str(tmp_path / "missing")}))
    with pytest.raises(Exception):
        runner.execute(NB01, params, cwd=tmp_path)
    folder = outputs / "exploration" / "bad"
    assert "does not exist" in json.loads((folder / "_FAILED.json").read_text())["error"]
    assert not (folder / SUCCESS).exists()
    with pytest.raises(FileNotFoundError, match="failed"):
        find_run("exploration/bad")
