"""ecgnb.runs: the one owner of run folders, cell names and completion."""
import dataclasses
import errno
import json
import warnings
from pathlib import Path

import pytest

from ecgnb import runs
from ecgnb.config import DataWarning
from ecgnb.files import write_json


@dataclasses.dataclass(frozen=True)
class _Config:
    seed: int = 3
    device: str = "cpu"


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    return tmp_path


def test_cell_names_round_trip():
    cell = runs.Cell("mlp", "ft", 4, 0.2)
    assert cell.name == "mlp-ft-f0.2-s4" and runs.Cell.parse(cell.name) == cell
    assert runs.Cell.parse("hinception-supervised-f1-s0").label_fraction == 1.0
    with pytest.raises(ValueError, match="not <head>-<mode>"):
        runs.Cell.parse("mlp_ft")


def test_one_name_per_stage():
    assert runs.stage_of("notebooks/03_regularization.ipynb") == "regularization"
    assert all(runs.stage_of(path) == stage for stage, path in runs.NOTEBOOKS.items())
    assert all((runs.PROJECT_ROOT / path).is_file() for path in runs.NOTEBOOKS.values())
    with pytest.raises(ValueError, match="not a stage notebook"):
        runs.stage_of("notebooks/07_other.ipynb")


def test_start_then_finish_makes_a_run_complete(outputs):
    out = runs.start_stage(_Config(), "pretraining")
    assert out == outputs / "pretraining" / runs.INTERACTIVE
    record = json.loads((out / runs.CONFIG).read_text())
    assert record["stage"] == "pretraining" and record["params"] == {"seed": 3, "device": "cpu"}
    with pytest.raises(FileNotFoundError, match="missing or unfinished.*run it first"):
        runs.find_run("pretraining/interactive")
    (out / "encoder.pt").write_bytes(b"weights")
    runs.finish_stage(out, {"x": 1})
    assert runs.find_run("pretraining/interactive") == out
    assert runs.finished_runs(outputs) == [out]
    runs.start_stage(_Config(), "pretraining")  # a re-run is incomplete until it finishes again
    assert not runs.is_complete(out)
    aside, = runs.superseded_results(out)  # run again by hand: the finished result is kept
    assert runs.is_complete(aside) and (aside / "encoder.pt").read_bytes() == b"weights"


def test_a_run_recorded_by_other_code_is_read_with_a_warning(outputs, monkeypatch):
    out = runs.start_stage(_Config(), "pretraining")
    (out / "encoder.pt").write_bytes(b"weights")
    runs.finish_stage(out, {"x": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the code that recorded it: no warning
        assert runs.find_run("pretraining/interactive") == out
    record = runs.completion_record(out)
    # what the run executed: the modules loaded in its process and the stage's notebook
    assert {"ecgnb/runs.py", "notebooks/02_pretraining.ipynb"} <= set(record["code_files"])
    record["code_files"]["ecgnb/runs.py"] = "0" * 16  # recorded by other code
    write_json(out / runs.SUCCESS, record)
    with pytest.warns(runs.OldCodeWarning, match="code changed: ecgnb/runs.py; run it"):
        assert runs.find_run("pretraining/interactive") == out
    del record["code_files"]  # an older record, without per-file digests
    write_json(out / runs.SUCCESS, record)
    with pytest.warns(runs.OldCodeWarning, match="recorded by other code .*older ecgnb"):
        assert runs.find_run("pretraining/interactive") == out


def test_failed_run_says_so(outputs):
    folder = outputs / "g" / "finetuning" / "x"
    folder.mkdir(parents=True)
    (folder / runs.FAILED).write_text("{}")
    with pytest.raises(FileNotFoundError, match="'g/finetuning/x' is failed"):
        runs.find_encoder("g/finetuning/x")


def test_complete_cells_need_their_metrics(tmp_path):
    for name, done in (("mlp-lp-f1-s0", True), ("fcn-ft-f1-s0", False)):
        folder = runs.cell_folder(tmp_path, name)
        folder.mkdir(parents=True)
        (folder / "predictions.csv").write_text("index\n0\n")
        if done:
            runs.write_cell_metrics(folder, {"macro_f1": 0.5})
    assert runs.complete_cells(tmp_path) == ["mlp-lp-f1-s0"]
    assert runs.is_cell_complete(runs.cell_folder(tmp_path, runs.Cell.parse("mlp-lp-f1-s0")))


# --------------------------------------------------------------------------- the completion rule
def _steps(folder):
    """The writes of a run under the runner, in order: config, artefacts, the pending record,
    the executed notebook (papermill), the completion record (runner)."""
    return [
        ("config", lambda: runs.start_stage(_Config(), "pretraining", str(folder))),
        ("artefact 1", lambda: (folder / "encoder.pt").write_bytes(b"w" * 4096)),
        ("artefact 2", lambda: (folder / "cells" / "c").mkdir(parents=True)
         or (folder / "cells" / "c" / "history.csv").write_text("epoch\n0\n")),
        ("pending record", lambda: runs.finish_stage(folder, {"x": 1})),
        ("notebook", lambda: (folder / "02_pretraining.ipynb").write_text('{"cells": []}' * 50)),
        ("completion record", lambda: runs.complete_pending(
            folder, folder / "02_pretraining.ipynb", "hash", 1.0)),
    ]


def _readers_accept(folder, outputs) -> list[str]:
    """Which readers take ``folder`` for a complete run."""
    accepted = []
    if runs.is_complete(folder):
        accepted.append("is_complete")
    if folder in runs.finished_runs(outputs):
        accepted.append("finished_runs")
    try:
        runs.find_run(folder.relative_to(outputs).as_posix())
        accepted.append("find_run")
    except FileNotFoundError:
        pass
    return accepted


@pytest.mark.parametrize("kill_before", range(6))
def test_a_run_killed_before_any_write_is_never_complete(outputs, kill_before):
    folder = outputs / "g" / "pretraining" / "x"
    for _, write in _steps(folder)[:kill_before]:
        write()
    assert _readers_accept(folder, outputs) == []


@pytest.mark.parametrize("torn", range(1, 5))
def test_a_write_torn_by_a_kill_is_never_complete(outputs, torn):
    """Every write done, then one file cut short (a kill during a non-atomic write)."""
    folder = outputs / "g" / "pretraining" / "x"
    for _, write in _steps(folder):
        write()
    assert _readers_accept(folder, outputs) == ["is_complete", "finished_runs", "find_run"]
    victim = [folder / "config.json", folder / "encoder.pt",
              folder / "cells" / "c" / "history.csv", folder / "02_pretraining.ipynb"][torn - 1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert _readers_accept(folder, outputs) == []
    with pytest.raises(FileNotFoundError, match="bytes, its record says"):
        runs.find_run("g/pretraining/x")


def test_same_size_corruption_is_caught_by_the_checksum(outputs):
    folder = outputs / "g" / "pretraining" / "x"
    for _, write in _steps(folder):
        write()
    (folder / "encoder.pt").write_bytes(b"v" * 4096)
    assert runs.completion_problem(folder) == "encoder.pt differs from its recorded checksum"


@pytest.mark.parametrize("full_at", range(6))
def test_a_full_disk_at_any_write_leaves_no_complete_run(outputs, monkeypatch, full_at):
    folder = outputs / "g" / "pretraining" / "x"
    steps = _steps(folder)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    for i, (_, write) in enumerate(steps):
        if i == full_at:  # from here on, every writer fails as on a full disk
            monkeypatch.setattr(runs, "write_json", no_space)
            monkeypatch.setattr(Path, "write_bytes", no_space)
            monkeypatch.setattr(Path, "write_text", no_space)
        try:
            write()
        except OSError:
            break
    monkeypatch.undo()
    assert _readers_accept(folder, outputs) == []


def test_the_runner_completes_a_run_only_after_the_notebook_is_saved(outputs, monkeypatch):
    """A pending record (notebook's last cell ran) alone is not complete; the runner's is."""
    folder = outputs / "g" / "pretraining" / "x"
    steps = _steps(folder)
    for _, write in steps[:4]:
        write()
    assert (folder / runs.PENDING).is_file() and not runs.is_complete(folder)
    assert "the runner did not" in runs.completion_problem(folder)
    with pytest.raises(FileNotFoundError):
        runs.complete_pending(folder, folder / "02_pretraining.ipynb", "hash", 1.0)
    steps[4][1]()
    steps[5][1]()
    record = runs.completion_record(folder)
    assert set(record["artefacts"]) == {"config.json", "encoder.pt", "cells/c/history.csv",
                                        "02_pretraining.ipynb"}
    assert record["params_hash"] == "hash" and "ecgnb/runs.py" in record["code_files"]
    assert runs.code_change(record) is None
    assert not (folder / runs.PENDING).exists() and runs.is_complete(folder, "hash")
    assert not runs.is_complete(folder, "other")


def test_an_older_success_file_without_artefacts_is_not_complete(outputs):
    folder = outputs / "old"
    folder.mkdir()
    (folder / runs.SUCCESS).write_text('{"params_hash": "h", "summary": {}}')
    assert not runs.is_complete(folder) and "names no artefacts" in runs.completion_problem(folder)


def test_a_cell_is_complete_only_when_its_files_match(tmp_path):
    folder = runs.cell_folder(tmp_path, "mlp-lp-f1-s0")
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"m" * 100)
    (folder / "predictions.csv").write_text("index\n0\n")
    assert not runs.is_cell_complete(folder)
    runs.write_cell_metrics(folder, {"macro_f1": 0.5})
    assert set(runs.read_json(folder / runs.CELL_METRICS)["files"]) == {"model.pt", "predictions.csv"}
    assert runs.is_cell_complete(folder)
    (folder / "model.pt").write_bytes(b"m" * 50)  # torn by a kill or a full disk
    assert not runs.is_cell_complete(folder) and runs.complete_cells(tmp_path) == []


def test_data_warnings_land_in_config_json(outputs):
    out = runs.start_stage(_Config(), "pretraining")
    warnings.warn("subject S9 has no window labelled 1..4", DataWarning)
    warnings.warn("subject S9 has no window labelled 1..4", DataWarning)  # recorded once
    assert runs.read_json(out / runs.CONFIG)["warnings"] == ["subject S9 has no window labelled 1..4"]
    runs.finish_stage(out)
    assert runs.completion_record(out)["warnings"] == ["subject S9 has no window labelled 1..4"]


def test_data_warnings_are_recorded_only_while_the_run_is_open(outputs, tmp_path):
    shown, filters = warnings.showwarning, list(warnings.filters)
    first = runs.start_stage(_Config(), "pretraining", str(outputs / "first"), by_runner=False)
    assert warnings.showwarning is not shown
    second = runs.start_stage(_Config(), "pretraining", str(outputs / "second"), by_runner=False)
    warnings.warn("only the open run records this", DataWarning)  # the unfinished first run: not
    runs.finish_stage(second)
    assert warnings.showwarning is shown and warnings.filters == filters
    warnings.warn("after the run", DataWarning)
    assert runs.read_json(first / runs.CONFIG)["warnings"] == []
    assert runs.completion_record(second)["warnings"] == ["only the open run records this"]

    (tmp_path / "code").mkdir()
    runs.write_json(tmp_path / "code" / runs.CONFIG, {"warnings": []})
    with runs.DataWarningRecorder(tmp_path / "code"):
        warnings.warn("inside the scope", DataWarning)
    warnings.warn("outside the scope", DataWarning)
    assert warnings.showwarning is shown and warnings.filters == filters
    assert runs.read_json(tmp_path / "code" / runs.CONFIG)["warnings"] == ["inside the scope"]


# --------------------------------------------------------------------------- the code of a run
def _package(root: Path) -> Path:
    """A package ``ecgnb`` under ``root``: a -> b -> sub.c, and d and cli that nothing imports."""
    files = {"__init__.py": "", "a.py": "from ecgnb import b\n",
             "b.py": "def f():\n    import ecgnb.sub.c\n", "sub/__init__.py": "",
             "sub/c.py": "from .. import config_like\n", "config_like.py": "X = 1\n",
             "d.py": "Y = 2\n", "cli.py": "import ecgnb.d\n"}
    for rel, text in files.items():
        (root / "ecgnb" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "ecgnb" / rel).write_text(text)
    return root / "ecgnb"


def _notebook(path: Path, code: str, markdown: str = "# title") -> Path:
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)
    return path


def test_a_runs_code_is_its_notebook_and_the_modules_it_imports(tmp_path):
    from ecgnb import provenance as config
    package = _package(tmp_path)
    notebook = _notebook(tmp_path / "n.ipynb", "%matplotlib inline\nimport ecgnb.a\n")
    files = config.code_files(notebook, root=package)
    assert list(files) == ["ecgnb/__init__.py", "ecgnb/a.py", "ecgnb/b.py",
                           "ecgnb/config_like.py", "ecgnb/sub/__init__.py", "ecgnb/sub/c.py",
                           "n.ipynb"]
    (package / "d.py").write_text("Y = 3  # an edit outside the closure\n")
    (package / "cli.py").write_text("import ecgnb.d  # the command line\n")
    _notebook(notebook, "%matplotlib inline\nimport ecgnb.a\n", markdown="# another title")
    assert config.code_files(notebook, root=package) == files
    (package / "sub" / "c.py").write_text("from .. import config_like  # edited\n")
    changed = config.code_files(notebook, root=package)
    assert [k for k in files if files[k] != changed[k]] == ["ecgnb/sub/c.py"]
    assert config.source_hash(changed) != config.source_hash(files)


def test_the_stages_code_leaves_out_the_command_line_and_the_benchmarks():
    from ecgnb import provenance as config
    for stage, notebook in runs.NOTEBOOKS.items():
        files = config.code_files(runs.PROJECT_ROOT / notebook)
        assert notebook in files and "ecgnb/runs.py" in files, stage
        assert not [f for f in files if f.startswith(("ecgnb/cli", "ecgnb/bench", "ecgnb/workflow",
                                                      "tests", "docs"))], stage
    # the registry imports a backbone on lookup: what a run builds is in its recorded code
    # (the modules its kernel loaded), none is in the static closure
    assert not [f for f in config.code_files(runs.PROJECT_ROOT / runs.NOTEBOOKS["pretraining"])
                if f in ("ecgnb/models/ts2vec.py", "ecgnb/models/tstcc.py",
                         "ecgnb/models/series2vec.py")]


class _Finalized:
    """Cyclic garbage with a finalizer: collecting it runs Python code, where threads switch."""

    def __del__(self):
        sum(range(50))


def _in_threads(work, n: int = 4) -> list[Exception]:
    """Run ``work(i)`` in ``n`` threads at once; the exceptions they raised."""
    import threading
    errors = []

    def guarded(i):
        try:
            work(i)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_code_identity_is_computed_safely_by_parallel_runs():
    # A sweep's runs compute their code identity in parallel threads; CPython 3.11's ast.parse
    # is not thread-safe (raw, this loop fails about one parse in ten with a SystemError).
    from ecgnb import provenance as config
    source = (config.PACKAGE_ROOT / "config.py").read_text()

    def parse_many(_):
        for _ in range(60):
            for _ in range(20):
                garbage = _Finalized()
                garbage.cycle = garbage
            config.parse_python(source)

    assert _in_threads(parse_many) == []


@pytest.mark.slow
def test_runs_started_and_finished_by_threads_close_their_own_recorders(tmp_path):
    def runs_of(i):
        for k in range(20):
            runs.finish_stage(runs.start_stage({}, "pretraining", str(tmp_path / f"r{i}-{k}")))

    assert _in_threads(runs_of) == [] and runs._RECORDERS == []


def test_a_shared_plotly_bundle_that_fails_to_write_leaves_no_temp_file(outputs, monkeypatch):
    from ecgnb import plots
    real = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        if self.suffix == ".tmp":
            real(self, text[:1000], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        plots.plotlyjs_for(outputs / "g" / "run" / "figures.html")
    assert list(outputs.rglob("*.tmp")) == [] and list(outputs.glob("plotly-*")) == []
