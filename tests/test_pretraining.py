"""Stage 02: the "untrained" reference is the network at its initial weights, and says so."""
import numpy as np

from ecgnb import pretraining
from ecgnb.pretraining import PretrainConfig, pretrain

TINY = {"hidden_dims": 8, "output_dims": 16, "depth": 2}


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
