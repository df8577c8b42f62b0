"""Grid files: expansion into runs and dependencies, loud errors, validation before any run."""
from pathlib import Path

import nbformat
import pytest
import yaml

from ecgnb import cli, grid as grids, runner
from ecgnb.paths import PROJECT_ROOT
from ecgnb.runner import ParameterError

GRIDS = PROJECT_ROOT / "params" / "grids"
PARAMETERS = '''backbone: str = "ts2vec"
corpus: str = "ECG"
parent_run: str = ""
scenario: str = ""
encoder_run: str = ""
baselines: list = []
heads: list = ["mlp"]
modes: list = ["lp"]
seeds: list = [0]
label_fraction: float = 1.0
runs: list = []
n_epochs: int = 1
use_small_data: bool = True
output_dir: str = ""'''


def write_notebook(path: Path, parameters: str = PARAMETERS) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("pass")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def write_grid(path: Path, notebook: Path, **changes) -> Path:
    spec = {"name": "tiny", "common": {"use_small_data": True},
            "backbones": ["ts2vec", "tstcc"], "scenarios": ["ECG", "ECG continued1"],
            "pretraining": {"notebook": str(notebook), "n_epochs": 2},
            "continuation": {"notebook": str(notebook)},
            "finetuning": {"notebook": str(notebook), "heads": ["mlp", "fcn"], "seeds": [0, 1]},
            "baselines": {"notebook": str(notebook), "models": ["mlp"]}}
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def fake_nb(tmp_path):
    return write_notebook(tmp_path / "fake.ipynb")


def test_paper_grid_expands_to_the_study():
    grid = grids.load_grid(GRIDS / "paper.yaml", validate=False)
    counts = grid.counts()
    assert counts["pretraining"]["runs"] == 3 * 4  # ECG, All, ECG+target, All+target
    assert counts["continuation"]["runs"] == 3 * 5
    assert counts["finetuning"] == {"runs": 9 * 3, "cells": 9 * 3 * 2 * 2 * 5}
    assert counts["baselines"] == {"runs": 1, "cells": 3 * 5}
    base = {r.params["corpus"] for r in grid.runs.values() if r.stage == "pretraining"}
    assert base == {"ECG", "All", "ECG+target", "All+target"}
    params = grid.runs["pretrain/series2vec-ecg"].params
    assert (params["n_epochs"], params["batch_size"], params["use_small_data"]) == (600, 64, False)
    assert grid.runs["finetune/tstcc-ecg-f1.0"].params["n_epochs"] == 300


def test_continuations_chain_to_their_parent_scenario():
    grid = grids.load_grid(GRIDS / "paper.yaml", validate=False)
    run = grid.runs["continue/ts2vec-continued1-extended"]
    assert run.parents == ("continue/ts2vec-ecg-continued1",)
    assert run.params["parent_run"] == "paper/continue/ts2vec-ecg-continued1"
    assert run.params["scenario"] == "continued1 + extended"
    assert grid.runs["continue/ts2vec-all-extended"].parents == ("pretrain/ts2vec-all",)
    down = grid.runs["finetune/ts2vec-ecg-continued1-f1.0"]
    assert down.parents == ("continue/ts2vec-ecg-continued1",)
    assert down.params["encoder_run"] == "paper/continue/ts2vec-ecg-continued1"
    names = list(grid.runs)
    assert all(names.index(p) < names.index(n) for n, r in grid.runs.items() for p in r.parents)
    embed = grid.runs["embed/ts2vec-ecg-vs-ecg-continued1"]
    assert embed.params["runs"] == ["paper/finetune/ts2vec-ecg-f1.0",
                                    "paper/finetune/ts2vec-ecg-continued1-f1.0"]


def test_demo_grid_has_the_study_shape():
    grid = grids.load_grid(GRIDS / "demo.yaml", validate=False)
    scenarios = {r.params.get("scenario") or r.params.get("corpus") for r in grid.runs.values()
                 if r.stage in ("pretraining", "continuation")}
    assert {"ECG", "All", "ECG continued1", "ECG extended"} <= scenarios
    backbones = {r.params["backbone"] for r in grid.runs.values() if r.stage == "pretraining"}
    assert backbones == {"ts2vec", "tstcc", "series2vec"}
    down = [r.params for r in grid.runs.values() if r.stage == "finetuning"]
    assert len(down) == 3 * 4 and all(len(p["seeds"]) >= 2 for p in down)
    assert all(set(p["heads"]) == {"mlp", "fcn"} and set(p["modes"]) == {"lp", "ft"} for p in down)
    baselines = [r.params for r in grid.runs.values() if r.stage == "baselines"]
    assert [p["baselines"] for p in baselines] == [["hinception", "mlp", "fcn"]]
    assert sum(r.stage == "embeddings" for r in grid.runs.values()) == 1
    assert 20 <= len(grid.runs) <= 40


@pytest.mark.parametrize("name", ["paper.yaml", "demo.yaml", "embedded.yaml"])
def test_grid_files_fit_the_notebooks(name):
    grids.load_grid(GRIDS / name)  # every run's parameters checked, as `ecgnb run` does


def test_hash_follows_params_and_parents(tmp_path, fake_nb):
    grid = grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    changed = grids.load_grid(write_grid(tmp_path / "h.yaml", fake_nb, continuation={
        "notebook": str(fake_nb), "n_epochs": 7}))
    before, after = grid.hashes(), changed.hashes()
    differ = {n for n in before if before[n] != after[n]}
    assert differ == {"continue/ts2vec-ecg-continued1", "continue/tstcc-ecg-continued1",
                      "finetune/ts2vec-ecg-continued1-f1.0", "finetune/tstcc-ecg-continued1-f1.0"}


def test_overrides_by_backbone_and_step(tmp_path, fake_nb):
    path = write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG extended"],
                      pretraining={"notebook": str(fake_nb), "n_epochs": 2,
                                   "by_backbone": {"tstcc": {"n_epochs": 5}}},
                      continuation={"notebook": str(fake_nb), "by_step": {"extended": {"n_epochs": 3}}})
    grid = grids.load_grid(path)
    assert grid.runs["pretrain/ts2vec-ecg"].params["n_epochs"] == 2
    assert grid.runs["pretrain/tstcc-ecg"].params["n_epochs"] == 5
    assert grid.runs["continue/tstcc-ecg-extended"].params["n_epochs"] == 3
    assert "finetune/ts2vec-ecg-f1.0" not in grid.runs  # ECG only as the chain's start


def test_only_selects_matches_and_their_ancestors(tmp_path, fake_nb):
    grid = grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    assert grid.select("finetune/tstcc-ecg-continued1*") == [
        "pretrain/tstcc-ecg", "continue/tstcc-ecg-continued1", "finetune/tstcc-ecg-continued1-f1.0"]
    with pytest.raises(grids.GridError, match="matches no run"):
        grid.select("nothing*")


def test_label_fractions_multiply_downstream_runs(tmp_path, fake_nb):
    path = write_grid(tmp_path / "g.yaml", fake_nb, finetuning={
        "notebook": str(fake_nb), "label_fractions": [0.1, 1.0], "heads": ["mlp"]})
    grid = grids.load_grid(path)
    assert {"finetune/ts2vec-ecg-f0.1", "finetune/ts2vec-ecg-f1.0",
            "finetune/supervised-f0.1", "finetune/supervised-f1.0"} <= set(grid.runs)
    assert grid.runs["finetune/ts2vec-ecg-f0.1"].params["label_fraction"] == 0.1


@pytest.mark.parametrize("changes, error, match", [
    ({"sweeps": 3}, grids.GridError, r"unknown key\(s\) \['sweeps'\]"),
    ({"scenarios": ["ECG", "ECG continued2"]}, grids.GridError, "unknown scenario"),
    ({"backbones": ["ts2vec", "resnet"]}, grids.GridError, "unknown backbone"),
    ({"pretraining": {"corpus": "All"}}, grids.GridError, "may not set"),
    ({"embeddings": {"compare": [{"backbone": "ts2vec", "scenarios": ["ECG", "All"]}]}},
     grids.GridError, "no run"),
])
def test_grid_errors_name_the_key_and_the_file(tmp_path, fake_nb, changes, error, match):
    path = write_grid(tmp_path / "bad.yaml", fake_nb, **changes)
    with pytest.raises(error, match=match) as info:
        grids.load_grid(path)
    assert "bad.yaml" in str(info.value)


@pytest.mark.parametrize("section, match", [
    ({"n_epoch": 3}, r"unknown parameter\(s\) \['n_epoch'\]"),
    ({"n_epochs": "three"}, "'n_epochs' must be int"),
    ({"seeds": 3}, "'seeds' must be a list"),
])
def test_parameter_errors_before_anything_runs(tmp_path, fake_nb, monkeypatch, capsys,
                                               section, match):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "outputs"))
    path = write_grid(tmp_path / "bad.yaml", fake_nb,
                      finetuning={"notebook": str(fake_nb), **section})
    with pytest.raises(ParameterError, match=match) as info:
        grids.load_grid(path)
    assert "bad.yaml" in str(info.value) and "finetune/" in str(info.value)
    assert cli.main(["run", str(path)]) == 2
    assert match.split("'")[1] in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_common_key_declared_nowhere_is_an_error(tmp_path, fake_nb):
    path = write_grid(tmp_path / "bad.yaml", fake_nb, common={"use_smal_data": True})
    with pytest.raises(ParameterError, match="use_smal_data"):
        grids.load_grid(path)


def test_resources_are_checked_per_stage_and_left_out_of_the_hash(tmp_path, fake_nb):
    nb = str(fake_nb)
    plain = grids.load_grid(write_grid(tmp_path / "plain.yaml", fake_nb))
    grid = grids.load_grid(write_grid(
        tmp_path / "g.yaml", fake_nb,
        pretraining={"notebook": nb, "n_epochs": 2, "resources": {"num_cpus": 2, "num_gpus": 1}},
        finetuning={"notebook": nb, "heads": ["mlp", "fcn"], "seeds": [0, 1],
                    "resources": {"num_gpus": 0.25}}))
    assert grid.resources == {"pretraining": {"num_cpus": 2, "num_gpus": 1},
                              "finetuning": {"num_gpus": 0.25}, "baselines": {"num_gpus": 0.25}}
    assert grid.hashes() == plain.hashes()  # where a run executes is not what it computes
    assert not any("resources" in run.params for run in grid.runs.values())
    for bad, match in (({"gpus": 1}, r"unknown key\(s\) \['gpus'\]"), ({"num_gpus": -1}, ">= 0"),
                       ({"num_cpus": True}, ">= 0"), ({"num_gpus": 1.5}, "whole"),
                       ("one gpu", "must be a mapping")):
        path = write_grid(tmp_path / "bad.yaml", fake_nb,
                          pretraining={"notebook": nb, "resources": bad})
        with pytest.raises(grids.GridError, match=match):
            grids.load_grid(path)
