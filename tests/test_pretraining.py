"""Stage 02: the "untrained" reference (initial weights), checkpoint selection (holdout vs last
epoch), the recipe's backbone settings and what the lineage records of the target (normalisation,
the split a "+target" encoder saw)."""
import numpy as np
import pytest

from ecgnb.data import corpora
from ecgnb import pretraining
from ecgnb.pretraining import PretrainConfig, model_config, pretrain

TINY = {"hidden_dims": 8, "output_dims": 16, "depth": 2}


@pytest.fixture(scope="module")
def corpus(wesad_ecg_small):
    train, val = corpora.holdout_subject(wesad_ecg_small)
    rng = np.random.default_rng(0)
    return (train.subset(np.sort(rng.choice(len(train), 64, replace=False))),
            val.subset(np.sort(rng.choice(len(val), 24, replace=False))))


@pytest.mark.slow
def test_holdout_selection_keeps_the_best_holdout_epoch(corpus):
    train, val = corpus
    cfg = PretrainConfig(backbone="ts2vec", corpus="ECG", n_epochs=5, batch_size=16, lr=3e-2,
                         model_overrides=TINY, recipe="study", seed=0)
    assert cfg.selection == "holdout"
    encoder = pretrain(cfg, train, val, verbose=False)
    val_losses = [r["val_loss"] for r in encoder.history_]
    best = int(np.argmin(val_losses)) + 1
    record = encoder.lineage[-1]
    assert record["selected_epoch"] == best and record["recipe"] == "study"
    assert record["selection"].startswith(f"lowest held-out-subject SSL loss: epoch {best} of 5")
    # the weights kept are the best epoch's: their held-out loss is the best one recorded
    assert encoder.evaluate_loss(val.x, batch_size=16, seed=0) == pytest.approx(min(val_losses),
                                                                                  rel=1e-5)
    last = pretrain(PretrainConfig(**{**cfg.__dict__, "selection": "last"}), train, val,
                    verbose=False)
    assert last.lineage[-1]["selection"] == "last epoch"
    assert last.evaluate_loss(val.x, batch_size=16, seed=0) == pytest.approx(val_losses[-1],
                                                                               rel=1e-5)
    with pytest.raises(ValueError, match="selection"):
        PretrainConfig(selection="best")


def test_the_checkpoint_records_the_learning_rate_it_was_trained_at(corpus):
    train, _ = corpus
    cfg = PretrainConfig(backbone="ts2vec", corpus="ECG", n_epochs=1, batch_size=32, lr=3e-2,
                         model_overrides=TINY, seed=0)
    assert pretrain(cfg, train, verbose=False).state()["settings"]["lr"] == 3e-2


def test_recipe_defaults_of_stage_02():
    assert PretrainConfig().selection == "last" and not PretrainConfig().use_amp  # TF32 instead
    study = {b: PretrainConfig(backbone=b, recipe="study") for b in ("ts2vec", "tstcc", "series2vec")}
    assert {b: c.selection for b, c in study.items()} == \
        {"ts2vec": "holdout", "tstcc": "last", "series2vec": "train_loss"}
    assert not any(c.use_amp for c in study.values())
    assert model_config("tstcc", "study", {}, "study") == {
        "betas": (0.9, 0.999), "clean_bn_stats": False, "allow_tf32": True,
        "cudnn_benchmark": False}
    assert model_config("tstcc", "study", {"betas": (0.9, 0.99)}, "study")["betas"] == (0.9, 0.99)
    assert model_config("tstcc", "study", {}, "ecgnb") == {"allow_tf32": True}  # ours on CUDA


@pytest.mark.slow
def test_lineage_records_normalisation_and_the_target_records_seen(corpus, embedded_small):
    data = dict(fragment_root=str(embedded_small["fragment"]),
                wesad_root=str(embedded_small["wesad"]))
    cfg = PretrainConfig(backbone="ts2vec", corpus="ECG+target", n_epochs=1, batch_size=32,
                         model_overrides=TINY, **data)
    fragments, splits = corpora.target_task(cfg)
    train, val = corpora.load_corpus("ECG+target", cfg, n_windows=96)
    record = pretrain(cfg, train, val, verbose=False).lineage[-1]
    assert record["normalization"] == "zscore"
    seen = set(record["target_split"]["records"])
    assert seen and seen <= set(fragments.groups[splits["train"]])
    assert record["target_split"]["split_seed"] == cfg.split_seed
    plain = pretrain(PretrainConfig(backbone="ts2vec", n_epochs=1, batch_size=32,
                                    model_overrides=TINY), *corpus, verbose=False).lineage[-1]
    assert plain["normalization"] == "zscore" and "target_split" not in plain


def test_zero_epochs_keep_the_initial_weights_with_their_losses_and_lineage(wesad_ecg_small):
    train, val = wesad_ecg_small.subset(np.arange(64)), wesad_ecg_small.subset(np.arange(64, 96))
    cfg = PretrainConfig(backbone="ts2vec", n_epochs=0, batch_size=32, model_overrides=TINY, seed=3)
    encoder = pretrain(cfg, train, val, verbose=False)
    twin = pretraining.initial_twin(encoder, seed=3).build(train.x.shape[-1])
    assert encoder.weights_hash() == twin.weights_hash()
    (record,) = encoder.history_
    assert record["epoch"] == 0 and np.isfinite(record["loss"]) and np.isfinite(record["val_loss"])
    (step,) = encoder.lineage
    assert (step["stage"], step["scenario"], step["epochs"], step["corpus"]) == (
        "untrained", "untrained", 0, None)
    assert "initial weights" in step["selection"]
