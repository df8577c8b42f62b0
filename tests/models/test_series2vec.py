"""Series2Vec: shapes, pooling, targets and loss vs references, training, persistence, probe."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgnb.config import torch_generator
from ecgnb.models import CheckpointError, build, load
from ecgnb.models.series2vec import (OrderInvariantAttention, similarity_loss,
                                     spectral_filter_gain)
from ecgnb.data.signals import zscore
from ecgnb.models.softdtw import decimate_series, soft_dtw_numba

SMALL = dict(emb_size=4, rep_size=16, n_heads=2, dim_ff=16, softdtw_decimate=6)


def waves(n: int, length: int = 180, seed: int = 0) -> np.ndarray:
    """Sines and squares of random rate and phase plus noise, float32 ``[n, 1, length]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 360.0
    phase = 2 * np.pi * (rng.uniform(2, 12, (n, 1)) * t + rng.uniform(0, 1, (n, 1)))
    x = np.where(rng.random((n, 1)) < 0.5, np.sin(phase), np.sign(np.sin(phase)))
    return (x + 0.2 * rng.normal(size=x.shape))[:, None, :].astype(np.float32)


def small(seed: int = 0, **overrides):
    return build("series2vec", seed=seed, verbose=False, **{**SMALL, **overrides})


@pytest.fixture(scope="module")
def fitted():
    return small(spectrum_filter="random").fit(waves(24), n_epochs=1, batch_size=12)


def test_default_shapes():
    enc = build("series2vec", verbose=False)
    x = waves(3, length=720)
    assert enc.encode(x).shape == (3, 640)
    assert enc.features(x).shape == (3, 640, 711)
    assert enc.network_.embedding_dim == enc.network_.feature_dim == 640
    assert sorted(enc.modules_) == ["attention", "network"]


@pytest.mark.parametrize("length", [180, 201])
def test_embed_equals_pool_of_forward(length):
    net = small().build(length).network_.eval()
    x = torch.from_numpy(waves(5, length))
    with torch.no_grad():
        features, embedding = net(x), net.embed(x)
    assert features.shape == (5, 32, length - 9)
    torch.testing.assert_close(net.pool(features), embedding, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_filter_is_defined_in_hz_at_fs():
    freqs = np.fft.rfftfreq(720, d=1 / 360.0)
    gain = spectral_filter_gain(720, 360.0, "lowpass", lowpass_hz=40.0)
    assert gain[np.argmin(abs(freqs - 10))] > 0.99 and gain[np.argmin(abs(freqs - 100))] < 1e-3
    assert not np.allclose(gain, spectral_filter_gain(720, 128.0, "lowpass", lowpass_hz=40.0))
    x = torch.from_numpy(waves(6))
    at_360 = small(spectrum_filter="lowpass", fs=360.0).build(180)
    at_250 = small(spectrum_filter="lowpass", fs=250.0).build(180)
    time_360, freq_360 = at_360.targets(x, torch_generator(0))
    time_250, freq_250 = at_250.targets(x, torch_generator(0))
    torch.testing.assert_close(time_360, time_250)
    assert not torch.allclose(freq_360, freq_250)


def test_targets_match_pairwise_references():
    enc = small(spectrum_filter="bandpass").build(180)
    x = waves(5)
    time_target, freq_target = enc.targets(torch.from_numpy(x), torch_generator(0))
    soft_dtw = soft_dtw_numba(decimate_series(x[:, 0].astype(np.float64), 6), 0.1)
    gain = spectral_filter_gain(180, 360.0, "bandpass")
    spectra = np.abs(np.fft.rfft(x[:, 0].astype(np.float64), norm="ortho")) * gain
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    np.testing.assert_allclose(time_target.numpy(), [soft_dtw[i, j] for i, j in pairs], rtol=1e-5)
    expected = [np.linalg.norm(spectra[i] - spectra[j]) for i, j in pairs]
    np.testing.assert_allclose(freq_target.numpy(), expected, rtol=1e-4)


def test_filter_gains_are_computed_once_per_length_filter_and_device():
    """A step reads its gain from the encoder's kept tensors: no host-to-device copy per batch;
    a changed setting (here fs) gets its own gain."""
    enc = small(spectrum_filter="random")
    enc.filter_gain(180, torch_generator(0), "cpu")
    assert len(enc._gains) == 2  # a random filter's first draw places both kinds: no later copy
    drawn = {enc.filter_gain(180, torch_generator(seed), "cpu").data_ptr() for seed in range(8)}
    assert len(drawn) == 2 and len(enc._gains) == 2  # low-pass and high-pass, each made once
    gain = enc.filter_gain(180, torch_generator(0), "cpu")
    assert gain.dtype == torch.float32 and gain is enc.filter_gain(180, torch_generator(0), "cpu")
    enc.set_params(fs=250.0)
    assert not torch.equal(enc.filter_gain(180, torch_generator(0), "cpu"), gain)


def test_similarity_loss_matches_loop_reference():
    rng = np.random.default_rng(0)
    z, target = rng.normal(size=(5, 3)), rng.uniform(1, 9, size=10)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    predicted = np.array([np.linalg.norm(z[i] - z[j]) for i, j in pairs])
    scaled = [(v - v.min()) / (v.max() - v.min()) for v in (predicted, target)]
    diff = np.abs(scaled[0] - scaled[1])
    expected = np.mean(np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5))
    loss = similarity_loss(torch.from_numpy(z), torch.from_numpy(target))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_attention_mixes_the_batch_without_order():
    attention = OrderInvariantAttention(8, 2, 16, dropout=0.0)
    z = torch.randn(5, 8, generator=torch_generator(0))
    with torch.no_grad():
        out = attention(z)
        changed = z.clone()
        changed[4] += 1.0
        assert not torch.allclose(attention(changed)[0], out[0])  # sample 0 sees sample 4
        order = torch.tensor([3, 0, 4, 1, 2])
        torch.testing.assert_close(attention(z[order]), out[order])


def test_published_behaviour_switches():
    """mix_batch=False: no sample sees another (the official length-1 sequences);
    time_target="squared_euclidean": what the official soft-DTW computed on [B, 1, T]."""
    attention = OrderInvariantAttention(8, 2, 16, dropout=0.0, mix_batch=False)
    z = torch.randn(5, 8, generator=torch_generator(0))
    with torch.no_grad():
        changed = z.clone()
        changed[4] += 1.0
        torch.testing.assert_close(attention(changed)[:4], attention(z)[:4])
    enc = small(time_target="squared_euclidean", mix_batch=False).build(180)
    x = waves(4)
    time_target, _ = enc.targets(torch.from_numpy(x), torch_generator(0))
    flat = x[:, 0].astype(np.float64)
    expected = [np.sum((flat[i] - flat[j]) ** 2) for i in range(4) for j in range(i + 1, 4)]
    np.testing.assert_allclose(time_target.numpy(), expected, rtol=1e-4)
    assert np.isfinite(enc.fit(waves(8), n_epochs=1, batch_size=4).history_[-1]["loss"])
    with pytest.raises(ValueError, match="time_target"):
        small(time_target="dtw")


def test_encode_ignores_the_batch_and_the_attention(fitted):
    x = waves(10, seed=1)
    everything = fitted.encode(x)
    np.testing.assert_allclose(fitted.encode(x[:3]), everything[:3], atol=1e-5)
    with torch.no_grad():
        for p in fitted.modules_["attention"].parameters():
            p.add_(1.0)
    np.testing.assert_array_equal(fitted.encode(x), everything)


@pytest.mark.slow
def test_loss_decreases():
    # RAdam's first steps are small (variance rectification): a higher lr keeps this short
    enc = small(spectrum_filter="bandpass").fit(waves(32), n_epochs=25, batch_size=32, lr=1e-2)
    losses = [h["loss"] for h in enc.history_]
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3])


def test_same_seed_same_result():
    x = waves(24)
    runs = [small(seed=s, dropout=0.2).fit(x, n_epochs=1, batch_size=12) for s in (3, 3, 4)]
    assert runs[0].history_[0]["loss"] == runs[1].history_[0]["loss"]
    np.testing.assert_array_equal(runs[0].encode(x), runs[1].encode(x))
    assert runs[0].weights_hash() == runs[1].weights_hash() != runs[2].weights_hash()


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "s2v.pt")
    loaded = load(path)
    x = waves(4, seed=2)
    np.testing.assert_array_equal(loaded.encode(x), fitted.encode(x))
    assert loaded.weights_hash() == fitted.weights_hash()
    assert loaded.history_ == fitted.history_ and loaded.config == fitted.config


def test_wrong_architecture_is_a_checkpoint_error(fitted, tmp_path):
    state = fitted.state()
    state["config"]["rep_size"] = 8
    torch.save(state, tmp_path / "wider.pt")
    with pytest.raises(CheckpointError):
        load(tmp_path / "wider.pt")
    state = fitted.state()
    del state["modules"]["attention"]
    torch.save(state, tmp_path / "no_attention.pt")
    with pytest.raises(CheckpointError):
        load(tmp_path / "no_attention.pt")


def test_bad_settings_are_loud():
    with pytest.raises(ValueError):
        build("series2vec", lowpass_hz=200.0)  # above Nyquist at 360 Hz
    with pytest.raises(ValueError):
        build("series2vec", spectrum_filter="notch")
    with pytest.raises(KeyError):
        build("series2vec", filter="lowpass")
    with pytest.raises(ValueError):
        small().build(12)


def probe_score(embeddings: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Balanced accuracy of a logistic-regression probe, leave-one-source-record-out."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    predicted = cross_val_predict(probe, embeddings, y, groups=groups, cv=LeaveOneGroupOut())
    return balanced_accuracy_score(y, predicted)


@pytest.mark.slow
def test_pretraining_learns_something(fragment_small):
    # z-scored windows: soft-DTW then compares morphology, not amplitude in mV. Seed 0 is
    # pinned: on this tiny set the gain over a random encoder depends on the initialisation.
    x = zscore(fragment_small.x).astype(np.float32)
    y, groups = fragment_small.y, fragment_small.groups
    enc = build("series2vec", seed=0, verbose=False, emb_size=8, rep_size=32, n_heads=4,
                dim_ff=32, softdtw_decimate=12, spectrum_filter="bandpass")
    random_score = probe_score(enc.encode(x), y, groups)
    enc.fit(x, n_epochs=20, batch_size=60, lr=1e-2)
    trained_score = probe_score(enc.encode(x), y, groups)
    assert trained_score > random_score + 0.05, (random_score, trained_score)
