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
    assert encoder.config == config and encoder.settings.lr != 0.0123
    assert [g["lr"] for g in optimizers[0].param_groups] == [0.0123]
    encoder.fit(x, n_epochs=1, batch_size=8)  # no lr: the settings'
    assert [g["lr"] for g in optimizers[1].param_groups] == [encoder.settings.lr]
    assert encoder.set_params(lr=0.0456).settings.lr == 0.0456
    assert encoder.config == config  # the rate is a fit setting, not the backbone's own
    with pytest.raises(TypeError, match="learning_rate"):
        encoder.set_params(learning_rate=0.1)


class _Planted:
    """Unpickling this runs ``os.system``: what a tampered encoder file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_an_encoder_file_that_would_run_code_is_refused_unrun(tmp_path):
    """Encoders are read as data (weights_only): a file that asks for a callable is one
    CheckpointError naming it and saying how to convert an older encoder, and nothing ran."""
    import torch

    enc = ecgnb.models.build("ts2vec", device="cpu", verbose=False, hidden_dims=8,
                             output_dims=8, depth=1).build(32)
    path = enc.save(tmp_path / "encoder.pt")
    assert ecgnb.models.load(path).weights_hash() == enc.weights_hash()  # data only: loads
    state = torch.load(path, weights_only=True)
    state["lineage"] = [_Planted(tmp_path / "ran")]
    torch.save(state, path)
    with pytest.raises(ecgnb.models.CheckpointError, match="refused.*convert-encoder"):
        ecgnb.models.load(path)
    assert not (tmp_path / "ran").exists()


def test_an_encoder_of_the_previous_format_is_converted_once(tmp_path):
    import torch

    enc = ecgnb.models.build("tstcc", device="cpu", verbose=False, final_out_channels=16,
                             mid_channels=(8, 16), tc_hidden_dim=16, tc_n_layers=1,
                             tc_n_heads=2, tc_mlp_dim=16, timesteps=6).build(64)
    path = tmp_path / "encoder.pt"
    torch.save({**enc.state(), "format": "ecgnb-encoder-1",
                "lineage": [{"weights": np.float64(1.5)}]}, path)  # a NumPy object inside
    with pytest.raises(ecgnb.models.CheckpointError, match="convert-encoder"):
        ecgnb.models.load(path)
    old = ecgnb.models.convert_encoder(path)
    assert old.is_file() and ecgnb.models.load(path).weights_hash() == enc.weights_hash()
