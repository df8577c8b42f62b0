"""Numerics of a run: scoped denormal flushing, bf16 autocast, and their records."""
import numpy as np
import pytest
import torch

from ecgnb.models import build, load
from ecgnb.models.precision import check_precision, flush_denormal

SUBNORMAL = 1e-40  # below float32's smallest normal number (1.2e-38)
TINY = dict(depth=1, hidden_dims=8, output_dims=8)


def is_flushing() -> bool:
    return bool((torch.tensor([SUBNORMAL]) * 1.0 == 0).item())


def windows(n: int = 12, n_timesteps: int = 32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, n_timesteps)).astype(np.float32)


needs_flush = pytest.mark.skipif(not torch.set_flush_denormal(False),
                                 reason="this CPU cannot flush denormals (no SSE3)")


@needs_flush
@pytest.mark.parametrize("outside", [False, True])
def test_flushing_is_scoped_and_restored_on_exceptions(outside):
    torch.set_flush_denormal(outside)
    try:
        with flush_denormal(True) as active:
            assert active and is_flushing()
        assert is_flushing() == outside
        with pytest.raises(ZeroDivisionError), flush_denormal(not outside):
            assert is_flushing() == (not outside)
            1 / 0
        assert is_flushing() == outside
    finally:
        torch.set_flush_denormal(False)


@needs_flush
def test_fit_and_encode_flush_inside_and_leave_the_setting_alone():
    seen = []
    enc = build("ts2vec", device="cpu", verbose=False, **TINY)
    enc.fit(windows(), n_epochs=1, batch_size=6, callback=lambda e, r: seen.append(is_flushing()))
    assert seen == [True] and not is_flushing()
    enc.encode(windows(2))
    assert not is_flushing()
    off = build("ts2vec", device="cpu", verbose=False, flush_denormal=False, **TINY)
    off.fit(windows(), n_epochs=1, batch_size=6, callback=lambda e, r: seen.append(is_flushing()))
    assert seen == [True, False]


def test_numeric_settings_are_saved_with_the_encoder(tmp_path):
    enc = build("tstcc", device="cpu", verbose=False, flush_denormal=False, timesteps=2)
    enc.build(64)
    assert enc.settings.precision == "fp32"
    restored = load(enc.save(tmp_path / "encoder.pt"))
    assert restored.settings.flush_denormal is False and restored.settings.precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="precision"):
        build("series2vec", precision="half")


@pytest.mark.parametrize("backbone", ["ts2vec", "tstcc", "series2vec"])
def test_bf16_precision_trains_and_encodes_in_float32_out(backbone):
    # runs on every CPU: without AVX-512 BF16 / AMX autocast emulates bfloat16 (slower, same path)
    small = {"ts2vec": TINY, "tstcc": dict(timesteps=2), "series2vec": dict(rep_size=16)}
    enc = build(backbone, device="cpu", verbose=False, precision="bf16", **small[backbone])
    enc.fit(windows(n_timesteps=64), n_epochs=1, batch_size=6)
    assert np.isfinite(enc.history_[0]["loss"])
    emb = enc.encode(windows(3, 64))
    assert emb.dtype == np.float32 and np.isfinite(emb).all()


def cuda_flags() -> tuple:
    """(autotuner, TF32 in cuDNN convolutions, deterministic cuDNN, TF32 in matrix products)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    return cudnn.benchmark, cudnn.allow_tf32, cudnn.deterministic, matmul.allow_tf32


@pytest.mark.parametrize("recipe, downstream, pretraining", [
    ("study", (False, True, True, False), (False, True, False, False)),  # PyTorch's defaults
    ("ecgnb", (True, True, False, False), (True, True, False, False)),  # TF32 convolutions
])
def test_each_recipe_trains_under_its_numerics(recipe, downstream, pretraining):
    from ecgnb.evaluation.settings import TrainConfig
    from ecgnb.evaluation.train import fit_classifier
    from ecgnb.pretraining import model_config
    before, seen = cuda_flags(), []
    x, y = torch.randn(20, 4), torch.arange(20) % 2
    config = TrainConfig(head="linear", mode="lp", recipe=recipe, n_epochs=1, verbose=False,
                         device="cpu")
    fit_classifier(torch.nn.Linear(4, 2), (x, y), (x, y), config, n_classes=2,
                   after_epoch=lambda epoch, model: seen.append(cuda_flags()))
    enc = build("tstcc", device="cpu", verbose=False,
                **model_config("tstcc", "small", {"timesteps": 2}, recipe))
    enc.fit(windows(n_timesteps=64), n_epochs=1, batch_size=6,
            callback=lambda epoch, record: seen.append(cuda_flags()))
    assert seen == [downstream, pretraining] and cuda_flags() == before
