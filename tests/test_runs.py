"""ecgnb.runs: the one owner of run folders, cell names and completion."""
import dataclasses
import json

import pytest

from ecgnb import runs


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
