"""The command line: every error case prints one first line naming the file and the problem."""
import errno
import json
from pathlib import Path

import pytest
import yaml

from ecgnb import cli, runs
from ecgnb.runs import NOTEBOOKS, PROJECT_ROOT

NB02 = str(PROJECT_ROOT / NOTEBOOKS["pretraining"])
NB03 = str(PROJECT_ROOT / NOTEBOOKS["regularization"])


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


def first_error_line(argv, capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ecgnb: error: ") and "Traceback" not in "\n".join(err)
    return err[0]


def params_file(tmp_path, text: str, name="p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_malformed_params_yaml(outputs, tmp_path, capsys):
    path = params_file(tmp_path, "n_epochs: 2\nlr: [0.1\nseed: 0\n")
    line = first_error_line(["execute", NB02, str(path)], capsys)
    assert f"{path}:3:" in line and "malformed YAML" in line


def test_malformed_grid_yaml(outputs, tmp_path, capsys):
    path = params_file(tmp_path, "name: g\nbackbones: [ts2vec\n", "grid.yaml")
    line = first_error_line(["run", str(path), "--dry-run"], capsys)
    assert str(path) in line and "malformed YAML" in line


@pytest.mark.parametrize("text, problem", [
    ("n_epochs: -3\n", "parameter 'n_epochs' must be >= 0, got -3"),  # 0: the untrained network
    ("lr: -0.001\n", "parameter 'lr' must be > 0, got -0.001"),
    ("corpus_fraction: 1.5\n", "parameter 'corpus_fraction' must be > 0 and <= 1, got 1.5"),
    ("n_epochs: two\n", "parameter 'n_epochs' must be int, got str 'two'"),
])
def test_bad_parameter_values(outputs, tmp_path, capsys, text, problem):
    path = params_file(tmp_path, text)
    line = first_error_line(["execute", NB02, str(path)], capsys)
    assert line == f"ecgnb: error: {path}: {problem}"
    assert not (outputs / "pretraining" / "p").exists()  # nothing started


def test_a_grid_with_negative_epochs_fails_its_dry_run(outputs, tmp_path, capsys):
    path = params_file(tmp_path, yaml.safe_dump({
        "name": "g", "backbones": ["ts2vec"], "scenarios": ["ECG"],
        "pretraining": {"n_epochs": -3}}), "grid.yaml")
    line = first_error_line(["run", str(path), "--dry-run"], capsys)
    assert str(path) in line and "run 'pretraining/ts2vec-ecg'" in line
    assert "'n_epochs' must be >= 0, got -3" in line


def test_cuda_on_a_machine_without_cuda(outputs, tmp_path, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    path = params_file(tmp_path, "device: cuda\n")
    line = first_error_line(["execute", NB02, str(path)], capsys)
    assert f"{path}: parameter 'device' is 'cuda' but this machine has 0 CUDA" in line


def test_a_missing_parent(outputs, tmp_path, capsys):
    path = params_file(tmp_path, "parent_run: g/pretraining/ts2vec-ecg\n")
    line = first_error_line(["execute", NB03, str(path)], capsys)
    assert f"{path}: parent_run run 'g/pretraining/ts2vec-ecg' is missing" in line
    assert line.endswith("run it first")


def _fake_papermill(monkeypatch, fail):
    import papermill

    def execute_notebook(src, dst, parameters, **kwargs):
        out = runs.start_stage({"seed": 0}, "pretraining", parameters["output_dir"])
        (out / "encoder.pt").write_bytes(b"w")
        runs.finish_stage(out)
        raise fail

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def test_an_error_inside_the_notebook_is_its_own_line(outputs, tmp_path, capsys, monkeypatch):
    from papermill.exceptions import PapermillExecutionError
    _fake_papermill(monkeypatch, PapermillExecutionError(
        2, 3, "x", "DataError", "/data/S2/S2.pkl: chest 'ECG' is a flat line", ["tb"] * 100))
    path = params_file(tmp_path, "n_epochs: 1\n")
    line = first_error_line(["execute", NB02, str(path)], capsys)
    assert "02_pretraining.ipynb: cell [3]: DataError: /data/S2/S2.pkl: chest 'ECG' is a flat" in line
    assert (outputs / "pretraining" / "p" / runs.FAILED).is_file()


def test_a_full_disk_is_one_line_with_what_to_do(outputs, tmp_path, capsys, monkeypatch):
    _fake_papermill(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    path = params_file(tmp_path, "n_epochs: 1\n")
    line = first_error_line(["execute", NB02, str(path)], capsys)
    assert "02_pretraining.ipynb" in line and "No space left on device" in line
    assert "the disk is full" in line
    folder = outputs / "pretraining" / "p"
    assert (folder / runs.FAILED).is_file() and not runs.is_complete(folder)


def test_a_read_only_outputs_folder_is_one_line(outputs, tmp_path, capsys, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    path = params_file(tmp_path, "n_epochs: 1\n")
    line = first_error_line(["execute", NB02, str(path)], capsys)
    assert "Read-only file system" in line and str(outputs) in line and "ECGNB_OUTPUTS" in line


def test_verbose_prints_the_traceback(outputs, tmp_path, capsys):
    path = params_file(tmp_path, "n_epochs: -3\n")
    assert cli.main(["--verbose", "execute", NB02, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecgnb: error: ") and "Traceback" in err


def test_report_of_a_grid_file_leaves_out_runs_no_longer_in_it(outputs, tmp_path, capsys,
                                                               complete_run):
    grid = params_file(tmp_path, yaml.safe_dump({
        "name": "g", "backbones": ["ts2vec"], "scenarios": ["ECG"],
        "finetuning": {"heads": ["mlp"], "modes": ["lp"]}}), "grid.yaml")
    for run, warning in (("ts2vec-ecg-f1.0", "S9 left out"), ("tstcc-ecg-f1.0", "old")):
        cell = outputs / "g" / "finetuning" / run / "cells" / "mlp-lp-f1-s0"
        cell.mkdir(parents=True)
        (cell / "cell.json").write_text(json.dumps({
            "scenario": "ECG", "backbone": run.split("-")[0], "head": "mlp", "mode": "lp",
            "label_fraction": 1.0, "seed": 0}))
        runs.write_cell_metrics(cell, {"macro_f1": 0.5, "val_metrics": {"macro_f1": 0.5}})
        complete_run(cell.parents[1], warnings=[warning])
    assert cli.main(["report", str(grid), "--no-notebook"]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) in" in out and "g/finetuning/tstcc-ecg-f1.0" in out
    assert "note: g/finetuning/ts2vec-ecg-f1.0: S9 left out" in out and "old" not in out.split(
        "left out, e.g.")[1].split("\n", 1)[1]
    import pandas as pd
    table = pd.read_csv(outputs / "g" / "results.csv")
    assert list(table["run"]) == ["g/finetuning/ts2vec-ecg-f1.0"]
    assert table["code_hash"].notna().all()
    assert "S9 left out" in (outputs / "g" / "report" / "report.md").read_text()


def test_execute_takes_parameters_on_the_command_line(outputs, tmp_path, monkeypatch):
    from ecgnb.workflow import runner

    seen = {}
    monkeypatch.setattr(runner, "execute", lambda nb, params, run_name=None, **kw: seen.update(
        params=params, run_name=run_name) or Path(outputs))
    path = params_file(tmp_path, "n_epochs: 1\nbackbone: tstcc\n", name="mine.yaml")
    assert cli.main(["execute", NB02, str(path), "-p", "target", "params/datasets/ptbxl.yaml",
                     "-p", "n_epochs", "3"]) == 0
    assert seen == {"params": {"n_epochs": 3, "backbone": "tstcc",
                               "target": "params/datasets/ptbxl.yaml"},
                    "run_name": "pretraining/mine"}
    assert cli.main(["execute", NB02, "-p", "lr", "0.01"]) == 0
    assert seen == {"params": {"lr": 0.01}, "run_name": "pretraining/interactive"}


@pytest.mark.slow
def test_notebook_04_scores_a_card_s_k_classes(outputs, tmp_path, embedded_small, ptbxl_sample,
                                               wfdb_task, capsys):
    """An SSL head on a WFDB folder with a labels CSV (3 classes) and a supervised baseline on a
    PTB-XL-layout folder (5 classes), each given as a card on the command line (one run each: the
    card is read the same way whatever the cell)."""
    nb04 = str(PROJECT_ROOT / NOTEBOOKS["finetuning"])
    data = ["-p", "wesad_root", str(embedded_small["wesad"]),
            "-p", "fragment_root", str(embedded_small["fragment"])]
    wfdb_card = params_file(tmp_path, yaml.safe_dump({
        "kind": "target", "format": "wfdb", "root": str(wfdb_task(n_groups=10)),
        "channel": "MLII", "window_s": 2.0}), name="wfdb.yaml")
    ptbxl_card = params_file(tmp_path, yaml.safe_dump({
        "kind": "target", "format": "ptbxl", "root": str(ptbxl_sample), "channel": "II",
        "sampling": 100}), name="ptbxl.yaml")
    assert cli.main(["execute", NB02, *data, "-p", "n_epochs", "1", "-p", "n_windows", "64",
                     "-p", "target", str(wfdb_card), "--quiet"]) == 0
    for card, k, name, encoder in ((wfdb_card, 3, "ssl", "pretraining/interactive"),
                                   (ptbxl_card, 5, "supervised", "none")):
        run = f"finetuning/{card.stem}-{name}"
        assert cli.main(["execute", nb04, *data, "-p", "target", str(card),
                         "-p", "encoder_run", encoder, "-p", "baselines", "[mlp]",
                         "-p", "heads", "[mlp]", "-p", "modes", "[lp]", "-p", "n_epochs", "2",
                         "--run-name", run, "--quiet"]) == 0, capsys.readouterr().err
        cells = sorted((outputs / run / runs.CELLS).iterdir())
        assert len(cells) == 1
        metrics = json.loads((cells[0] / runs.CELL_METRICS).read_text())
        assert len(metrics["per_class_f1"]) == k and 0 <= metrics["macro_f1"] <= 1


def test_data_writes_under_the_data_root_and_offers_the_paper_size(tmp_path, monkeypatch, capsys):
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["data"].format_help()
    assert "paper" in help_text and "ECGNB_DATA" in help_text
    monkeypatch.setenv("ECGNB_DATA", str(tmp_path / "root"))
    assert cli.main(["data", "--size", "small"]) == 0
    out = capsys.readouterr().out
    from ecgnb.data.simulate import GENERATOR_VERSION, generator_digest

    folder = tmp_path / "root" / f"embedded-v{GENERATOR_VERSION}-{generator_digest()}-seed0-small"
    assert (folder / "wesad" / "S2" / "S2.pkl").is_file()
    assert "MB)" in out and "small data ready in" in out
