"""Continuations: lineage round trip, weights change but not the architecture, drift metrics."""
import numpy as np
import pytest

from ecgnb.data import corpora
from ecgnb import models, regularization
from ecgnb.evaluation.probe import probe
from ecgnb.data import DataConfig
from ecgnb.pretraining import PretrainConfig, pretrain
from ecgnb.regularization import RegularizationConfig, linear_cka, mean_cosine

TINY = {"hidden_dims": 8, "output_dims": 16, "depth": 2}


def test_cka_known_cases():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 10))
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    assert linear_cka(a, a) == pytest.approx(1.0)
    assert linear_cka(a, 3.0 * a @ q + 5.0) == pytest.approx(1.0)  # rotation, scale, shift
    assert linear_cka(a, rng.standard_normal((200, 10))) < 0.2
    assert mean_cosine(a, a) == pytest.approx(1.0) and mean_cosine(a, -a) == pytest.approx(-1.0)


@pytest.fixture(scope="module")
def parent(wesad_ecg_small):
    cfg = PretrainConfig(backbone="ts2vec", corpus="ECG", n_epochs=1, batch_size=32,
                         model_overrides=TINY, seed=0)
    return pretrain(cfg, wesad_ecg_small.subset(np.arange(96)), verbose=False)


@pytest.mark.slow
def test_continuation_changes_weights_keeps_architecture(parent, embedded_small, tmp_path):
    parent_path = parent.save(tmp_path / "parent.pt")
    child = models.load(parent_path)
    corpus = corpora.build_corpus("no-ECG", embedded_small["wesad"]).subset(np.arange(96))
    cfg = RegularizationConfig(scenario="ECG continued1", batch_size=32, seed=1)
    child = regularization.continue_training(child, corpus, None, cfg.step, parent_path,
                                             cfg.scenario, cfg, verbose=False)
    assert child.weights_hash() != parent.weights_hash()
    for name, module in parent.modules_.items():
        a, b = module.state_dict(), child.modules_[name].state_dict()
        assert a.keys() == b.keys()
        assert all(a[k].shape == b[k].shape for k in a)
    # lineage round trip through save/load, with the parent's identity
    loaded = models.load(child.save(tmp_path / "child.pt"))
    assert loaded.lineage == child.lineage and len(loaded.lineage) == 2
    step = loaded.lineage[-1]
    assert step["parent_hash"] == parent.weights_hash() and step["parent"] == str(parent_path)
    assert step["corpus"]["name"] == "no-ECG" and "ECG" not in step["corpus"]["domains"]
    assert step["epochs"] == 1 and step["selection"] == "last epoch (1)"
    assert len(loaded.history_) == len(parent.history_) + 1
    assert "continued1 [ECG continued1] on no-ECG" in regularization.lineage_tree(loaded.lineage)


def test_the_child_records_the_learning_rate_it_continued_at(parent, wesad_ecg_small, tmp_path):
    parent_path = parent.save(tmp_path / "parent.pt")
    cfg = RegularizationConfig(scenario="ECG continued1", batch_size=32, lr=5e-3, seed=1)
    child = regularization.continue_training(models.load(parent_path),
                                             wesad_ecg_small.subset(np.arange(64)), None, cfg.step,
                                             parent_path, cfg.scenario, cfg, verbose=False)
    assert child.state()["settings"]["lr"] == child.lineage[-1]["lr"] == 5e-3
    assert models.load(parent_path).settings.lr == parent.settings.lr != 5e-3


@pytest.mark.slow
def test_selection_on_continuation_validation(parent, embedded_small, tmp_path):
    parent_path = parent.save(tmp_path / "parent.pt")
    corpus = corpora.build_corpus("no-ECG", embedded_small["wesad"], channels=("EDA",))
    train, val = corpora.holdout_subject(corpus)
    cfg = RegularizationConfig(scenario="ECG continued30", n_epochs=3, selection="val",
                               batch_size=32, channels=("EDA",))
    child = regularization.continue_training(models.load(parent_path), train.subset(np.arange(64)),
                                             val.subset(np.arange(32)), cfg.step, parent_path,
                                             cfg.scenario, cfg, verbose=False)
    history = child.history_[-3:]
    best = min(history, key=lambda r: r["val_loss"])["epoch"] - len(parent.history_)
    assert f"epoch {best} of 3" in child.lineage[-1]["selection"]


def test_drift_and_probe(parent, fragment_small):
    from ecgnb.data import split_grouped
    x = fragment_small.x[:40]
    same = regularization.drift(parent, parent, x)
    assert same["linear_cka"] == pytest.approx(1.0) and same["mean_cosine"] == pytest.approx(1.0)
    scores = probe(parent, fragment_small, split_grouped(fragment_small, seed=0))
    assert 0.0 <= scores["val_macro_f1"] <= 1.0


def test_drift_and_probe_read_each_lead_as_its_own_series(make_multilabel_task):
    windows, splits = make_multilabel_task(16, 3, 32)
    a, b = (models.build("ts2vec", device="cpu", seed=seed, verbose=False, **TINY).build(32)
            for seed in (0, 1))
    drift = regularization.drift(a, b, windows.x)
    per_lead = regularization.drift(a, b, windows.x.reshape(-1, 1, 32))  # lead by lead, N*C rows
    assert drift == {**per_lead, "n_windows": len(windows)}
    assert regularization.drift(a, a, windows.x)["linear_cka"] == pytest.approx(1.0)
    scores = probe(a, windows, splits)
    assert set(scores) == {"val_macro_auroc"} and 0.0 <= scores["val_macro_auroc"] <= 1.0


def test_config_rejects_bad_recipes():
    with pytest.raises(ValueError, match="no continuation step"):
        RegularizationConfig(scenario="ECG")
    with pytest.raises(ValueError, match="cannot perturb"):
        RegularizationConfig(scenario="ECG continued1", channels=("ECG",))
    with pytest.raises(ValueError, match="cannot perturb"):
        RegularizationConfig(scenario="ECG extended", channels=("EDA",))
    with pytest.raises(ValueError, match="selection"):
        RegularizationConfig(selection="best-test")
    assert RegularizationConfig(scenario="ECG extended").step.n_epochs == 60
    assert isinstance(RegularizationConfig(), DataConfig)


@pytest.mark.parametrize("backbone, overrides", [
    ("ts2vec", TINY), ("tstcc", {"mid_channels": (8, 16), "final_out_channels": 16}),
    ("series2vec", {"rep_size": 16, "emb_size": 4, "n_heads": 2, "dim_ff": 16})])
def test_initial_twin_is_the_network_before_training(backbone, overrides, fragment_small):
    from ecgnb.pretraining import initial_twin

    x = fragment_small.x[:8]
    before = models.build(backbone, seed=3, verbose=False, **overrides)
    fresh = before.encode(x)
    twin = initial_twin(before, seed=3)
    assert twin is not before and twin.config == before.config
    np.testing.assert_array_equal(twin.encode(x), fresh)
    assert not np.array_equal(initial_twin(before, seed=4).encode(x), fresh)


def test_parent_of_another_normalisation_is_refused(parent, tmp_path):
    parent_path = parent.save(tmp_path / "parent.pt")
    assert parent.lineage[-1]["normalization"] == "zscore"
    child = models.load(parent_path)
    cfg = RegularizationConfig(scenario="ECG continued1", normalization="none")
    with pytest.raises(corpora.DataError, match="normalisation 'zscore'"):
        regularization.continue_training(child, None, None, cfg.step, parent_path, cfg.scenario,
                                         cfg, verbose=False)


def test_study_recipe_defaults_of_stage_03():
    ours = RegularizationConfig(scenario="ECG continued1")
    study = RegularizationConfig(scenario="ECG continued1", recipe="study")
    assert (ours.resolved("ts2vec").selection, ours.continuation) == ("last", "genuine")
    assert (study.resolved("ts2vec").selection, study.continuation) == ("val", "genuine")
    assert [study.resolved(b).selection for b in ("tstcc", "series2vec")] == ["last", "train_loss"]
    assert (study.use_amp, study.target_holdout, ours.use_amp, ours.target_holdout) == \
        (False, False, False, True)  # float16 autocast off under both (docs/deviations.md)
    explicit = RegularizationConfig(recipe="study", selection="last")
    assert explicit.resolved("ts2vec").selection == "last"
    with pytest.raises(ValueError, match="continuation"):
        RegularizationConfig(continuation="averaged")
