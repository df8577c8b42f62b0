"""H-InceptionTime: the 17 frozen filters, the Inception stack, independent ensemble members."""
import numpy as np
import pytest
import torch
from torch import nn

from ecgnb.models.hinception import (HInceptionNetwork, HInceptionTime, HybridFilters,
                                     build_baseline, decreasing_filter, increasing_filter,
                                     member_seeds, peak_filter)

T = 64


def test_seventeen_filters_with_the_paper_lengths():
    filters = HybridFilters().filters()
    lengths = {kind: sorted(w.shape[-1] for name, w in filters.items() if name.startswith(kind))
               for kind in ("increase", "decrease", "peak")}
    assert len(filters) == 17
    assert lengths == {"increase": [2, 4, 8, 16, 32, 64], "decrease": [2, 4, 8, 16, 32, 64],
                       "peak": [9, 18, 36, 72, 144]}  # nominal 6..96, k + k/2 taps


def test_filter_shapes_detect_what_they_name():
    np.testing.assert_array_equal(increasing_filter(4), [-1, 1, -1, 1])
    np.testing.assert_array_equal(decreasing_filter(4), [1, -1, 1, -1])
    ramp = [1 / 9, 4 / 9, 1]  # H-InceptionTime's reference: k + k/2 taps, lobes of k/2
    np.testing.assert_allclose(peak_filter(12), [-r for r in ramp] + [-r for r in ramp[::-1]]
                               + [2 * r for r in ramp] + [2 * r for r in ramp[::-1]]
                               + [-r for r in ramp] + [-r for r in ramp[::-1]])
    np.testing.assert_allclose(peak_filter(6), [-1, -1, -1, 2, 2, 2, -1, -1, -1])
    for n in (6, 24, 96):
        peak = peak_filter(n)
        assert abs(peak.sum()) < 1e-12 and np.allclose(peak, peak[::-1]) and peak.argmax() > 0
    t = torch.arange(200, dtype=torch.float32)[None, None]
    hybrid = HybridFilters()
    rising, falling = hybrid(t)[0, :, 100], hybrid(-t)[0, :, 100]
    assert (rising[:6] > 0).all() and (falling[6:12] > 0).all()  # after ReLU
    assert (rising[6:12] == 0).all() and (falling[:6] == 0).all()
    bump = torch.exp(-0.5 * ((t - 100) / 3) ** 2)
    assert (hybrid(bump)[0, 12:14, 100] > 0).all()  # short peak detectors fire on a peak


def test_filters_are_frozen_through_a_training_step():
    model = build_baseline("hinception", n_classes=3, n_timesteps=T, seed=0)
    hybrid = model.network.inception[0].hybrid
    before = {k: v.clone() for k, v in hybrid.filters().items()}
    assert not list(hybrid.parameters())
    assert all(not v.requires_grad for v in hybrid.filters().values())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, T)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    for name, value in hybrid.filters().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
        assert value.grad is None
    assert "network.inception.0.hybrid.peak_96" in model.state_dict()


def test_inception_stack():
    net = HInceptionNetwork()
    assert len(net.inception) == 6 and sorted(net.shortcuts) == ["2", "5"]
    assert net.inception[0].out_channels == 4 * 32 + 17
    assert all(m.hybrid is None and m.out_channels == 128 for m in net.inception[1:])
    assert isinstance(net.inception[0].bottleneck, nn.Identity)  # univariate input
    assert net.inception[1].bottleneck.out_channels == 32
    kernels = sorted(c.kernel_size[0] for c in net.inception[1].convs)
    assert kernels == [10, 20, 40]
    x = torch.randn(2, 1, T)
    assert net(x).shape == (2, 128, T) and net.embed(x).shape == (2, 128)
    model = build_baseline("hinception", 6, T, seed=0)
    assert model(x).shape == (2, 6)


def test_raw_baselines():
    x = torch.randn(2, 1, T)
    mlp, fcn = build_baseline("mlp", 4, T, seed=0), build_baseline("fcn", 4, T, seed=0)
    assert mlp.head.layers[0].in_features == T and mlp(x).shape == (2, 4)
    assert fcn.head.blocks[0].in_channels == 1 and fcn(x).shape == (2, 4)
    assert not list(mlp.network.parameters())
    with pytest.raises(KeyError, match="unknown baseline"):
        build_baseline("resnet", 4, T, seed=0)


def test_ensemble_members_are_independent():
    seeds = member_seeds(7, 5)
    assert len(set(seeds)) == 5 and seeds == member_seeds(7, 5) and seeds != member_seeds(8, 5)
    ensemble = HInceptionTime.from_seeds(3, T, seeds)
    members = list(ensemble.members)
    assert len({id(m) for m in members}) == 5
    first = [m.network.inception[0].convs[0].weight for m in members]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not torch.equal(first[i], first[j])
    with pytest.raises(ValueError, match="distinct"):
        HInceptionTime([members[0], members[0]])
    ensemble.eval()
    x = torch.randn(4, 1, T)
    mean_proba = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
    torch.testing.assert_close(ensemble(x).softmax(-1), mean_proba)


def test_identity_shortcuts_add_the_residual_as_it_is():
    net = HInceptionNetwork(shortcut="identity").eval()
    assert not [p for s in net.shortcuts.values() for p in [*s.parameters(), *s.buffers()]]
    x = torch.randn(2, 1, T)
    with torch.no_grad():
        h = x
        for d in range(3):
            h = net.inception[d](h)
        first = h + x  # the univariate input over all 128 channels
        for d in range(3, 6):
            h = net.inception[d](h if d > 3 else first)
        torch.testing.assert_close(net(x), h + first, rtol=0, atol=0)
    conv = HInceptionNetwork()
    assert sum(p.numel() for p in conv.parameters()) > sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="identity shortcut"):
        HInceptionNetwork(in_channels=3, shortcut="identity")
    with pytest.raises(ValueError, match="shortcut"):
        HInceptionNetwork(shortcut="dense")
