"""Grid files: expansion into runs and dependencies, loud errors, validation before any run."""
from pathlib import Path

import nbformat
import pytest
import yaml

from ecgnb import cli
from ecgnb.workflow import grid as grids
from ecgnb.workflow import runner
from ecgnb.runs import PROJECT_ROOT
from ecgnb.workflow.runner import ParameterError

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
            "regularization": {"notebook": str(notebook)},
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
    assert counts["regularization"]["runs"] == 3 * 5
    assert counts["finetuning"] == {"runs": 9 * 3, "cells": 9 * 3 * 2 * 2 * 5}
    assert counts["baselines"] == {"runs": 1, "cells": 3 * 5}
    base = {r.params["corpus"] for r in grid.runs.values() if r.section == "pretraining"}
    assert base == {"ECG", "All", "ECG+target", "All+target"}
    params = grid.runs["pretraining/series2vec-ecg"].params
    assert (params["n_epochs"], params["batch_size"], params["use_small_data"]) == (600, 64, False)
    assert grid.runs["finetuning/tstcc-ecg-f1.0"].params["n_epochs"] == 300


def test_continuations_chain_to_their_parent_scenario():
    grid = grids.load_grid(GRIDS / "paper.yaml", validate=False)
    run = grid.runs["regularization/ts2vec-continued1-extended"]
    assert run.parents == ("regularization/ts2vec-ecg-continued1",)
    assert run.params["parent_run"] == "paper/regularization/ts2vec-ecg-continued1"
    assert run.params["scenario"] == "continued1 + extended"
    assert grid.runs["regularization/ts2vec-all-extended"].parents == ("pretraining/ts2vec-all",)
    down = grid.runs["finetuning/ts2vec-ecg-continued1-f1.0"]
    assert down.parents == ("regularization/ts2vec-ecg-continued1",)
    assert down.params["encoder_run"] == "paper/regularization/ts2vec-ecg-continued1"
    names = list(grid.runs)
    assert all(names.index(p) < names.index(n) for n, r in grid.runs.items() for p in r.parents)
    embed = grid.runs["embeddings/ts2vec-ecg-vs-ecg-continued1"]
    assert embed.params["runs"] == ["paper/finetuning/ts2vec-ecg-f1.0",
                                    "paper/finetuning/ts2vec-ecg-continued1-f1.0"]


def test_demo_grid_answers_the_study_questions():
    grid = grids.load_grid(GRIDS / "demo.yaml", validate=False)
    backbones = ("ts2vec", "tstcc", "series2vec")
    assert {f"{s}/{b}-{e}" for b in backbones for s, e in (("pretraining", "ecg"),
            ("pretraining", "untrained"), ("regularization", "ecg-continued1"))} <= set(grid.runs)
    untrained = {r.params["backbone"] for r in grid.runs.values()
                 if r.section == "pretraining" and r.params["n_epochs"] == 0}
    assert untrained == set(backbones)  # (a) every backbone beside its initial weights
    down = [r for r in grid.runs.values() if r.section == "finetuning"]
    fractions = {r.params["label_fraction"] for r in down}
    assert len(fractions) >= 2 and 1.0 in fractions  # (c) a label-efficiency curve
    assert {r.params["encoder_run"].split("-", 1)[1] for r in down} == {
        "untrained", "ecg", "ecg-continued1"}
    assert all(len(r.params["seeds"]) >= 2 for r in down)
    assert sum(r.section == "baselines" for r in grid.runs.values()) == len(fractions)
    assert sum(r.section == "embeddings" for r in grid.runs.values()) == 1


@pytest.mark.parametrize("path", sorted(GRIDS.glob("*.yaml")), ids=lambda p: p.name)
def test_grid_files_fit_the_notebooks(path):
    grids.load_grid(path)  # every run's parameters checked, as `ecgnb run` does


def test_hash_follows_params_and_parents(tmp_path, fake_nb):
    grid = grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    changed = grids.load_grid(write_grid(tmp_path / "h.yaml", fake_nb, regularization={
        "notebook": str(fake_nb), "n_epochs": 7}))
    before, after = grid.hashes(), changed.hashes()
    differ = {n for n in before if before[n] != after[n]}
    assert differ == {"regularization/ts2vec-ecg-continued1", "regularization/tstcc-ecg-continued1",
                      "finetuning/ts2vec-ecg-continued1-f1.0", "finetuning/tstcc-ecg-continued1-f1.0"}


def test_overrides_by_backbone_and_step(tmp_path, fake_nb):
    path = write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG extended"],
                      pretraining={"notebook": str(fake_nb), "n_epochs": 2,
                                   "by_backbone": {"tstcc": {"n_epochs": 5}}},
                      regularization={"notebook": str(fake_nb), "by_step": {"extended": {"n_epochs": 3}}})
    grid = grids.load_grid(path)
    assert grid.runs["pretraining/ts2vec-ecg"].params["n_epochs"] == 2
    assert grid.runs["pretraining/tstcc-ecg"].params["n_epochs"] == 5
    assert grid.runs["regularization/tstcc-ecg-extended"].params["n_epochs"] == 3
    assert "finetuning/ts2vec-ecg-f1.0" not in grid.runs  # ECG only as the chain's start


def test_untrained_is_notebook_02_with_0_epochs_downstream_like_the_others(tmp_path, fake_nb):
    grid = grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb,
                                      scenarios=["untrained", "ECG", "ECG continued1"]))
    run = grid.runs["pretraining/ts2vec-untrained"]
    assert run.section == "pretraining" and run.parents == ()
    assert (run.params["n_epochs"], run.params["corpus"]) == (0, "ECG")
    assert grid.runs["pretraining/ts2vec-ecg"].params["n_epochs"] == 2
    down = grid.runs["finetuning/ts2vec-untrained-f1.0"]
    assert down.parents == ("pretraining/ts2vec-untrained",)
    assert down.params["encoder_run"] == "tiny/pretraining/ts2vec-untrained"
    ecg = grid.runs["finetuning/ts2vec-ecg-f1.0"].params
    assert {k: v for k, v in down.params.items() if k != "encoder_run"} == \
        {k: v for k, v in ecg.items() if k != "encoder_run"}
    assert down.n_cells == grid.runs["finetuning/ts2vec-ecg-f1.0"].n_cells == 4


def test_only_selects_matches_and_their_ancestors(tmp_path, fake_nb):
    grid = grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    assert grid.select("finetuning/tstcc-ecg-continued1*") == [
        "pretraining/tstcc-ecg", "regularization/tstcc-ecg-continued1", "finetuning/tstcc-ecg-continued1-f1.0"]
    with pytest.raises(grids.GridError, match="matches no run"):
        grid.select("nothing*")


def test_label_fractions_multiply_downstream_runs(tmp_path, fake_nb):
    path = write_grid(tmp_path / "g.yaml", fake_nb, finetuning={
        "notebook": str(fake_nb), "label_fractions": [0.1, 1.0], "heads": ["mlp"]})
    grid = grids.load_grid(path)
    assert {"finetuning/ts2vec-ecg-f0.1", "finetuning/ts2vec-ecg-f1.0",
            "finetuning/supervised-f0.1", "finetuning/supervised-f1.0"} <= set(grid.runs)
    assert grid.runs["finetuning/ts2vec-ecg-f0.1"].params["label_fraction"] == 0.1


def test_a_corpus_card_is_a_scenario(tmp_path, fake_nb):
    card = tmp_path / "my-corpus.yaml"
    card.write_text("kind: corpus\nformat: npz\nroot: ${MY_CORPUS}\nchannels: [0]\nfs: 250\n")
    grid = grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb,
                                      scenarios=["untrained", "ECG", str(card)]))
    run = grid.runs["pretraining/ts2vec-my-corpus"]
    assert run.params["corpus"] == str(card)
    assert grid.runs["finetuning/ts2vec-my-corpus-f1.0"].parents == ("pretraining/ts2vec-my-corpus",)
    card.write_text("kind: corpus\nformat: npz\nroot: x\nlabels: l.csv\n")
    with pytest.raises(grids.GridError, match=r"g.yaml: scenario card .*my-corpus.yaml: unknown "
                                              r"key\(s\) \['labels'\]"):
        grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb, scenarios=[str(card)]))


def test_the_ptbxl_grid_transfers_to_the_embedded_ptbxl_card():
    grid = grids.load_grid(GRIDS / "ptbxl.yaml")
    down = [r for r in grid.runs.values() if r.section in ("finetuning", "baselines")]
    card = str(PROJECT_ROOT / "params/datasets/embedded-ptbxl.yaml")  # resolved, as read
    assert down and all(r.params["target"] == card for r in down)
    assert all(r.params["target"] == card
               for r in grid.runs.values() if r.section == "pretraining")


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
    assert "bad.yaml" in str(info.value) and "finetuning/" in str(info.value)
    assert cli.main(["run", str(path)]) == 2
    assert match.split("'")[1] in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def test_common_key_declared_nowhere_is_an_error(tmp_path, fake_nb):
    path = write_grid(tmp_path / "bad.yaml", fake_nb, common={"use_smal_data": True})
    with pytest.raises(ParameterError, match="use_smal_data"):
        grids.load_grid(path)


def test_pretrain_seeds_repeat_the_encoders_and_everything_downstream(tmp_path, fake_nb):
    with_seed = write_notebook(tmp_path / "seeded.ipynb", PARAMETERS + "\nseed: int = 0")
    plain = grids.load_grid(write_grid(tmp_path / "g.yaml", with_seed))
    default = grids.load_grid(write_grid(tmp_path / "d.yaml", with_seed, pretrain_seeds=[0]))
    assert list(default.runs) == list(plain.runs)  # seed 0 keeps today's names
    grid = grids.load_grid(write_grid(tmp_path / "h.yaml", with_seed, pretrain_seeds=[0, 1, 2]))
    counts, before = grid.counts(), plain.counts()
    for stage in ("pretraining", "regularization", "finetuning"):
        assert counts[stage]["runs"] == 3 * before[stage]["runs"]
    assert counts["baselines"] == before["baselines"]  # no encoder, no pretraining seed
    assert grid.runs["pretraining/ts2vec-ecg-p1"].params["seed"] == 1
    assert grid.runs["pretraining/ts2vec-ecg"].params["seed"] == 0
    child = grid.runs["regularization/ts2vec-ecg-continued1-p2"]
    assert child.parents == ("pretraining/ts2vec-ecg-p2",) and child.params["seed"] == 2
    assert child.params["parent_run"] == "tiny/pretraining/ts2vec-ecg-p2"
    down = grid.runs["finetuning/tstcc-ecg-continued1-p1-f1.0"]
    assert down.parents == ("regularization/tstcc-ecg-continued1-p1",)
    assert down.params["encoder_run"] == "tiny/regularization/tstcc-ecg-continued1-p1"


def test_pretrain_seeds_are_checked(tmp_path, fake_nb):
    for bad in ([], [0, 0], [-1], ["1"], 2):
        with pytest.raises(grids.GridError, match="pretrain_seeds"):
            grids.load_grid(write_grid(tmp_path / "g.yaml", fake_nb, pretrain_seeds=bad))
    clash = write_grid(tmp_path / "c.yaml", fake_nb, pretrain_seeds=[0, 1],
                       pretraining={"notebook": str(fake_nb), "seed": 3})
    with pytest.raises(grids.GridError, match="sets 'seed'"):
        grids.load_grid(clash)


def test_paper_grid_with_pretrain_seeds_names_the_chains():
    spec = yaml.safe_load((GRIDS / "paper.yaml").read_text())
    for section in ("pretraining", "regularization"):
        spec[section].pop("seed", None)
    spec["pretrain_seeds"] = [0, 1]
    grid = grids.expand(spec, GRIDS / "paper.yaml")
    grids.validate_grid(grid)
    assert grid.runs["pretraining/ts2vec-ecg-p1"].params["seed"] == 1
    assert grid.counts()["finetuning"]["cells"] == 2 * 9 * 3 * 2 * 2 * 5
    assert "embeddings/ts2vec-ecg-vs-ecg-continued1-p1" in grid.runs


def test_paper_grid_dry_run_stays_clean(tmp_path, monkeypatch, capsys, recwarn):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    assert cli.main(["run", str(GRIDS / "paper.yaml"), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "58 runs, 555 downstream cells" in captured.out and not captured.err
    assert not [w for w in recwarn if not issubclass(w.category, DeprecationWarning)]
    assert "] pretraining/ts2vec-ecg\n" in captured.out  # one pretraining seed: today's names


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
