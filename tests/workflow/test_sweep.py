"""The sweep scheduler on tiny fake notebooks: DAG order, failures, resumption, invalidation."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from ecgnb import cli, provenance, runs
from ecgnb.workflow import disk, sweep
from ecgnb.files import write_json
from ecgnb.provenance import code_files
from ecgnb.report.collect import collect_results
from ecgnb.workflow.grid import load_grid
from ecgnb.runs import FAILED, PROJECT_ROOT, SUCCESS
from ecgnb.workflow.kernel import KernelDied
from ecgnb.workflow.runner import params_hash, parent_results

PARAMETERS = '''backbone: str = ""
corpus: str = ""
parent_run: str = ""
scenario: str = ""
encoder_run: str = ""
baselines: list = []
heads: list = []
modes: list = []
seeds: list = []
label_fraction: float = 1.0
runs: list = []
n_epochs: int = 1
use_small_data: bool = True
device: str = "auto"
fail: bool = False
die: str = ""
sleep_s: float = 0.0
output_dir: str = ""'''

# Imitates notebooks 02-04: checks its parents finished, writes cells (04), marks itself done.
BODY = '''import json, os, pathlib, time
import ecgnb.runs
out = ecgnb.runs.start_stage({"n_epochs": n_epochs}, "pretraining", output_dir)
root = pathlib.Path(os.environ["ECGNB_OUTPUTS"])
with open(root / "executions.log", "a") as log:
    log.write(out.relative_to(root).as_posix() + "\\n")
marker = root / f"died-{out.name}"
if die == "always" or (die == "once" and not marker.exists()):  # as the out-of-memory killer
    marker.write_text("")
    os.kill(os.getpid(), 9)
time.sleep(sleep_s)
if fail:
    raise RuntimeError("planned failure")
for name in [parent_run, encoder_run, *runs]:
    if name and name != "none":
        ecgnb.runs.find_run(name)'''
CELLS = '''info, pairs = {"scenario": scenario or corpus, "backbone": backbone}, []
if encoder_run == "none":
    info, pairs = {"scenario": "none", "backbone": "supervised"}, [(b, "supervised") for b in baselines]
elif encoder_run:
    info = json.loads((root / encoder_run / "_SUCCESS.json").read_text())["summary"]
    pairs = [(h, m) for h in heads for m in modes]
for head, mode in pairs:
    for seed in seeds:
        cell = out / "cells" / f"{head}-{mode}-s{seed}"
        cell.mkdir(parents=True, exist_ok=True)
        score = 0.5 + 0.01 * seed
        (cell / "cell.json").write_text(json.dumps({**info, "head": head, "mode": mode, "seed": seed,
            "label_fraction": label_fraction, "encoder_run": encoder_run, "wall_s": 0.1}))
        ecgnb.runs.write_cell_metrics(cell, {"macro_f1": score, "accuracy": score,
            "n_test": 10, "ci": {"macro_f1": [score - 0.1, score + 0.1]}, "val_metrics": {"macro_f1": score}})
summary = {"scenario": info["scenario"], "backbone": info["backbone"],
           "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}
ecgnb.runs.finish_stage(out, summary)'''


def fake_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(BODY), nbformat.v4.new_code_cell(CELLS)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def write_grid(path: Path, notebook: Path, **changes) -> Path:
    """A tiny grid: ts2vec x (ECG, ECG continued1) x mlp x (lp, ft) x 2 seeds: 4 runs, 8 cells.

    A section given in ``changes`` replaces the default one (its notebook is the fake one);
    ``baselines`` is off unless given."""
    nb = {"notebook": str(notebook)}
    spec = {"name": "t", "common": {"use_small_data": True},
            "backbones": ["ts2vec"], "scenarios": ["ECG", "ECG continued1"],
            "pretraining": {**nb, "n_epochs": 2}, "regularization": dict(nb),
            "finetuning": {**nb, "heads": ["mlp"], "modes": ["lp", "ft"], "seeds": [0, 1]}}
    for key, value in changes.items():
        stage = key in ("pretraining", "regularization", "finetuning", "baselines")
        spec[key] = {**nb, **value} if stage else value
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "outputs"))
    (tmp_path / "outputs").mkdir()
    return tmp_path / "outputs"


@pytest.fixture
def fake_nb(tmp_path):
    return fake_notebook(tmp_path / "fake.ipynb")


def executions(outputs: Path) -> list[str]:
    log = outputs / "executions.log"
    return log.read_text().split() if log.is_file() else []


def states(statuses) -> dict[str, str]:
    return {name: s.state for name, s in statuses.items()}


def outcomes(statuses) -> dict[str, tuple]:
    """Each run's state and error (what a failed assertion shows)."""
    return {name: (s.state, s.error) for name, s in statuses.items()}


# --------------------------------------------------------------------------- with papermill
@pytest.mark.slow
def test_failure_skips_dependants_only_and_stays_failed(tmp_path, outputs, fake_nb):
    path = write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"],
                      scenarios=["ECG"], pretraining={"by_backbone": {"tstcc": {"fail": True}}})
    grid = load_grid(path)
    first = states(sweep.run_sweep(grid, jobs=2, progress=False))
    assert first == {"pretraining/ts2vec-ecg": "done", "pretraining/tstcc-ecg": "failed",
                     "finetuning/ts2vec-ecg-f1.0": "done", "finetuning/tstcc-ecg-f1.0": "skipped"}
    failed = outputs / "t" / "pretraining" / "tstcc-ecg"
    assert "planned failure" in json.loads((failed / FAILED).read_text())["error"]
    assert (failed / "fake.ipynb").is_file() and not (failed / SUCCESS).exists()
    record = json.loads((outputs / "t" / "sweep.json").read_text())
    assert record["runs"]["pretraining/tstcc-ecg"]["error"].endswith("planned failure")
    assert record["counts"] == {"done": 2, "failed": 1, "skipped": 1}

    n_runs = len(executions(outputs))
    again = states(sweep.run_sweep(grid, jobs=2, progress=False))
    assert len(executions(outputs)) == n_runs  # nothing re-runs, the failure is kept
    assert again["pretraining/tstcc-ecg"] == "failed" and again["finetuning/tstcc-ecg-f1.0"] == "skipped"
    assert sum(s == "cached" for s in again.values()) == 2

    retried = states(sweep.run_sweep(grid, jobs=2, progress=False, retry_failed=True))
    assert executions(outputs)[n_runs:] == ["t/pretraining/tstcc-ecg"]
    assert retried["pretraining/tstcc-ecg"] == "failed"


@pytest.mark.slow
def test_changed_parameter_reruns_the_run_and_its_dependants(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    first = sweep.run_sweep(grid, jobs=2, progress=False)
    assert len(executions(outputs)) == 4, outcomes(first)
    changed = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, regularization={"n_epochs": 3}))
    result = states(sweep.run_sweep(changed, jobs=2, progress=False))
    assert sorted(executions(outputs)[4:]) == ["t/finetuning/ts2vec-ecg-continued1-f1.0",
                                               "t/regularization/ts2vec-ecg-continued1"]
    assert sorted(result.values()) == ["cached"] * 2 + ["done"] * 2
    aside, = runs.superseded_results(outputs / "t" / "finetuning" / "ts2vec-ecg-continued1-f1.0")
    assert runs.complete_cells(aside)  # the earlier result, set aside whole
    rows = collect_results(outputs / "t", root=outputs)  # ... and not reported
    assert len(rows) == 2 * 2 * 2 and not rows.duplicated(["run", "cell"]).any()


@pytest.mark.slow
def test_hard_kill_then_resume(tmp_path, outputs, fake_nb):
    path = write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"], finetuning={
        "heads": ["mlp"], "modes": ["lp", "ft"], "seeds": [0, 1], "sleep_s": 1.5})
    pythonpath = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.Popen([sys.executable, "-m", "ecgnb.cli", "run", str(path), "--jobs", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running = outputs / "t" / "finetuning" / "ts2vec-ecg-f1.0"
    deadline = time.time() + 120
    while not (running / sweep.ATTEMPT).is_file() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (running / sweep.ATTEMPT).is_file(), "the sweep never reached the downstream run"
    time.sleep(2)  # the orphaned kernel (if any) dies or ends its sleep
    assert not sweep.plan(load_grid(path))["finetuning/ts2vec-ecg-f1.0"].state == "cached"
    before = executions(outputs)
    assert before[0] == "t/pretraining/ts2vec-ecg"
    assert collect_results(outputs / "t", root=outputs).empty  # nothing looks complete

    result = states(sweep.run_sweep(load_grid(path), jobs=2, progress=False))
    assert result["pretraining/ts2vec-ecg"] == "cached"
    assert set(result.values()) <= {"cached", "done"}
    rerun = executions(outputs)[len(before):]
    assert "t/pretraining/ts2vec-ecg" not in rerun and "t/finetuning/ts2vec-ecg-f1.0" in rerun
    rows = collect_results(outputs / "t", root=outputs)
    assert len(rows) == 2 * 2 and not rows.duplicated(["run", "cell"]).any()


@pytest.mark.slow
def test_device_pinning_runs_in_a_child_with_one_visible_gpu(tmp_path, outputs, fake_nb,
                                                             monkeypatch):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    calls = []
    monkeypatch.setattr(sweep.subprocess, "run", lambda argv, env, **kw: calls.append((argv, env))
                        or subprocess.CompletedProcess(argv, 0, "", ""))
    sweep.execute_run(grid, "pretraining/ts2vec-ecg", (), device="cuda:3")
    (argv, env), = calls
    assert argv[:3] == [sys.executable, "-m", "ecgnb.workflow.sweep"] and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert sweep._child(argv[3]) == 0  # what the child runs: the run, stamped with its hash
    record = json.loads((outputs / "t" / "pretraining" / "ts2vec-ecg" / SUCCESS).read_text())
    assert record["params_hash"] == grid.hashes()["pretraining/ts2vec-ecg"]


# --------------------------------------------------------------------------- scheduling logic
def fake_execute(log: list):
    """An in-process stand-in for papermill: marks the run complete the way the runner does."""
    def execute(grid, name, parent_hashes, device):
        log.append((name, device))
        folder = sweep.run_folder(grid, name)
        digest = params_hash(grid.runs[name].params, parent_hashes)
        time.sleep(0.05)
        runs.start_stage({}, "pretraining", str(folder))
        runs.finish_stage(folder)
        (folder / "fake.ipynb").write_text("{}")
        run = grid.runs[name]
        # this process holds every module the tests imported: the notebook's static closure
        # stands for what a kernel of it would have loaded
        pending = runs.read_json(folder / runs.PENDING)
        write_json(folder / runs.PENDING, {**pending, "code_files": {}})
        runs.complete_pending(folder, folder / "fake.ipynb", digest, 0.05,
                              code_files(run.notebook), run.params,
                              {"parents": parent_results(run.params)})
    return execute


def test_only_runs_matches_and_missing_ancestors(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"]))
    log = []
    result = sweep.run_sweep(grid, only="finetuning/tstcc-ecg-continued1*", progress=False,
                             execute=fake_execute(log))
    assert [n for n, _ in log] == ["pretraining/tstcc-ecg", "regularization/tstcc-ecg-continued1",
                                   "finetuning/tstcc-ecg-continued1-f1.0"]
    assert sum(s.state == "excluded" for s in result.values()) == len(grid.runs) - 3
    log.clear()
    sweep.run_sweep(grid, only="finetuning/tstcc-ecg-f1.0", progress=False, execute=fake_execute(log))
    assert log == [("finetuning/tstcc-ecg-f1.0", None)]  # its ancestor is complete


def test_parents_finish_before_children_and_devices_are_not_shared(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"]))
    busy, log, lock = set(), [], threading.Lock()
    plain = fake_execute(log)

    def execute(grid_, name, parent_hashes, device):
        with lock:
            assert device not in busy
            busy.add(device)
            done = {n for n, _ in log}
        try:
            assert set(grid_.runs[name].parents) <= done
            plain(grid_, name, parent_hashes, device)
        finally:
            with lock:
                busy.discard(device)

    result = sweep.run_sweep(grid, jobs=2, devices=["cuda:0", "cuda:1"], progress=False,
                             execute=execute)
    assert {s.state for s in result.values()} == {"done"}, outcomes(result)
    assert {d for _, d in log} == {"cuda:0", "cuda:1"}


def test_devices_need_auto_device(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, common={"device": "cpu"}))
    with pytest.raises(ValueError, match="device: auto"):
        sweep.run_sweep(grid, devices=["cuda:0"], progress=False, execute=fake_execute([]))


def test_one_sweep_per_grid_at_a_time(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    with sweep.sweep_lock(grid):
        with pytest.raises(sweep.SweepBusy, match="another sweep"):
            sweep.run_sweep(grid, progress=False, execute=fake_execute([]))
    assert {s.state for s in sweep.run_sweep(grid, progress=False,
                                             execute=fake_execute([])).values()} == {"done"}


def test_every_kernel_gets_the_same_threads_whatever_the_jobs(tmp_path, outputs, fake_nb,
                                                               monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")  # the user's choice is kept
    seen = {}
    for jobs in (1, 2):
        grid = load_grid(write_grid(tmp_path / f"g{jobs}.yaml", fake_nb, name=f"g{jobs}"))
        mark = fake_execute([])

        def execute(grid, name, parent_hashes, device, jobs=jobs):
            seen.setdefault(jobs, set()).add((os.environ["OMP_NUM_THREADS"],
                                              os.environ["MKL_NUM_THREADS"]))
            mark(grid, name, parent_hashes, device)

        sweep.run_sweep(grid, jobs=jobs, progress=False, execute=execute)
    assert seen == {1: {(str(sweep.RUN_THREADS), "7")}, 2: {(str(sweep.RUN_THREADS), "7")}}
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "7"


def test_stale_outputs_of_another_hash_are_removed(tmp_path):
    folder = tmp_path / "run"
    sweep.prepare_folder(folder, "aaa")
    (folder / "cells" / "old").mkdir(parents=True)
    sweep.prepare_folder(folder, "aaa")  # same attempt resumed: kept
    assert (folder / "cells" / "old").is_dir()
    sweep.prepare_folder(folder, "bbb")  # other parameters: the old outputs go
    assert not (folder / "cells").exists()
    assert json.loads((folder / sweep.ATTEMPT).read_text())["params_hash"] == "bbb"


def test_dry_run_prints_the_dag(tmp_path, outputs, fake_nb, capsys):
    path = write_grid(tmp_path / "g.yaml", fake_nb)
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "pretraining (1 runs)" in text and "finetuning (2 runs, 8 cells)" in text
    assert "finetuning/ts2vec-ecg-continued1-f1.0  <- regularization/ts2vec-ecg-continued1" in text
    assert "4 runs, 8 downstream cells" in text
    assert not (outputs / "executions.log").exists()


# --------------------------------------------------------------------------- completion and code
def test_a_torn_run_is_redone_by_the_next_sweep(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    log = []
    sweep.run_sweep(grid, progress=False, execute=fake_execute(log))
    folder = sweep.run_folder(grid, "pretraining/ts2vec-ecg")
    notebook = folder / "fake.ipynb"
    notebook.write_text(notebook.read_text()[:1])  # a full disk cut the notebook short
    assert sweep.plan(grid)["pretraining/ts2vec-ecg"].state == "pending"
    log.clear()
    sweep.run_sweep(grid, progress=False, execute=fake_execute(log))
    assert ("pretraining/ts2vec-ecg", None) in log


def edited(monkeypatch, *paths: str) -> None:
    """Make ``paths`` (as recorded: ``ecgnb/runs.py``) read as edited since the runs ran."""
    real = provenance.file_digest
    def digest(path):
        return "0" * 16 if provenance.shown_path(path) in paths else real(path)
    monkeypatch.setattr(provenance, "file_digest", digest)


def test_an_edit_reruns_only_the_runs_whose_notebook_imports_it(tmp_path, outputs, fake_nb,
                                                                  monkeypatch, capsys):
    models_nb = tmp_path / "fake_models.ipynb"  # a finetuning notebook that also imports a model
    nb = nbformat.read(fake_nb, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import ecgnb.models.ts2vec"))
    nbformat.write(nb, models_nb)
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb,
                                finetuning={"notebook": str(models_nb), "heads": ["mlp"],
                                            "modes": ["lp"], "seeds": [0]}))
    sweep.run_sweep(grid, progress=False, execute=fake_execute([]))
    record = runs.completion_record(sweep.run_folder(grid, "finetuning/ts2vec-ecg-f1.0"))
    assert {"ecgnb/models/ts2vec.py", "ecgnb/runs.py", "ecgnb/__init__.py",
            str(models_nb)} <= set(record["code_files"])
    assert record["code"]["source_hash"] == provenance.source_hash(code_files(models_nb))

    edited(monkeypatch, "ecgnb/cli.py", "ecgnb/bench/__init__.py")  # outside every notebook's code
    assert {s.state for s in sweep.plan(grid).values()} == {"cached"}
    edited(monkeypatch, "ecgnb/models/ts2vec.py")  # imported by the finetuning notebook only
    statuses = sweep.plan(grid)
    assert {n: s.state for n, s in statuses.items()} == {
        "pretraining/ts2vec-ecg": "cached", "regularization/ts2vec-ecg-continued1": "cached",
        "finetuning/ts2vec-ecg-f1.0": "pending", "finetuning/ts2vec-ecg-continued1-f1.0": "pending"}
    assert statuses["finetuning/ts2vec-ecg-f1.0"].note == "code changed: ecgnb/models/ts2vec.py"
    assert cli.main(["run", str(grid.source), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "finetuning/ts2vec-ecg-f1.0  <- pretraining/ts2vec-ecg  (code changed: " \
           "ecgnb/models/ts2vec.py)" in out
    assert "2 run(s) were recorded by other code" in out and "--accept-old-code" in out
    assert {s.state for s in sweep.plan(grid, accept_old_code=True).values()} == {"cached"}
    log = []
    sweep.run_sweep(grid, progress=False, execute=fake_execute(log), accept_old_code=True)
    assert log == []
    sweep.run_sweep(grid, progress=False, execute=fake_execute(log))
    assert sorted(n for n, _ in log) == ["finetuning/ts2vec-ecg-continued1-f1.0",
                                         "finetuning/ts2vec-ecg-f1.0"]


def test_dry_run_says_why_a_run_runs_again(tmp_path, outputs, fake_nb, capsys):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"]))
    sweep.run_sweep(grid, progress=False, execute=fake_execute([]))
    changed = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"],
                                   pretraining={"n_epochs": 3}))
    statuses = sweep.plan(changed)
    assert statuses["pretraining/ts2vec-ecg"].note == "parameters changed: n_epochs 2 -> 3"
    assert statuses["finetuning/ts2vec-ecg-f1.0"].note == "parent runs again: pretraining/ts2vec-ecg"
    folder = sweep.run_folder(grid, "finetuning/ts2vec-ecg-f1.0")
    (folder / runs.SUCCESS).unlink()
    write_json(folder / FAILED, {"error": "RuntimeError: planned failure", "params_hash": "old"})
    assert sweep.plan(grid)["finetuning/ts2vec-ecg-f1.0"].note == \
        "failed before: RuntimeError: planned failure"
    (folder / FAILED).unlink()
    assert sweep.plan(grid)["finetuning/ts2vec-ecg-f1.0"].note == "incomplete"
    assert cli.main(["run", str(changed.source), "--dry-run"]) == 0
    assert "(parameters changed: n_epochs 2 -> 3)" in capsys.readouterr().out


def test_an_interrupted_attempt_keeps_cells_and_checkpoints_for_their_own_checks(tmp_path):
    """The same parameters: finished cells and checkpoints stay (each is reused or resumed only
    when its own record matches the settings, code and device); the rest goes."""
    folder = tmp_path / "run"
    sweep.prepare_folder(folder, "aaa")
    for rel in ("cells/old/metrics.json", "checkpoints/fit.pt", "figures.html"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("x")
    sweep.prepare_folder(folder, "aaa")
    assert (folder / "cells" / "old").is_dir() and (folder / "checkpoints" / "fit.pt").is_file()
    assert not (folder / "figures.html").exists()


def test_a_sweep_killed_while_running_is_marked_interrupted(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    write_json(outputs / "t" / sweep.STATUS_FILE, {"runs": {
        "pretraining/ts2vec-ecg": {"state": "running"}, "finetuning/ts2vec-ecg-f1.0": {"state": "pending"}}})
    assert sweep.mark_interrupted(grid) == ["pretraining/ts2vec-ecg"]
    record = json.loads((outputs / "t" / sweep.STATUS_FILE).read_text())
    assert record["runs"]["pretraining/ts2vec-ecg"]["state"] == "interrupted"
    assert sweep.mark_interrupted(grid) == []


# --------------------------------------------------------------------------- kernels that die
@pytest.mark.slow
def test_a_killed_kernel_is_retried_and_one_killed_every_time_names_the_signal(tmp_path, outputs,
                                                                               fake_nb):
    path = write_grid(tmp_path / "g.yaml", fake_nb, backbones=["ts2vec", "tstcc"],
                      scenarios=["ECG"], pretraining={"by_backbone": {
                          "ts2vec": {"die": "once"}, "tstcc": {"die": "always"}}})
    statuses = sweep.run_sweep(load_grid(path), jobs=2, progress=False, retries=1)
    assert states(statuses) == {"pretraining/ts2vec-ecg": "done", "pretraining/tstcc-ecg": "failed",
                                "finetuning/ts2vec-ecg-f1.0": "done",
                                "finetuning/tstcc-ecg-f1.0": "skipped"}
    assert executions(outputs).count("t/pretraining/ts2vec-ecg") == 2  # killed, then completed
    assert executions(outputs).count("t/pretraining/tstcc-ecg") == 2  # killed twice: retries=1
    failed = json.loads((outputs / "t" / "pretraining" / "tstcc-ecg" / FAILED).read_text())
    assert failed["error"].startswith("kernel killed by SIGKILL (out of memory?) after ")
    assert failed["kernel"]["signal"] == "SIGKILL" and failed["kernel"]["returncode"] == -9
    assert failed["kernel"]["peak_rss_bytes"] > 10e6  # a Python kernel holds tens of MB
    assert "kernel killed by SIGKILL" in statuses["pretraining/tstcc-ecg"].error


def test_a_kernel_death_is_retried_in_the_same_folder(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"]))
    log, plain = [], fake_execute([])

    def execute(grid_, name, parent_hashes, device):
        folder = sweep.run_folder(grid_, name)
        log.append(name)
        if log.count(name) == 1:  # the first attempt leaves a checkpoint and dies
            (folder / runs.CHECKPOINTS).mkdir()
            (folder / runs.CHECKPOINTS / "epoch-1.pt").write_text("state")
            raise KernelDied("kernel killed by SIGKILL (out of memory?) after 1 s")
        assert (folder / runs.CHECKPOINTS / "epoch-1.pt").is_file()  # the retry may resume
        plain(grid_, name, parent_hashes, device)

    statuses = sweep.run_sweep(grid, progress=False, execute=execute)
    assert set(states(statuses).values()) == {"done"}
    assert log == ["pretraining/ts2vec-ecg"] * 2 + ["finetuning/ts2vec-ecg-f1.0"] * 2


def test_a_child_whose_kernel_died_says_so(tmp_path, outputs, fake_nb, monkeypatch):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    monkeypatch.setattr(sweep.subprocess, "run", lambda argv, env, **kw: subprocess.CompletedProcess(
        argv, sweep.KERNEL_DIED_STATUS, "", "kernel killed by SIGKILL after 3 s\n"))
    with pytest.raises(KernelDied, match="SIGKILL"):
        sweep.execute_run(grid, "pretraining/ts2vec-ecg", (), device="cuda:0")


# --------------------------------------------------------------------------- superseded results
def test_a_finished_run_that_runs_again_is_set_aside_not_deleted(tmp_path, outputs, fake_nb):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"]))
    sweep.run_sweep(grid, progress=False, execute=fake_execute([]))
    folder = sweep.run_folder(grid, "pretraining/ts2vec-ecg")
    old = runs.completion_record(folder)
    changed = load_grid(write_grid(tmp_path / "g.yaml", fake_nb, scenarios=["ECG"],
                                   pretraining={"n_epochs": 3}))
    sweep.run_sweep(changed, progress=False, execute=fake_execute([]))
    aside, = runs.superseded_results(folder)
    assert aside.parent == folder / runs.SUPERSEDED and aside.name.startswith(old["params_hash"])
    assert runs.is_complete(aside) and runs.completion_record(aside) == old  # intact, readable
    assert runs.completion_record(folder)["params"]["n_epochs"] == 3
    assert runs.SUPERSEDED not in "".join(runs.completion_record(folder)["artefacts"])
    assert runs.finished_runs(outputs) == sorted(sweep.run_folder(changed, n) for n in changed.runs)
    with pytest.raises(FileNotFoundError, match="set aside"):
        runs.find_run(aside.relative_to(outputs).as_posix())
    assert runs.find_run("t/pretraining/ts2vec-ecg") == folder


def test_set_aside_keeps_the_newest_results_up_to_the_cap(tmp_path, complete_run):
    folder = tmp_path / "run"
    for i in range(4):
        complete_run(folder, params_hash=f"h{i}")
        sweep.prepare_folder(folder, f"h{i + 1}", keep=2)
        assert not (folder / runs.SUCCESS).exists()  # the new attempt starts empty
    kept = runs.superseded_results(folder)
    assert [p.name.split("-")[0] for p in kept] == ["h3", "h2"]  # newest first, two kept
    assert all(runs.is_complete(p) for p in kept)
    complete_run(folder, params_hash="h4")
    sweep.prepare_folder(folder, "h5", keep=1)  # the result just set aside is the newest: kept
    newest, = runs.superseded_results(folder)
    assert runs.is_complete(newest, "h4")


def test_an_incomplete_attempt_loses_only_its_temporary_files(tmp_path):
    folder = tmp_path / "run"
    sweep.prepare_folder(folder, "aaa")
    for rel in ("cells/c/metrics.json", "cells/c/model.pt.tmp", "figures.html.tmp",
                "checkpoints/epoch-3.pt", "superseded/x-1/_SUCCESS.json"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("x")
    sweep.prepare_folder(folder, "aaa")  # the same attempt, resumed
    left = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert left == [sweep.ATTEMPT, "cells/c/metrics.json", "checkpoints/epoch-3.pt",
                    "superseded/x-1/_SUCCESS.json"]
    sweep.prepare_folder(folder, "bbb")  # other parameters: the attempt and its checkpoints go
    left = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert left == [sweep.ATTEMPT, "superseded/x-1/_SUCCESS.json"]


# --------------------------------------------------------------------------- disk space
def test_a_sweep_that_does_not_fit_the_disk_stops_before_the_first_run(tmp_path, outputs, fake_nb,
                                                                       monkeypatch, capsys):
    grid = load_grid(write_grid(tmp_path / "g.yaml", fake_nb))
    needed = disk.space_needed(grid, list(grid.runs), outputs / "t")  # from the grid's sizes
    usage = shutil.disk_usage(outputs)
    monkeypatch.setattr(disk.shutil, "disk_usage",
                        lambda path: usage._replace(free=int(needed / 2)))
    log = []
    with pytest.raises(disk.NotEnoughSpace) as info:
        sweep.run_sweep(grid, progress=False, execute=fake_execute(log))
    assert log == [] and "\n" not in str(info.value)
    assert (f"the 4 run(s) to do need about {disk.human_size(needed)} in {outputs / 't'}, "
            f"{disk.human_size(needed / 2)} free") in str(info.value)
    assert cli.main(["run", str(grid.source)]) == 2
    assert "error: not enough disk: the 4 run(s) to do" in capsys.readouterr().err
    sweep.run_sweep(grid, progress=False, execute=fake_execute(log), disk_check=False)
    assert len(log) == 4
    # the finished runs (a few kB each) are a floor of the estimate, not a replacement for it
    assert sum(len(v) for v in disk.finished_sizes(outputs / "t").values()) == 4
    assert disk.space_needed(grid, list(grid.runs), outputs / "t") == needed
