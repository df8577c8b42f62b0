"""results.csv rebuilt from run folders: only complete cells of complete runs, what they record."""
import numpy as np
import pandas as pd
import pytest

from ecgnb import runs
from ecgnb.files import write_json
from ecgnb.report import collect, tables
from ecgnb.report.tables import KEYS, METRICS


def write_cell(run, name, with_metrics=True, seed=0):
    folder = run / "cells" / name
    write_json(folder / "cell.json", {"scenario": "ECG", "backbone": "ts2vec", "head": "mlp",
                                      "mode": "lp", "label_fraction": 1.0, "seed": seed,
                                      "encoder_run": "g/pretraining/ts2vec-ecg", "wall_s": 2.0})
    if with_metrics:
        runs.write_cell_metrics(folder, {
            "accuracy": 0.7, "balanced_accuracy": 0.6, "macro_f1": 0.55, "weighted_f1": 0.65,
            "macro_auroc": 0.8, "n_test": 90, "best_epoch": 4,
            "ci": {"macro_f1": [0.45, 0.65]}, "val_metrics": {"macro_f1": 0.5}})


def test_results_only_from_complete_cells_of_complete_runs(tmp_path, complete_run):
    root = tmp_path / "outputs"
    done = root / "g" / "finetuning" / "ts2vec-ecg-f1.0"
    write_cell(done, "mlp-lp-f1-s0")
    write_cell(done, "mlp-lp-f1-s1", with_metrics=False, seed=1)  # interrupted cell
    complete_run(done, "abc")
    write_cell(root / "g" / "finetuning" / "tstcc-ecg-f1.0", "mlp-lp-f1-s0")  # run not finished
    rows = collect.collect_results(root / "g", root=root)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["run"], row["cell"], row["params_hash"]) == ("g/finetuning/ts2vec-ecg-f1.0",
                                                              "mlp-lp-f1-s0", "abc")
    assert (row["macro_f1"], row["val_macro_f1"], row["macro_f1_ci_low"]) == (0.55, 0.5, 0.45)
    assert (row["accuracy"], row["weighted_f1"], row["wall_s"]) == (0.7, 0.65, 2.0)
    assert row["code_change"] == "" and collect.code_note(rows) is None

    csv = root / "g" / "results.csv"
    collect.write_csv(rows, csv)
    collect.write_csv(collect.collect_results(root / "g", root=root), csv)
    assert len(pd.read_csv(csv)) == 1  # rebuilt, never appended


def test_continuation_drift_is_collected_from_complete_runs(tmp_path, complete_run):
    root = tmp_path / "outputs"
    record = {"backbone": "ts2vec", "scenario": "ECG continued1", "step": "continued1",
              "drift": {"wesad_ecg": {"linear_cka": 0.9, "mean_cosine": 0.8, "n_windows": 64}},
              "probe": {"parent": {"val_macro_f1": 0.4}, "child": {"val_macro_f1": 0.5}}}
    for name, finished in (("ts2vec-ecg-continued1", True), ("tstcc-ecg-continued1", False)):
        write_json(root / "g" / "regularization" / name / "regularization.json", record)
        if finished:
            complete_run(root / "g" / "regularization" / name)
    rows = collect.collect_summaries(root / "g", "regularization.json", root=root)
    assert rows.to_dict("records") == [{
        "run": "g/regularization/ts2vec-ecg-continued1", "backbone": "ts2vec",
        "scenario": "ECG continued1", "step": "continued1", "drift_wesad_ecg_linear_cka": 0.9,
        "drift_wesad_ecg_mean_cosine": 0.8, "drift_wesad_ecg_n_windows": 64,
        "probe_parent_val_macro_f1": 0.4, "probe_child_val_macro_f1": 0.5}]


def test_synthetic_results_have_the_layout_and_the_planted_effect():
    frame = collect.synthetic_results(seed=1)
    assert len(frame) == 10 * 3 * 2 * 2 * 5 + 3 * 5  # the nine scenarios and "untrained"
    assert set(KEYS) | set(METRICS) | {"val_macro_f1"} <= set(frame.columns)
    means = frame[frame["mode"] != "supervised"].groupby("scenario")["macro_f1"].mean()
    assert means["continued1 + extended"] > means["ECG"] + 0.05
    assert means["untrained"] < means["ECG"] - 0.05


def test_collect_records_labels_pretraining_seed_and_the_seed_mean_interval(tmp_path,
                                                                          complete_run):
    root = tmp_path / "outputs"
    run = root / "g" / "finetuning" / "ts2vec-ecg-f0.2"
    for seed in (0, 1):
        write_cell(run, f"mlp-lp-f1-s{seed}", with_metrics=False, seed=seed)
        folder = run / "cells" / f"mlp-lp-f1-s{seed}"
        record = runs.read_json(folder / "cell.json")
        labels = {"n_train": 80, "n_train_available": 383, "label_fraction_realised": 80 / 383}
        write_json(folder / "cell.json", {**record, "pretrain_seed": 0, **labels})
        y = np.tile([0, 1], 20)
        pd.DataFrame({"index": range(40), "group": np.repeat([f"r{g}" for g in range(10)], 4),
                      "y_true": y, "y_pred": y if seed else 1 - y}).to_csv(
            folder / "predictions.csv", index=False)
        runs.write_cell_metrics(folder, {"accuracy": 0.5, "macro_f1": 0.5, "n_test": 40,
                                         "val_metrics": {"macro_f1": 0.5}})
    complete_run(run, "abc")
    rows = collect.collect_results(root / "g", root=root)
    assert rows["pretrain_seed"].tolist() == [0, 0] and rows["n_train"].tolist() == [80, 80]
    assert rows["label_fraction_realised"].iloc[0] == pytest.approx(0.209, abs=1e-3)
    # one seed right, one wrong everywhere: the mean over seeds may be anything in [0, 1]
    assert rows["accuracy_seed_mean_ci_low"].tolist() == [0.0, 0.0]
    assert rows["accuracy_seed_mean_ci_high"].tolist() == [1.0, 1.0]
    assert "20.9 % realised (n_train 80)" in tables.label_line(rows)
