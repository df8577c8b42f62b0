"""The rehearsal's bookkeeping (the rehearsal itself runs on paper-size data: make rehearse)."""
import math

from ecgnb.bench import rehearse


def test_real_data_roots_are_used_as_given(monkeypatch, tmp_path):
    monkeypatch.setenv("ECGNB_FRAGMENT_ROOT", str(tmp_path / "fragment"))
    monkeypatch.setenv("ECGNB_WESAD_ROOT", str(tmp_path / "wesad"))
    monkeypatch.setenv("ECGNB_DATA", str(tmp_path / "data"))
    roots = rehearse.paper_roots()
    assert roots == {"fragment": tmp_path / "fragment", "wesad": tmp_path / "wesad"}
    assert not (tmp_path / "data").exists()  # nothing generated


def test_the_table_carries_memory_disk_and_core_hours():
    rows = [{"stage": "pretraining", "backbone": "ts2vec", "runs": 4, "epochs": "600",
             "windows": 2.4e8, "batch_s": 2.0, "epoch_s": 3000.0, "hours": 10.0, "on": "ECG",
             "n_cells": 0},
            {"stage": "baselines", "backbone": "-", "runs": 1, "epochs": "300", "windows": 1e6,
             "batch_s": math.nan, "epoch_s": 5.0, "hours": 2.0, "on": "x", "n_cells": 15}]
    rehearse._add_resources(rows[0], {"peak_mb": 1500.0, "encoder_mb": 2.5}, None, 2)
    rehearse._add_resources(rows[1], None, {"peak_mb": 800.0, "model_mb": {"a": 1.0, "b": 3.0}},
                            2)
    assert rows[1]["disk_mb"] == 2.0 * 15 and rows[0]["core_h"] == 20.0
    text = rehearse.format_rehearsal(rows)
    assert "whole grid: 12.0 hours (0.5 days) on this machine" in text
    assert "1500" in text and "30.0" in text and "core h" in text
