"""The shared encoder API: ``fit`` keeps the config as constructed; ``set_params`` changes it."""
import dataclasses

import numpy as np
import pytest

import ecgnb.models

TINY = {"ts2vec": {"depth": 2, "hidden_dims": 8, "output_dims": 16},
        "tstcc": {"final_out_channels": 16, "mid_channels": (8, 16), "tc_hidden_dim": 16,
                  "tc_n_layers": 1, "tc_n_heads": 2, "tc_mlp_dim": 16, "timesteps": 2},
        "series2vec": {"rep_size": 16, "emb_size": 8, "n_heads": 2, "dim_ff": 16}}


def spied_encoder(name: str, monkeypatch):
    """A tiny encoder and the list its ``fit`` calls append their optimisers to."""
    encoder = ecgnb.models.build(name, device="cpu", seed=0, verbose=False, **TINY[name])
    optimizers, build_optimizer = [], encoder._optimizer

    def spy(params, lr):
        optimizers.append(build_optimizer(params, lr))
        return optimizers[-1]

    monkeypatch.setattr(encoder, "_optimizer", spy)
    return encoder, optimizers


@pytest.mark.parametrize("name", sorted(TINY))
def test_fit_trains_at_the_given_lr_and_leaves_the_config_unchanged(name, monkeypatch):
    x = np.random.default_rng(0).standard_normal((16, 1, 64)).astype(np.float32)
    encoder, optimizers = spied_encoder(name, monkeypatch)
    config = dataclasses.replace(encoder.config)
    encoder.fit(x, n_epochs=1, batch_size=8, lr=0.0123)
    assert encoder.config == config and encoder.config.lr != 0.0123
    assert [g["lr"] for g in optimizers[0].param_groups] == [0.0123]
    encoder.fit(x, n_epochs=1, batch_size=8)  # no lr: the config's
    assert [g["lr"] for g in optimizers[1].param_groups] == [config.lr]
    assert encoder.set_params(lr=0.0456).config.lr == 0.0456
    assert dataclasses.replace(encoder.config, lr=config.lr) == config
    with pytest.raises(TypeError, match="learning_rate"):
        encoder.set_params(learning_rate=0.1)
