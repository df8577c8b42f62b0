"""Multi-label, multi-lead cells (the PTB-XL benchmark's protocol): binary cross-entropy,
macro-AUROC and its recomputation from the predictions, encoders applied lead by lead, and
check_classes on indicator targets."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import ecgnb.models
from ecgnb.data import DataError, Windows
from ecgnb.data.corpora import check_classes
from ecgnb.evaluation.cell import run_cell
from ecgnb.evaluation.metrics import bootstrap_ci, metrics_from_predictions, write_run
from ecgnb.evaluation.multilabel import (choose_threshold, frame_metrics, multilabel_frame,
                                         multilabel_metrics)
from ecgnb.evaluation.settings import TrainConfig
from ecgnb.evaluation.train import _criterion
from ecgnb.models.hinception import HInceptionTime

T, N_LEADS, CLASSES = 64, 3, ("NORM", "MI", "STTC")
QUICK = dict(n_epochs=3, warmup_epochs=1, batch_size=16, verbose=False, device="cpu")


@pytest.fixture(scope="module")
def task(make_multilabel_task):
    return make_multilabel_task(20, 3, T)


def tiny_encoder():
    return ecgnb.models.build("ts2vec", device="cpu", seed=0, verbose=False, depth=2,
                              hidden_dims=8, output_dims=16).build(T)


@pytest.mark.parametrize("mode, head, extra", [
    ("lp", "linear", {}), ("lp", "mlp", {}), ("lp", "fcn", {}), ("ft", "mlp", {}),
    ("ft", "fcn", {"lead_pooling": "mean"}), ("supervised", "fcn", {}),
    ("supervised", "hinception", {"n_members": 2})])
def test_a_multilabel_cell_scores_macro_auroc_that_recomputes(task, tmp_path, mode, head, extra):
    windows, splits = task
    encoder = None if mode == "supervised" else tiny_encoder()
    result = run_cell(encoder, windows, splits,
                      TrainConfig(head=head, mode=mode, **QUICK, **extra))
    metrics, frame = result.test_metrics, result.predictions
    assert result.config.select_on == "macro_auroc" and "val_macro_auroc" in result.history
    assert 0.0 <= metrics["macro_auroc"] <= 1.0 and metrics["n_test"] == len(splits["test"])
    assert all(0.0 <= metrics[f"auroc_{c}"] <= 1.0 for c in CLASSES)
    y = windows.indicator()[splits["test"]]
    proba = frame[[f"prob_{c}" for c in CLASSES]].to_numpy()
    assert metrics["macro_auroc"] == pytest.approx(roc_auc_score(y, proba, average="macro"))
    assert metrics["threshold"] == result.val_metrics["threshold"]
    path = write_run(tmp_path, metrics, frame, extra=result.summary(), n_boot=20)
    record = json.loads(path.read_text())
    assert set(record["ci"]) == {"macro_auroc", "macro_ap", "sample_f1"}
    again = metrics_from_predictions(tmp_path / "predictions.csv", CLASSES, record["threshold"])
    for name in ("macro_auroc", "macro_ap", "sample_f1", *(f"auroc_{c}" for c in CLASSES)):
        assert again[name] == pytest.approx(metrics[name]), name


def test_mean_lead_pooling_probes_one_embedding_size(task):
    windows, splits = task
    result = run_cell(tiny_encoder(), windows, splits,
                      TrainConfig(head="linear", mode="lp", lead_pooling="mean", **QUICK))
    assert result.model.head.linear.in_features == 16
    assert result.model.network.embedding_dim == 16


def test_bce_weights_positives_by_negatives_and_refuses_the_sampler():
    y = torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]], dtype=torch.float32)
    loss = _criterion(y, 2, TrainConfig(head="mlp", mode="lp", imbalance="weights", **QUICK))
    assert isinstance(loss, torch.nn.BCEWithLogitsLoss)
    torch.testing.assert_close(loss.pos_weight, torch.tensor([1 / 3, 3.0]))
    with pytest.raises(ValueError, match="sampler"):
        _criterion(y, 2, TrainConfig(head="mlp", mode="lp", imbalance="sampler", **QUICK))


def test_multilabel_metrics_and_threshold_on_a_known_case():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    proba = np.array([[0.9, 0.2], [0.3, 0.8], [0.7, 0.6], [0.1, 0.1]])
    metrics = multilabel_metrics(y, proba, ("a", "b"), threshold=0.5)
    assert metrics["macro_auroc"] == 1.0 and metrics["auroc_a"] == 1.0
    assert metrics["sample_f1"] == pytest.approx(0.75)  # the empty record scores 0
    assert choose_threshold(y, proba) == 0.35  # the lowest of the grid in (0.3, 0.6]: all right


def test_the_grouped_bootstrap_takes_a_metric_function(task):
    windows, _ = task
    rng = np.random.default_rng(0)
    frame = multilabel_frame(np.arange(len(windows)), windows.groups, windows.indicator(),
                             rng.random(windows.y.shape), CLASSES)
    low, high = bootstrap_ci(frame, "macro_auroc", n_boot=30,
                             score=lambda rows: frame_metrics(rows, 0.5))
    assert 0.0 <= low <= high <= 1.0 and low < 0.5 < high  # random scores: chance inside


def test_the_ensemble_averages_sigmoid_probabilities():
    members = [torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)]
    x = torch.randn(5, 2)
    mean = torch.stack([torch.sigmoid(m(x)) for m in members]).mean(0)
    torch.testing.assert_close(torch.sigmoid(HInceptionTime(members, True)(x)), mean)


def test_check_classes_needs_every_class_in_each_split(task):
    windows, splits = task
    check_classes(windows, splits)
    y = windows.y.copy()
    y[splits["val"], 2] = 0
    y[splits["val"], 0] = 1
    with pytest.raises(DataError, match=r"split 'val'.*STTC.*macro-AUROC"):
        check_classes(Windows(windows.x, y, windows.groups, windows.domains, windows.fs,
                              windows.classes), splits)


def test_weighted_scores_equal_the_metrics_of_each_resample():
    """The bootstrap's fast path against frame_metrics on the drawn rows (ties, a rare class)."""
    from ecgnb.evaluation.multilabel import weighted_scores
    rng = np.random.default_rng(0)
    y = (rng.random((30, 4)) < 0.3).astype(int)
    y[:, 3], y[0, 3] = 0, 1
    proba = np.round(np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1), 1)
    groups = np.repeat(np.arange(10), 3)
    frame = multilabel_frame(np.arange(30), groups, y, proba, ["A", "B", "C", "D"])
    draws = rng.integers(0, 10, (20, 10))
    counts = np.zeros((20, 10))
    np.add.at(counts, (np.arange(20)[:, None], draws), 1)
    fast = weighted_scores(y, proba, 0.4, counts[:, groups])
    for b, draw in enumerate(draws):
        slow = frame_metrics(frame.iloc[np.concatenate([np.flatnonzero(groups == g)
                                                        for g in draw])], 0.4)
        for metric, values in fast.items():
            expected = np.nan if slow[metric] is None else slow[metric]
            np.testing.assert_allclose(values[b], expected, atol=1e-12)


def test_the_seed_mean_interval_of_macro_auroc_covers_the_seeds():
    from ecgnb.evaluation.metrics import bootstrap_seed_mean_ci
    rng = np.random.default_rng(1)
    y = (rng.random((40, 3)) < 0.4).astype(int)
    groups = np.repeat(np.arange(20), 2)
    frames = [multilabel_frame(np.arange(40), groups, y,
                               np.clip(0.4 * y + rng.random(y.shape) * (0.6 + s), 0, 1),
                               list(CLASSES)) for s in (0.0, 0.6)]
    low, high = bootstrap_seed_mean_ci(frames, "macro_auroc", n_boot=300)
    scores = [frame_metrics(f, 0.5)["macro_auroc"] for f in frames]
    assert 0.5 < low < np.mean(scores) < high <= 1.0
