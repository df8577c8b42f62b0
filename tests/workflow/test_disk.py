"""ecgnb.workflow.disk: a sweep's space is estimated from its own grid's finished runs."""
import json

from ecgnb import runs
from ecgnb.workflow import disk


def finished(folder, stage: str, size: int) -> None:
    folder.mkdir(parents=True)
    (folder / runs.SUCCESS).write_text(json.dumps(
        {"stage": stage, "artefacts": {"encoder.pt": {"size": size}}}))


def test_another_grids_runs_do_not_set_this_grids_estimate(tmp_path):
    finished(tmp_path / "demo" / "pretraining" / "ts2vec-ecg", "pretraining", 2_000_000)
    line, fits = disk.space_line(["pretraining"] * 3, tmp_path / "paper", tmp_path)
    assert "need about 300 MB" in line and fits  # the stage's default, not the demo's 2 MB
    finished(tmp_path / "paper" / "pretraining" / "ts2vec-ecg", "pretraining", 5_000_000)
    line, _ = disk.space_line(["pretraining"] * 3, tmp_path / "paper", tmp_path)
    assert "need about 15 MB" in line  # this grid's finished run
