"""Heads: input sizes read from every backbone, output shapes, raw logits, frozen networks."""
import pytest
import torch
from torch import nn

import ecgnb.models
from ecgnb.models.heads import HEADS, Classifier, FCNHead, MLPHead, build_head, head_input_dim
from ecgnb.models.base import Network

T = 64
TINY = {"ts2vec": {"depth": 2, "hidden_dims": 8, "output_dims": 16},
        "tstcc": {"final_out_channels": 16, "mid_channels": (8, 16), "tc_hidden_dim": 16,
                  "tc_n_layers": 1, "tc_n_heads": 2, "tc_mlp_dim": 16, "timesteps": 2},
        "series2vec": {"rep_size": 16, "emb_size": 8, "n_heads": 2, "dim_ff": 16}}


class WideNetwork(Network):
    """Embedding and features of different sizes, to tell which one a head reads."""

    embedding_dim, feature_dim = 40, 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, self.feature_dim, 3, padding=1)

    def forward(self, x):
        return self.conv(x)

    def pool(self, features):
        return features.flatten(1)[:, :self.embedding_dim]


def tiny_network(name: str) -> Network:
    encoder = ecgnb.models.build(name, device="cpu", verbose=False, **TINY[name]).build(T)
    return encoder.trainable_network()


def test_tiny_configs_cover_the_registry():
    assert set(TINY) == set(ecgnb.models.REGISTRY)


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_every_head_on_every_backbone(backbone):
    net = tiny_network(backbone)
    x = torch.randn(3, 1, T)
    for name in HEADS:
        head = build_head(name, net, n_classes=6)
        first = next(m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv1d)))
        expected = net.embedding_dim if name != "fcn" else net.feature_dim
        assert (first.in_features if name != "fcn" else first.in_channels) == expected
        model = Classifier(net, head).eval()
        assert model(x).shape == (3, 6)
        assert model.head_input(x).ndim == (3 if name == "fcn" else 2)


def test_input_size_comes_from_the_network():
    net = WideNetwork()
    assert head_input_dim("linear", net) == head_input_dim("mlp", net) == 40
    assert head_input_dim("fcn", net) == 3
    assert head_input_dim("mlp", 640) == 640
    x = torch.randn(8, 1, T)
    for name in HEADS:
        assert Classifier(net, build_head(name, net, 4))(x).shape == (8, 4)
    with pytest.raises(KeyError, match="unknown head"):
        build_head("transformer", net, 4)


def test_logits_are_raw():
    """No activation, softmax or dropout after the last layer (defect 5 of the original)."""
    mlp = MLPHead(16, 6)
    layers = list(mlp.layers)
    assert isinstance(layers[-1], nn.Linear) and isinstance(layers[-2], nn.Dropout)
    assert isinstance(layers[1], nn.ReLU) and layers[-1].in_features == 500
    for name in HEADS:
        head = build_head(name, 16, 6)
        assert isinstance(list(head.modules())[-1], nn.Linear)
    out = mlp.eval()(torch.randn(32, 16))
    assert (out < 0).any() and not torch.allclose(out.sum(-1), torch.ones(32))


def test_fcn_head_keeps_time_then_pools():
    head = FCNHead(5, 3)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv1d)]
    assert [c.out_channels for c in convs] == [128, 256, 128]
    assert [c.kernel_size[0] for c in convs] == [8, 5, 3]
    features = torch.randn(2, 5, 17)
    assert head.blocks(features).shape == (2, 128, 17)
    assert head(features).shape == (2, 3)
    with pytest.raises(ValueError, match=r"\[B, C, T'\]"):
        head(torch.randn(2, 5))


def test_frozen_network_stays_in_eval_mode():
    net = WideNetwork()
    model = Classifier(net, build_head("linear", net, 2), freeze_network=True).train()
    assert not net.training and model.head.training
    assert not any(p.requires_grad for p in net.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
