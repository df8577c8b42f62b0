"""The tables beside the study table: every cell at every fraction, the encoders' summaries."""
import pandas as pd

from ecgnb.report import tables


def test_cell_table_shows_every_cell_at_every_fraction(cells):
    rows = cells("ECG", "lp", 0.50, 0.60)[:2] + cells("ECG", "lp", 0.30, 0.40, fraction=0.1)[:1] \
        + cells("none", "supervised", 0.45, 0.45, backbone="supervised", head="hinception")[:2]
    frame = pd.DataFrame(rows)
    frame["macro_f1_ci_low"], frame["macro_f1_ci_high"] = frame["macro_f1"] - 0.1, frame["macro_f1"] + 0.1
    frame["label_fraction_realised"] = [1.0, 1.0, 0.12, 1.0, 1.0]
    frame["n_train"] = [300, 300, 36, 300, 300]
    table = tables.cell_table(frame)
    assert list(table.columns) == ["100 % requested, 100.0 % realised (n_train 300)",
                                   "10 % requested, 12.0 % realised (n_train 36)"]
    # per-seed intervals are not averaged into an "interval": without the interval of the seed
    # mean (records and seeds resampled, from the predictions) only the mean is shown
    assert table.loc["ECG / ts2vec / mlp / LP"].tolist() == ["50.5 (2)", "30.0 (1)"]
    frame["macro_f1_seed_mean_ci_low"] = frame["macro_f1"].where(frame["seed"] > 9, 0.41)
    frame["macro_f1_seed_mean_ci_high"] = 0.62
    table = tables.cell_table(frame)
    assert table.loc["ECG / ts2vec / mlp / LP"].iloc[0] == "50.5 [41.0, 62.0] (2)"
    assert table.loc["supervised hinception"].tolist() == ["45.5 [41.0, 62.0] (2)", ""]
    assert table.index.name.endswith("recipe: not recorded")


def test_encoder_tables_read_beside_the_results(tmp_path):
    pd.DataFrame([{"backbone": "ts2vec", "corpus": "ECG", "probe_pretrained_val_macro_f1": 0.6,
                   "probe_initial weights_val_macro_f1": 0.4}]).to_csv(tmp_path / "pretraining.csv")
    (table,) = tables.encoder_tables(tmp_path / "results.csv").values()
    assert table.loc[("ts2vec", "ECG")].tolist() == [60.0, 40.0]
    frame = pd.DataFrame([{"run": f"g/pretraining/ts2vec-{name}", "backbone": "ts2vec", "corpus": "ECG",
                           "probe_pretrained_val_macro_f1": 0.5} for name in ("ecg", "untrained")])
    assert list(tables.probe_table(frame).index) == [("ts2vec", "ECG"), ("ts2vec", "untrained")]
    multilabel = pd.DataFrame([{"backbone": "ts2vec", "corpus": "ECG",
                                "probe_pretrained_val_macro_auroc": 0.8,
                                "probe_initial weights_val_macro_auroc": 0.6}])
    assert list(tables.probe_table(multilabel).columns) == ["pretrained macro-AUROC %",
                                                            "initial weights macro-AUROC %"]
    drift = pd.DataFrame([{"backbone": "ts2vec", "scenario": "ECG continued1",
                           "probe_parent_val_macro_auroc": 0.7,
                           "probe_child_val_macro_auroc": 0.75}])
    assert tables.drift_table(drift).iloc[0].tolist() == [70.0, 75.0]
    assert tables.encoder_tables("") == {}
