"""Metrics: sklearn definitions, grouped bootstrap, run files that recompute to metrics.json."""
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn import metrics as skm

from ecgnb.evaluation.metrics import (bootstrap_ci, bootstrap_seed_mean_ci, compute_metrics,
                                     metrics_from_predictions, predictions_frame, read_predictions,
                                     scores_from_confusion, write_run)
from ecgnb.plots import confusion_figure, per_class_figure, training_curves_figure

CLASSES = ("VF", "VT", "sinus")


def random_predictions(n=90, n_groups=12, n_classes=3, seed=0, absent=None):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, n)
    if absent is not None:
        y_true[y_true == absent] = (absent + 1) % n_classes
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y_true]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    groups = np.array([f"r{g}" for g in rng.integers(0, n_groups, n)])
    return predictions_frame(np.arange(n) * 2, groups, y_true, proba, CLASSES[:n_classes])


def test_known_values():
    y_true, y_pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    proba = np.eye(3)[y_pred] * 0.7 + 0.1
    m = compute_metrics(y_true, y_pred, proba, CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == {"VF": 0.5, "VT": 1.0, "sinus": 0.5}
    assert m["per_class_f1"]["VT"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["n_test"] == 6 and m["classes_absent"] == []
    json.dumps(m)  # JSON-ready


def test_absent_class_is_handled_and_reported():
    df = random_predictions(absent=2)
    proba = df[[f"prob_{c}" for c in CLASSES]].to_numpy()
    m = compute_metrics(df["y_true"], df["y_pred"], proba, CLASSES)
    assert m["classes_absent"] == ["sinus"] and m["auroc_classes"] == ["VF", "VT"]
    assert m["per_class_recall"]["sinus"] is None
    expected = np.mean([skm.roc_auc_score(df["y_true"] == k, proba[:, k]) for k in (0, 1)])
    assert m["macro_auroc"] == pytest.approx(expected)
    assert len(m["confusion_matrix"]) == 3
    one_class = compute_metrics([1, 1], [1, 0], np.full((2, 3), 1 / 3), CLASSES)
    assert one_class["macro_auroc"] is None


@pytest.mark.parametrize("seed", range(4))
def test_confusion_scores_equal_sklearn(seed):
    df = random_predictions(n=40, seed=seed, absent=seed % 3 if seed else None)
    y_true, y_pred = df["y_true"], df["y_pred"]
    cm = skm.confusion_matrix(y_true, y_pred, labels=range(3))
    fast = scores_from_confusion(cm)
    proba = df.filter(like="prob_").to_numpy()
    slow = compute_metrics(y_true, y_pred, proba, CLASSES)
    for name, value in fast.items():
        assert value == pytest.approx(slow[name], abs=1e-12), name


def test_run_files_recompute_to_metrics_json(tmp_path):
    df = random_predictions()
    proba = df.filter(like="prob_").to_numpy()
    metrics = compute_metrics(df["y_true"], df["y_pred"], proba, CLASSES)
    (tmp_path / "metrics.json").write_text("{}")  # stale file of an older run
    path = write_run(tmp_path, metrics, df, extra={"seed": 3, "best_epoch": 7}, n_boot=50)
    record = json.loads(path.read_text())
    again = metrics_from_predictions(tmp_path / "predictions.csv", CLASSES)
    assert {k: record[k] for k in again} == again
    assert record["seed"] == 3 and record["best_epoch"] == 7 and record["ci_unit"] == "group"
    low, high = record["ci"]["macro_f1"]
    assert low <= record["macro_f1"] <= high
    columns = list(pd.read_csv(tmp_path / "predictions.csv").columns)
    assert columns == ["index", "group", "y_true", "y_pred", "prob_VF", "prob_VT", "prob_sinus"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "predictions.csv"]
    with pytest.raises(ValueError, match="columns"):
        read_predictions(tmp_path / "predictions.csv", CLASSES[:2])


def homogeneous_groups(n_groups=10, rows_per_group=5):
    """Every fragment of a group is identical: groups 0..4 all right, 5..9 all wrong."""
    rows = []
    for g in range(n_groups):
        y_pred = 0 if g < n_groups // 2 else 1
        rows += [(f"r{g}", 0, y_pred)] * rows_per_group
    groups, y_true, y_pred = map(np.array, zip(*rows))
    proba = np.eye(2)[y_pred]
    return predictions_frame(np.arange(len(rows)), groups, y_true, proba, ("a", "b"))


def test_bootstrap_resamples_groups_not_fragments():
    small, large = homogeneous_groups(rows_per_group=5), homogeneous_groups(rows_per_group=50)
    ci_small = bootstrap_ci(small, "accuracy", n_boot=500, seed=1)
    ci_large = bootstrap_ci(large, "accuracy", n_boot=500, seed=1)
    assert ci_small == pytest.approx(ci_large)  # more copies of a record add no information
    assert ci_small[1] - ci_small[0] > 0.4  # 10 records, half right: a wide interval
    by_fragment = bootstrap_ci(large.assign(group=large["index"].astype(str)), "accuracy",
                               n_boot=500, seed=1)
    assert by_fragment[1] - by_fragment[0] < 0.2  # what fragment resampling would claim
    assert bootstrap_ci(small, "accuracy", n_boot=500, seed=1) == ci_small
    auroc = bootstrap_ci(random_predictions(), "macro_auroc", n_boot=20, seed=0)
    assert 0.5 < auroc[0] <= auroc[1] <= 1.0


def test_plots_return_figures():
    df = random_predictions()
    m = compute_metrics(df["y_true"], df["y_pred"], df.filter(like="prob_").to_numpy(), CLASSES)
    history = pd.DataFrame({"member": 0, "epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4],
                            "val_loss": [1.1, 0.7, 0.9], "val_macro_f1": [0.3, 0.6, 0.5]})
    figures = [confusion_figure(m["confusion_matrix"], CLASSES), per_class_figure(m),
               training_curves_figure(history, best_epochs=[2])]
    assert all(isinstance(f, go.Figure) and f.data for f in figures)


# --------------------------------------------------------------------------- seed-mean interval
def seed_predictions(rng, n_seeds=5, n_records=30, per_record=4, seed_sd=0.8) -> list[pd.DataFrame]:
    """Binary predictions of ``n_seeds`` models on one test split: records differ in difficulty
    (shared by every seed), seeds in skill (logit scale)."""
    difficulty = np.repeat(rng.normal(0, 1, n_records), per_record)
    groups = np.repeat([f"r{g}" for g in range(n_records)], per_record)
    frames = []
    for skill in rng.normal(1.0, seed_sd, n_seeds):
        y = rng.integers(0, 2, len(groups))
        correct = rng.random(len(groups)) < 1 / (1 + np.exp(difficulty - skill))
        frames.append(pd.DataFrame({"group": groups, "y_true": y,
                                    "y_pred": np.where(correct, y, 1 - y)}))
    return frames


def test_seed_mean_interval_is_not_the_average_of_per_seed_endpoints():
    """One seed always right, one always wrong: each per-seed interval is a point (1 or 0), their
    average [0.5, 0.5]; the mean over two seeds is anything from 0 to 1."""
    y = np.tile([0, 1], 20)
    groups = np.repeat([f"r{g}" for g in range(10)], 4)
    right = pd.DataFrame({"group": groups, "y_true": y, "y_pred": y})
    wrong = right.assign(y_pred=1 - y)
    ends = np.mean([bootstrap_ci(f, "accuracy", n_boot=200) for f in (right, wrong)], axis=0)
    assert tuple(ends) == (0.5, 0.5)
    assert bootstrap_seed_mean_ci([right, wrong], "accuracy", n_boot=500) == (0.0, 1.0)
    assert bootstrap_seed_mean_ci([right, right], "accuracy", n_boot=200) == (1.0, 1.0)


def test_seed_mean_interval_covers_the_expected_score():
    """Over simulated test splits and seeds, the 95 % interval covers the expected accuracy (over
    seeds and records) about 95 % of the time; averaged per-seed endpoints cover less."""
    rng = np.random.default_rng(3)
    truth = np.mean([(f["y_true"] == f["y_pred"]).mean()
                     for f in seed_predictions(rng, n_seeds=400, n_records=400)])
    hits = {"seed mean": 0, "averaged endpoints": 0}
    for i in range(80):
        frames = seed_predictions(rng)
        low, high = bootstrap_seed_mean_ci(frames, "accuracy", n_boot=300, seed=i)
        ends = np.mean([bootstrap_ci(f, "accuracy", n_boot=300, seed=i) for f in frames], axis=0)
        hits["seed mean"] += low <= truth <= high
        hits["averaged endpoints"] += ends[0] <= truth <= ends[1]
    assert hits["seed mean"] / 80 >= 0.85
    assert hits["averaged endpoints"] < hits["seed mean"]
