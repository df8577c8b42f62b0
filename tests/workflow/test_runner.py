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
    files = sorted(p for p in (PROJECT_ROOT / "params").glob("*/*.yaml")
                   if p.parent.name not in ("grids", "datasets"))  # cards: tests/data/test_cards.py
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
    first = record["artefacts"]["figures.html"]["sha256"]
    runner.execute(NB01, params, cwd=tmp_path, overwrite=True)  # the result is set aside first
    aside, = (folder / "superseded").iterdir()
    assert json.loads((aside / SUCCESS).read_text())["artefacts"]["figures.html"]["sha256"] == first
    assert find_run("exploration/smoke") == folder


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


# --------------------------------------------------------------------------- ranges, devices, parents
NUMERIC = [(nb, name, info["inferred_type_name"].removeprefix("Optional[").removesuffix("]"))
           for nb in sorted(NOTEBOOKS.values())
           for name, info in runner.declared_parameters(PROJECT_ROOT / nb).items()
           if info["inferred_type_name"] in ("int", "float", "Optional[int]", "Optional[float]")]


def test_every_numeric_parameter_has_a_range():
    from ecgnb.config import PARAMETER_RANGES
    assert {name for _, name, _ in NUMERIC} <= set(PARAMETER_RANGES)


@pytest.mark.parametrize("notebook, name, kind", NUMERIC)
def test_every_numeric_parameter_rejects_out_of_range_values(notebook, name, kind):
    from ecgnb.config import parameter_range
    from ecgnb.runs import stage_of
    allowed = parameter_range(name, stage_of(notebook))
    bad = [allowed.low - 1] if allowed.low is not None else []
    bad += [allowed.low] if allowed.low_open else []
    bad += [allowed.high + 1] if allowed.high is not None else []
    bad += [float("nan")] if kind == "float" else []
    assert bad, f"{name}: no out-of-range value to try"
    for value in bad:
        value = int(value) if kind == "int" and value == value else value
        with pytest.raises(runner.ParameterError, match=f"'{name}' must be"):
            runner.validate_parameters(PROJECT_ROOT / notebook, {name: value}, where="p.yaml")


@pytest.mark.parametrize("values", [{"n_epochs": -3}, {"lr": -0.1}, {"corpus_fraction": 1.5},
                                    {"seeds": [0, -1]}, {"n_epochs": 0, "seeds": [0]}])
def test_typed_configs_check_the_same_ranges(values):
    from ecgnb.finetuning import FinetuneConfig
    from ecgnb.pretraining import PretrainConfig
    cls = FinetuneConfig if "seeds" in values else PretrainConfig  # pretraining allows 0 epochs
    with pytest.raises(ValueError, match="must be"):
        cls(**values)


def test_none_means_the_default_and_is_not_range_checked():
    nb03 = PROJECT_ROOT / NOTEBOOKS["regularization"]
    runner.validate_parameters(nb03, {"n_epochs": None, "lr": None})
    with pytest.raises(runner.ParameterError, match="'n_epochs' must be >= 1, got -5"):
        runner.validate_parameters(nb03, {"n_epochs": -5})


def test_an_optional_parameter_takes_none_and_its_type():
    nb04 = PROJECT_ROOT / NOTEBOOKS["finetuning"]  # n_epochs: "Optional[int]" = 8
    runner.validate_parameters(nb04, {"n_epochs": None})
    runner.validate_parameters(nb04, {"n_epochs": 300})
    with pytest.raises(runner.ParameterError, match="'n_epochs' must be int"):
        runner.validate_parameters(nb04, {"n_epochs": "300"})


def test_cuda_without_cuda_is_caught_before_the_kernel(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    nb02 = PROJECT_ROOT / NOTEBOOKS["pretraining"]
    with pytest.raises(runner.ParameterError, match="'device' is 'cuda:1' but this machine has 0"):
        runner.validate_parameters(nb02, {"device": "cuda:1"}, where="p.yaml")
    runner.validate_parameters(nb02, {"device": "cpu"})


def test_a_missing_parent_is_caught_before_the_kernel(outputs, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("parent_run: g/pretraining/nothing\n")
    with pytest.raises(runner.ParameterError, match="p.yaml: parent_run run 'g/pretraining/nothing' "
                                                    "is missing or unfinished"):
        runner.execute(PROJECT_ROOT / NOTEBOOKS["regularization"], params)
    assert not (outputs / "regularization" / "p").exists()  # no kernel, no folder


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("n_epochs: 2\nlr: [0.1\nseed: 0\n")
    with pytest.raises(runner.ParameterError, match=r"bad.yaml:\d+:\d+: malformed YAML"):
        runner.read_params(path)


# --------------------------------------------------------------------------- failures, one line
def _fake_papermill(monkeypatch, fail: BaseException | None, after_pending: bool = True):
    """papermill.execute_notebook standing in for a kernel: first cell, artefact, last cell,
    then the notebook save (or ``fail``)."""
    import papermill

    from ecgnb import runs

    def execute_notebook(src, dst, parameters, **kwargs):
        out = runs.start_stage({"seed": 0}, "exploration", parameters["output_dir"])
        (out / "figures.html").write_text("<html/>")
        if after_pending:
            runs.finish_stage(out, {"n": 1})
        if fail is not None:
            raise fail
        Path(dst).write_text('{"cells": []}')

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def test_a_full_disk_while_saving_the_notebook_is_one_line_and_no_success(outputs, tmp_path,
                                                                          monkeypatch):
    from ecgnb import runs
    params = tmp_path / "p.yaml"
    params.write_text("n_examples: 1\n")
    _fake_papermill(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(runner.RunError) as info:
        runner.execute(NB01, params)
    assert "01_exploration.ipynb: OSError: [Errno 28] No space left on device" in str(info.value)
    folder = outputs / "exploration" / "p"
    assert not runs.is_complete(folder) and (folder / runs.PENDING).is_file()
    assert json.loads((folder / runs.FAILED).read_text())["error"].startswith("OSError: [Errno 28]")
    _fake_papermill(monkeypatch, None)  # space freed: the same command completes the run
    assert runner.execute(NB01, params) == folder and runs.is_complete(folder)
    assert not (folder / runs.FAILED).exists()
    assert "01_exploration.ipynb" in runs.completion_record(folder)["artefacts"]


def test_an_error_in_a_notebook_is_its_own_exception_line(outputs, tmp_path, monkeypatch):
    from papermill.exceptions import PapermillExecutionError
    params = tmp_path / "p.yaml"
    params.write_text("n_examples: 1\n")
    error = PapermillExecutionError(3, 4, "load()", "DataError", "x.hea: record has no samples",
                                    ["long", "traceback"] * 50)
    _fake_papermill(monkeypatch, error, after_pending=False)
    with pytest.raises(runner.RunError) as info:
        runner.execute(NB01, params)
    assert "\n" not in str(info.value)
    assert "cell [4]: DataError: x.hea: record has no samples" in str(info.value)


def test_without_the_last_cell_the_run_fails(outputs, tmp_path, monkeypatch):
    params = tmp_path / "p.yaml"
    params.write_text("n_examples: 1\n")
    _fake_papermill(monkeypatch, None, after_pending=False)
    with pytest.raises(runner.RunError, match="finish_stage"):
        runner.execute(NB01, params)


# --------------------------------------------------------------------------- kernels
def test_a_kernel_that_dies_before_it_starts_is_started_again_at_once(outputs, tmp_path,
                                                                      monkeypatch, capsys):
    import papermill

    from ecgnb import runs
    from ecgnb.workflow import kernel
    params = tmp_path / "p.yaml"
    params.write_text("n_examples: 1\n")
    _fake_papermill(monkeypatch, None)
    works, calls = papermill.execute_notebook, []

    def start_fails_once(src, dst, parameters, **kwargs):
        calls.append(kwargs["kernel_manager_class"])
        if len(calls) == 1:  # nbclient's words for a kernel gone before its first reply
            raise RuntimeError("Kernel died before replying to kernel_info")
        return works(src, dst, parameters, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", start_fails_once)
    monkeypatch.setattr(kernel, "START_BACKOFF_S", 0.01)
    folder = runner.execute(NB01, params)
    assert len(calls) == 2 and runs.is_complete(folder) and not (folder / runs.FAILED).exists()
    assert issubclass(calls[0], kernel.WatchedKernelManager)
    assert "kernel start 1 failed (RuntimeError: Kernel died before replying to kernel_info)" \
        in capsys.readouterr().err

    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **kw: calls.append(1) or (
        _ for _ in ()).throw(RuntimeError("Kernel didn't respond in 60 seconds")))
    with pytest.raises(runner.RunError, match="Kernel didn't respond in 60 seconds"):
        runner.execute(NB01, params, overwrite=True)
    assert len(calls) == kernel.START_TRIES  # then it is a failure of the run


def test_a_failure_record_the_disk_refuses_is_not_claimed(outputs, tmp_path, monkeypatch):
    params = tmp_path / "p.yaml"
    params.write_text("n_examples: 1\n")
    _fake_papermill(monkeypatch, OSError(28, "No space left on device"))

    def no_space(path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "write_json", no_space)
    with pytest.raises(runner.RunError) as info:
        runner.execute(NB01, params)
    assert "_FAILED.json could not be written in" in str(info.value)
    assert "executed notebook and _FAILED.json" not in str(info.value)
    assert not (outputs / "exploration" / "p" / "_FAILED.json").exists()


def test_how_a_kernel_died_in_one_line():
    from ecgnb.workflow.kernel import death_line
    assert death_line({"returncode": -9, "signal": "SIGKILL", "peak_rss_bytes": 5.1e9}, 812.3) \
        == "kernel killed by SIGKILL (out of memory?) after 812 s, peak RSS 5.1 GB"
    assert death_line({"returncode": -11, "signal": "SIGSEGV"}, 3) == \
        "kernel killed by SIGSEGV after 3 s"
    assert death_line({"returncode": 1, "peak_rss_bytes": 2e8}, 3) == \
        "kernel exited with status 1 after 3 s, peak RSS 200 MB"
    assert death_line({}, 3) == "kernel died after 3 s"
