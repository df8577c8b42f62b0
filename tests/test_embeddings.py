"""ecgnb.embeddings and ecgnb.maps: extraction per layer, loading saved cells, scores, UMAP."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from ecgnb import embeddings as E
from ecgnb import map_explorer as X
from ecgnb import maps as M
from ecgnb import models, runs
from ecgnb.finetuning import load_classifier
from ecgnb.data import Windows
from ecgnb.data.windows import label_names
from ecgnb.models.heads import Classifier, build_head
from ecgnb.models.hinception import HInceptionTime, build_baseline
from ecgnb.models.leads import LeadWise, join_leads, split_leads

T = 64  # tiny windows keep every network cheap
N_CLASSES = 3


@pytest.fixture(scope="module")
def encoder():
    enc = models.build("ts2vec", device="cpu", seed=0, verbose=False, hidden_dims=8,
                       output_dims=16, depth=1)
    return enc.build(T)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(10, 1, T)).astype(np.float32)


def classifier(encoder, head: str, mode: str = "ft") -> Classifier:
    network = encoder.trainable_network()
    return Classifier(network, build_head(head, network, N_CLASSES), freeze_network=mode == "lp")


def source(encoder, model, mode: str = "ft") -> E.RunSource:
    cell = {"backbone": "ts2vec", "scenario": "ECG", "head": "mlp", "mode": mode}
    return E.RunSource("run", "mlp-ft-f1-s0", cell, encoder, model.eval())


@pytest.mark.parametrize("head, head_dim", [("mlp", 500), ("fcn", 128), ("linear", 16)])
def test_every_stage_has_its_shape(encoder, x, head, head_dim):
    src = source(encoder, classifier(encoder, head))
    shapes = {layer: E.embed(src, layer, x, batch_size=4).shape for layer in E.LAYERS}
    assert shapes == {"encoder": (10, 16), "finetuned": (10, 16), "head": (10, head_dim),
                      "logits": (10, N_CLASSES)}
    with torch.no_grad():
        expected = src.classifier(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(E.embed(src, "logits", x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(E.predict(src, x), expected.argmax(1))


def test_linear_probe_finetuned_stage_equals_encoder(encoder, x):
    src = source(encoder, classifier(encoder, "mlp", mode="lp"), mode="lp")
    np.testing.assert_allclose(E.embed(src, "finetuned", x), E.embed(src, "encoder", x),
                               rtol=1e-5, atol=1e-6)


def test_ensemble_layers_and_no_encoder_layer(x):
    model = HInceptionTime([build_baseline("mlp", N_CLASSES, T, seed=s) for s in (0, 1)])
    src = E.RunSource("run", "mlp-supervised", {"mode": "supervised"}, None, model.eval())
    assert src.layers == ("finetuned", "head", "logits")
    assert E.embed(src, "head", x).shape == (10, 2 * 500)
    assert E.embed(src, "finetuned", x).shape == (10, 2 * T)
    with pytest.raises(ValueError, match="not available"):
        E.embed(src, "encoder", x)


def write_cell(folder, model, cell: dict, metrics: dict | None = None):
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "cell.json").write_text(json.dumps(cell))
    runs.write_cell_metrics(folder, metrics or {})


@pytest.mark.parametrize("head, mode", [("mlp", "ft"), ("fcn", "lp")])
def test_load_classifier_round_trip(encoder, x, tmp_path, head, mode):
    model = classifier(encoder, head, mode)
    last = model.head.linear if head == "fcn" else model.head.layers[0]
    torch.nn.init.normal_(last.weight)  # weights unlike a fresh head's
    write_cell(tmp_path / "cell", model, {"head": head, "mode": mode})
    loaded = load_classifier(tmp_path / "cell", N_CLASSES, T, encoder, device="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(x)), model.eval()(torch.from_numpy(x)),
                                   rtol=1e-5, atol=1e-6)


def test_load_classifier_baselines_and_strictness(x, tmp_path, encoder):
    ensemble = HInceptionTime.from_seeds(N_CLASSES, T, seeds=(3, 4))
    write_cell(tmp_path / "ens", ensemble, {"head": "hinception", "mode": "supervised"})
    loaded = load_classifier(tmp_path / "ens", N_CLASSES, T)
    assert len(loaded.members) == 2
    with torch.no_grad():
        np.testing.assert_allclose(loaded(torch.from_numpy(x[:2])),
                                   ensemble.eval()(torch.from_numpy(x[:2])), rtol=1e-4, atol=1e-5)
    write_cell(tmp_path / "bad", classifier(encoder, "mlp"), {"head": "fcn", "mode": "ft"})
    with pytest.raises(models.CheckpointError, match="does not fit"):
        load_classifier(tmp_path / "bad", N_CLASSES, T, encoder)


def test_load_source_follows_run_names(encoder, tmp_path, monkeypatch, complete_run):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    enc_dir = tmp_path / "g" / "pretraining" / "ts2vec-ecg"
    encoder.save(enc_dir / "encoder.pt")
    complete_run(enc_dir)
    run_dir = tmp_path / "g" / "finetuning" / "ts2vec-ecg-f1.0"
    for name in ("mlp-lp-f1-s0", "fcn-ft-f1-s0"):
        head, mode = name.split("-")[:2]
        write_cell(run_dir / "cells" / name, classifier(encoder, head, mode),
                   {"backbone": "ts2vec", "scenario": "ECG", "head": head, "mode": mode,
                    "encoder_run": "g/pretraining/ts2vec-ecg", "encoder_hash": encoder.weights_hash()})
    complete_run(run_dir)
    windows = Windows(np.zeros((4, 1, T), np.float32), np.zeros(4, np.int64), np.array(["a"] * 4),
                      np.array(["ECG"] * 4), 32.0, ("a", "b", "c"))
    src = E.load_source("g/finetuning/ts2vec-ecg-f1.0", "", windows, device="cpu")
    assert src.cell_name == "fcn-ft-f1-s0" and src.label == "ts2vec ECG · fcn-ft-f1-s0"
    assert src.encoder.weights_hash() == encoder.weights_hash()
    with pytest.raises(FileNotFoundError, match="has no cell"):
        E.load_source("g/finetuning/ts2vec-ecg-f1.0", "linear-ft-f1-s0", windows)


# --------------------------------------------------------------------------- scores
def blobs(n_per: int, centres: np.ndarray, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + spread * rng.normal(size=(n_per, centres.shape[1])) for c in centres])
    return x, np.repeat(np.arange(len(centres)), n_per)


def test_scores_on_separated_classes():
    centres = 100.0 * np.eye(3, 8)
    train, y_train = blobs(20, centres, 1.0, seed=0)
    test, y_test = blobs(10, centres, 1.0, seed=1)
    assert E.silhouette_by_class(train, y_train) > 0.95
    assert E.knn_accuracy(train, y_train, test, y_test, k=5) == 1.0
    assert np.isnan(E.silhouette_by_class(train, np.zeros(len(train))))


def test_domain_mixing_identical_versus_separated():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(600, 4))
    domains = rng.choice(["ECG", "EDA", "Resp"], size=600, p=[0.2, 0.4, 0.4])
    mixed = E.domain_mixing(same, domains, k=10)
    assert 0.85 < mixed["score"] < 1.15 and set(mixed["per_domain"]) == {"ECG", "EDA", "Resp"}
    apart, labels = blobs(100, 50.0 * np.eye(2, 4), 1.0)
    assert E.domain_mixing(apart, labels, k=10)["score"] == 0.0
    duplicated = np.repeat(apart, 2, axis=0)  # self-exclusion must not depend on row order
    assert E.domain_mixing(duplicated, np.repeat(labels, 2), k=3)["score"] == 0.0
    np.testing.assert_array_equal(E.ecg_or_other(np.array(["ECG", "target", "EMG"])),
                                  ["ECG", "ECG", "non-ECG"])


# --------------------------------------------------------------------------- UMAP
def test_umap_is_deterministic_under_a_seed():
    train, _ = blobs(25, 10.0 * np.eye(3, 6), 1.0)
    new, _ = blobs(4, 10.0 * np.eye(3, 6), 1.0, seed=1)
    settings = M.UMAPSettings(n_neighbors=5, min_dist=0.2)
    a, b = M.fit_umap(train, settings, seed=3), M.fit_umap(train, settings, seed=3)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)
    np.testing.assert_array_equal(M.place(a, new), M.place(b, new))
    assert a.embedding_.shape == (75, 2) and M.place(a, new).shape == (12, 2)
    assert not np.array_equal(a.embedding_, M.fit_umap(train, settings, seed=4).embedding_)


@pytest.mark.parametrize("n_blobs", [2, 6])  # umap lays out > 4 components with sklearn
def test_umap_of_identical_windows_is_deterministic_under_a_seed(n_blobs):
    # Six identical windows (flat traces z-scored to zeros) form a component of the k-NN graph
    # whose Laplacian has one repeated eigenvalue: ARPACK restarts, and without a seeded
    # generator every fit started it elsewhere.
    train, _ = blobs(20, 10.0 * np.eye(n_blobs, 6), 1.0)
    train = np.vstack([train, np.zeros((6, 6), np.float32)])
    settings = M.UMAPSettings(n_neighbors=5, min_dist=0.2)
    maps = [M.fit_umap(train, settings, seed=0).embedding_ for _ in range(4)]
    for other in maps[1:]:
        np.testing.assert_array_equal(maps[0], other)


def test_target_map_fits_train_and_places_test(encoder):
    rng = np.random.default_rng(0)
    windows = Windows(rng.normal(size=(30, 1, T)).astype(np.float32), np.arange(30) % 3,
                      np.array([f"r{i % 6}" for i in range(30)]), np.array(["ECG"] * 30), 32.0,
                      ("a", "b", "c"))
    splits = {"train": np.arange(20), "val": np.arange(20, 25), "test": np.arange(25, 30)}
    src = source(encoder, classifier(encoder, "mlp"))
    m = M.target_map(src, "head", windows, splits, "test", M.UMAPSettings(), seed=0)
    assert list(m.points["split"]) == ["train"] * 20 + ["test"] * 5
    assert m.vectors.shape == (25, 500) and set(m.points["correct"]) <= {"correct", "incorrect"}
    table = M.scores_table([m], k=3)
    assert list(table["space"]) == ["embedding", "map"]
    assert table["knn_accuracy"].between(0, 1).all()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="layers"):
        E.EmbeddingConfig(layers=("encoder", "pooled"))
    with pytest.raises(ValueError, match="cells"):
        E.EmbeddingConfig(runs=("a", "b", "c"), cells=("x", "y"))


def test_sample_corpus_keeps_every_domain():
    domains = np.array(["ECG"] * 50 + ["EDA"] * 150)
    corpus = Windows(np.zeros((200, 1, 4), np.float32), np.zeros(200, np.int64),
                     np.array(["S2"] * 200), domains, 4.0, ("baseline",))
    part = E.sample_corpus(corpus, 40, seed=0)
    assert pd.Series(part.domains).value_counts().to_dict() == {"EDA": 30, "ECG": 10}


def test_a_missing_or_failed_run_says_run_it_first(fragment_small, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    cfg = E.EmbeddingConfig(runs=("g/finetuning/supervised-f1.0",))
    with pytest.raises(FileNotFoundError, match="missing or unfinished.*run it first"):
        E.load_sources(cfg, fragment_small)
    (tmp_path / "g" / "finetuning" / "supervised-f1.0").mkdir(parents=True)
    (tmp_path / "g" / "finetuning" / "supervised-f1.0" / "_FAILED.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="failed.*run it first"):
        E.load_sources(cfg, fragment_small)


# ------------------------------------------------------------------ multi-lead, multi-label
N_LEADS = 3


def multilead_source(encoder, pooling: str, threshold: float = 0.5) -> E.RunSource:
    """A linear-probe cell over 3 leads (the classifier load_classifier rebuilds), multi-label."""
    network = LeadWise(encoder.trainable_network(), N_LEADS, pooling)
    model = Classifier(network, build_head("mlp", network, N_CLASSES), freeze_network=True)
    cell = {"backbone": "ts2vec", "scenario": "ECG", "head": "mlp", "mode": "lp",
            "n_leads": N_LEADS, "lead_pooling": pooling, "multilabel": True}
    return E.RunSource("run", "mlp-lp-f1-s0", cell, encoder, model.eval(), threshold=threshold)


@pytest.mark.parametrize("pooling, dim", [("concat", N_LEADS * 16), ("mean", 16)])
def test_multilead_layers_read_each_lead_as_the_classifier_did(encoder, pooling, dim):
    x = np.random.default_rng(1).normal(size=(6, N_LEADS, T)).astype(np.float32)
    src = multilead_source(encoder, pooling)
    per_lead = encoder.encode(split_leads(x))
    np.testing.assert_allclose(E.embed(src, "encoder", x, batch_size=4),
                               join_leads(per_lead, N_LEADS, pooling), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(E.embed(src, "finetuned", x), E.embed(src, "encoder", x),
                               rtol=1e-5, atol=1e-5)  # linear probing: the encoder's own
    assert E.embed(src, "head", x).shape == (6, 500) and E.embed(src, "logits", x).shape == (6, 3)
    one_lead = x[:, :1]  # a corpus window: one lead through the per-lead networks
    np.testing.assert_allclose(E.embed(src, "finetuned", one_lead), per_lead[::N_LEADS],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="reads 3-lead windows at layer 'head'"):
        E.embed(src, "head", one_lead)


def test_multilabel_prediction_is_the_set_above_the_cells_threshold(encoder):
    x = np.random.default_rng(2).normal(size=(8, N_LEADS, T)).astype(np.float32)
    src = multilead_source(encoder, "concat", threshold=0.4)
    proba = 1 / (1 + np.exp(-E.embed(src, "logits", x)))
    predicted = E.predict(src, x)
    assert predicted.dtype == np.int8
    np.testing.assert_array_equal(predicted, (proba >= 0.4).astype(np.int8))


def test_supervised_multilead_network_reads_no_single_lead(x):
    model = build_baseline("fcn", N_CLASSES, T, 0, N_LEADS)
    src = E.RunSource("run", "fcn-supervised", {"mode": "supervised", "n_leads": N_LEADS},
                      None, model.eval())
    assert not E.reads_one_lead(src, "finetuned")
    with pytest.raises(ValueError, match="reads 3-lead windows"):
        E.embed(src, "finetuned", x)


def test_label_sets_name_windows_and_predictions():
    y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], np.int8)
    assert list(label_names(y, ("NORM", "MI", "STTC"))) == ["NORM", "MI+STTC", "no class"]
    assert list(label_names(np.array([2, -1]), ("a", "b", "c"))) == ["c", "unlabelled"]


def test_knn_macro_auroc_separated_and_random():
    centres = 100.0 * np.eye(3, 8)
    train, y_train = blobs(20, centres, 1.0, seed=0)
    test, y_test = blobs(10, centres, 1.0, seed=1)
    onehot = np.eye(3, dtype=np.int8)
    assert E.knn_macro_auroc(train, onehot[y_train], test, onehot[y_test], k=5) == 1.0
    rng = np.random.default_rng(0)
    noise = E.knn_macro_auroc(rng.normal(size=(400, 4)), rng.integers(0, 2, (400, 3)),
                              rng.normal(size=(200, 4)), rng.integers(0, 2, (200, 3)), k=15)
    assert 0.4 < noise < 0.6
    assert np.isnan(E.knn_macro_auroc(train, onehot[y_train], test, np.ones((30, 3)), k=5))


def test_multilabel_target_map_colours_and_scores_by_label_set(encoder, make_multilabel_task):
    windows, splits = make_multilabel_task(8, 4, T)
    src = multilead_source(encoder, "concat")
    m = M.target_map(src, "encoder", windows, splits, "test", M.UMAPSettings(), seed=0)
    labels = m.points["class"]
    assert set(labels) <= {"NORM", "MI", "STTC", "NORM+MI", "MI+STTC"} and labels.str.contains(
        r"\+").any()
    predicted = E.predict(src, windows.x[m.points["window"]])
    hit = (predicted == windows.y[m.points["window"]]).all(axis=1)
    np.testing.assert_array_equal(m.points["correct"] == "correct", hit)
    table = M.scores_table([m], k=3)
    assert {"knn_macro_auroc", "classifier_exact_match"} <= set(table.columns)
    assert "knn_accuracy" not in table and table["knn_macro_auroc"].between(0, 1).all()
    row = int(m.points.index[-1])
    title = X.window_title(m, row)
    assert "(lead II)" in title and f"predicted {m.points.loc[row, 'prediction']}" in title
    window = str(m.points.loc[row, "window"])
    np.testing.assert_allclose(X.dequantize(X._waveforms([m])["target"]["x"][window]),
                               windows.x[int(window), 1], atol=1e-4)  # lead II


def test_multilead_corpus_map_leaves_out_the_target_and_supervised_networks(
        encoder, make_multilabel_task, embedded_small):
    windows, splits = make_multilabel_task(8, 4, T)
    cfg = E.EmbeddingConfig(runs=("run",), layers=("encoder", "finetuned"), corpus="ECG+target",
                            n_corpus_windows=24, use_small_data=True, fs=32.0)
    with pytest.warns(UserWarning, match="3-lead records are on the target maps.*corpus map: ECG"):
        corpus = E.corpus_windows(cfg, windows)
    assert corpus.x.shape[1] == 1 and "target" not in set(corpus.domains) and len(corpus) == 24
    with pytest.warns(UserWarning, match="corpus map: none"):
        assert E.corpus_windows(dataclasses.replace(cfg, corpus="target"), windows) is None
    corpus = corpus.subset(np.arange(12))
    assert corpus.n_timesteps == T  # 2-s windows at 32 Hz
    cell = {"backbone": "supervised", "scenario": "none", "mode": "supervised", "n_leads": N_LEADS,
            "multilabel": True}
    supervised = E.RunSource("sup", "fcn-supervised", cell, None,
                             build_baseline("fcn", N_CLASSES, T, 0, N_LEADS).eval())
    with pytest.warns(UserWarning, match=r"no corpus map for \['supervised none · fcn-supervised "
                                         r"· finetuned'\]"):
        maps = M.build_maps([multilead_source(encoder, "mean"), supervised], cfg, windows, splits,
                            corpus)
    views = [(m.source.split(" ")[0], m.layer, m.view) for m in maps]
    assert views == [("ts2vec", "encoder", "target"), ("ts2vec", "finetuned", "target"),
                     ("supervised", "finetuned", "target"), ("ts2vec", "encoder", "corpus"),
                     ("ts2vec", "finetuned", "corpus")]


def test_load_source_of_a_multilead_cell_keeps_its_threshold(encoder, tmp_path, monkeypatch,
                                                              complete_run, make_multilabel_task):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    encoder.save(tmp_path / "g" / "pretraining" / "ts2vec-ecg" / "encoder.pt")
    complete_run(tmp_path / "g" / "pretraining" / "ts2vec-ecg")
    run_dir = tmp_path / "g" / "finetuning" / "ptbxl"
    src = multilead_source(encoder, "mean")
    write_cell(run_dir / "cells" / src.cell_name, src.classifier,
               {**src.cell, "encoder_run": "g/pretraining/ts2vec-ecg"}, {"threshold": 0.35})
    complete_run(run_dir)
    windows, _ = make_multilabel_task(4, 2, T)
    loaded = E.load_source("g/finetuning/ptbxl", "", windows, device="cpu")
    assert loaded.threshold == 0.35 and loaded.is_multilabel and loaded.n_leads == N_LEADS
    np.testing.assert_allclose(E.embed(loaded, "logits", windows.x),
                               E.embed(src, "logits", windows.x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="read 3-lead windows, these have 1"):
        E.load_source("g/finetuning/ptbxl", "",
                      dataclasses.replace(windows, x=windows.x[:, :1], leads=()))
