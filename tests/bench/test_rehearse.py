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


def test_an_epoch_is_its_batches_at_full_size():
    ssl = {"pretrain_batch_s": 2.0, "pretrain_val_batch_s": 0.5}
    size = {"n_train": 640, "n_val": 65}
    assert rehearse._epoch_s(ssl, "pretrain", size, 64) == 10 * 2.0 + 2 * 0.5
    assert rehearse._epoch_s({"continued_batch_s": 1.0}, "continued", size, 64) == 10.0


def test_the_table_totals_the_stages():
    rows = [rehearse._row("pretraining", "ts2vec", 4, [600], 2.0, 3000.0, 1500.0, 2.5, 10.0,
                          "ECG"),
            rehearse._row("baselines", "-", 1, [300], math.nan, 5.0, 800.0, 1.0, 2.0, "x")]
    for row in rows:
        row["core_h"] = 2 * row["machine_h"]
    text = rehearse.format_rehearsal(rows)
    assert "whole grid: 12 machine hours" in text and "24 core hours" in text
