"""A result downstream of anything that changed never passes as current: the sweep's plan follows
code, parents, data and cards through the whole graph of runs."""
import shutil

import nbformat
import pytest

from ecgnb import provenance, runs
from ecgnb.workflow import runner, sweep
from ecgnb.workflow.grid import load_grid

from tests.workflow.test_sweep import (edited, fake_execute, fake_nb, outputs, states,  # noqa: F401
                                       write_grid)

DESCENDANTS = ("regularization/ts2vec-ecg-continued1", "finetuning/ts2vec-ecg-f1.0",
               "finetuning/ts2vec-ecg-continued1-f1.0")


def _with_import(fake_nb, path, module):
    nb = nbformat.read(fake_nb, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"import {module}"))
    nbformat.write(nb, path)
    return path


def test_an_edit_to_the_pretraining_code_replans_every_descendant(tmp_path, outputs, fake_nb,
                                                                  monkeypatch):
    pretraining_nb = _with_import(fake_nb, tmp_path / "pre.ipynb", "ecgnb.pretraining")
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb,
                                pretraining={"notebook": str(pretraining_nb), "n_epochs": 2}))
    sweep.run_sweep(grid, progress=False, execute=fake_execute([]))
    assert set(states(sweep.plan(grid)).values()) == {"cached"}
    edited(monkeypatch, "ecgnb/pretraining.py")
    plan = sweep.plan(grid)
    assert plan["pretraining/ts2vec-ecg"].note == "code changed: ecgnb/pretraining.py"
    assert {n: plan[n].state for n in DESCENDANTS} == dict.fromkeys(DESCENDANTS, "pending")
    assert plan["regularization/ts2vec-ecg-continued1"].note == \
        "parent pretraining/ts2vec-ecg runs again"
    assert plan["finetuning/ts2vec-ecg-continued1-f1.0"].note == \
        "parent regularization/ts2vec-ecg-continued1 runs again"
    log = []
    sweep.run_sweep(grid, progress=False, execute=fake_execute(log))
    assert len(log) == 4


def test_a_parent_that_ran_again_with_other_results_replans_its_children(tmp_path, outputs,
                                                                        fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    sweep.run_sweep(grid, progress=False, execute=fake_execute([]))
    parent = sweep.run_folder(grid, "pretraining/ts2vec-ecg")
    shutil.rmtree(parent)  # run again on its own (say a GPU's other digits): other weights
    fake_execute([])(grid, "pretraining/ts2vec-ecg", (), None)
    (parent / "encoder.pt").write_bytes(b"other weights")
    record = runs.completion_record(parent)
    record["artefacts"]["encoder.pt"] = runs.file_record(parent / "encoder.pt")
    runs.write_json(parent / runs.SUCCESS, record)
    plan = sweep.plan(grid)
    assert plan["pretraining/ts2vec-ecg"].state == "cached"
    assert plan["regularization/ts2vec-ecg-continued1"].note == \
        "parent pretraining/ts2vec-ecg's result changed since"
    assert {n: plan[n].state for n in DESCENDANTS} == dict.fromkeys(DESCENDANTS, "pending")


def test_two_data_folders_give_two_hashes(monkeypatch, tmp_path):
    monkeypatch.setenv("FRAG", str(tmp_path / "a"))
    first = runner.params_hash({"fragment_root": "${FRAG}"})
    assert runner.resolve_params({"fragment_root": "${FRAG}"})["fragment_root"] == \
        str(tmp_path / "a")
    monkeypatch.setenv("FRAG", str(tmp_path / "b"))
    assert runner.params_hash({"fragment_root": "${FRAG}"}) != first
    assert runner.params_hash({"fragment_root": str(tmp_path / "b")}) == \
        runner.params_hash({"fragment_root": "${FRAG}"})


def test_an_edited_card_replans_the_runs_that_read_it(tmp_path, outputs, fake_nb):
    card = tmp_path / "target.yaml"
    card.write_text("kind: target\nformat: fragment\nembedded: fragment\n")
    nb = nbformat.read(fake_nb, as_version=4)
    nb.cells[0].source += '\ntarget: str = ""'
    nbformat.write(nb, fake_nb)
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"],
                                finetuning={"target": str(card), "heads": ["mlp"],
                                            "modes": ["lp"], "seeds": [0]}))
    sweep.run_sweep(grid, progress=False, execute=fake_execute([]))
    assert set(states(sweep.plan(grid)).values()) == {"cached"}
    card.write_text("kind: target\nformat: fragment\nembedded: fragment\nfs: 250\n")
    plan = sweep.plan(load_grid(grid.source))
    assert plan["pretraining/ts2vec-ecg"].state == "cached"
    assert plan["finetuning/ts2vec-ecg-f1.0"].note == f"card changed: {card}"


def test_changed_data_replan_the_runs_that_read_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_DATA", str(tmp_path / "data"))
    root = tmp_path / "wesad"
    (root / "S2").mkdir(parents=True)
    (root / "S2" / "S2.pkl").write_bytes(b"subject 2")
    provenance.forget_reads()
    provenance.note_read(root / "S2" / "S2.pkl")
    record = {"data": provenance.data_read(runs.fingerprint_cache())}
    assert runs.data_change(record) is None
    (root / "S2" / "S2.pkl").write_bytes(b"subject 2, edited")
    assert runs.data_change(record) == f"data changed: {root / 'S2' / 'S2.pkl'}"
    (root / "S2" / "S2.pkl").unlink()
    assert runs.data_change(record).endswith("is gone")


def test_an_edit_to_one_backbone_replans_its_runs_only(tmp_path, outputs, fake_nb, monkeypatch):
    """Each run's code is what it loaded: here the notebook that builds a backbone imports its
    module, as a kernel does when the registry looks the backbone up."""
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"],
                                scenarios=["ECG"]))

    def execute(grid_, name, parent_hashes, device):
        fake_execute([])(grid_, name, parent_hashes, device)
        backbone = "tstcc" if "tstcc" in name else "ts2vec"
        folder = sweep.run_folder(grid_, name)
        record = runs.completion_record(folder)
        path = f"ecgnb/models/{backbone}.py"
        record["code_files"][path] = provenance.file_digest(runs.PROJECT_ROOT / path)
        runs.write_json(folder / runs.SUCCESS, record)
    sweep.run_sweep(grid, progress=False, execute=execute)
    edited(monkeypatch, "ecgnb/models/tstcc.py")
    assert states(sweep.plan(grid)) == {
        "pretraining/ts2vec-ecg": "cached", "pretraining/tstcc-ecg": "pending",
        "finetuning/ts2vec-ecg-f1.0": "cached", "finetuning/tstcc-ecg-f1.0": "pending"}


def test_more_jobs_than_devices_share_the_devices_round_robin(tmp_path, outputs, fake_nb):
    import threading
    import time

    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"],
                                scenarios=["ECG"], common={"use_small_data": True}))
    lock, on, peak = threading.Lock(), {}, {}

    def execute(grid_, name, parent_hashes, device):
        with lock:
            on[device] = on.get(device, 0) + 1
            peak[device] = max(peak.get(device, 0), on[device])
        time.sleep(0.2)
        with lock:
            on[device] -= 1
        fake_execute([])(grid_, name, parent_hashes, None)
    sweep.run_sweep(grid, jobs=4, devices=["cuda:0", "cuda:1"], progress=False, execute=execute)
    assert set(peak) == {"cuda:0", "cuda:1"} and max(peak.values()) <= 2


def test_a_cell_is_reused_only_with_its_settings_data_and_code(tmp_path, monkeypatch):
    folder = tmp_path / "cells" / "mlp-lp-f1-s0"
    folder.mkdir(parents=True)
    identity = {"config": {"lr": 1e-3}, "encoder": "abc", "data": {"x": "1"}}
    files = runs.run_code()
    runs.write_json(folder / runs.CELL_RECORD, {"identity": identity, "code_files": files,
                                                "code": provenance.code_identity(files)})
    runs.write_cell_metrics(folder, {"macro_f1": 0.5})
    assert runs.cell_problem(folder, identity) is None
    assert runs.cell_problem(folder, {**identity, "encoder": "def"}) == \
        "other settings, encoder or data"
    edited(monkeypatch, "ecgnb/runs.py")
    assert runs.cell_problem(folder, identity) == "code changed: ecgnb/runs.py"
    assert runs.cell_problem(tmp_path / "cells" / "other", identity) == "not run"
