"""A training step that does not wait for the device, checked on the CPU: one read of the loss per
epoch, the device generator seeded once per fit (recorded, checkpointed, reproducible), the
corpus placement rule, the backend flags, and TS2Vec's weight average without a host read."""
import copy

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

import ecgnb.models.device as device_module
from ecgnb.models import build
from ecgnb.models.device import Corpus, device_generator, generators, placement
from ecgnb.models.precision import backend_flags, numerics, numerics_record
from ecgnb.models.ts2vec import TSEncoder, average_step

TINY = {"ts2vec": dict(hidden_dims=8, output_dims=8, depth=2),
        "tstcc": dict(final_out_channels=16, mid_channels=(8, 16), tc_hidden_dim=16,
                      tc_n_layers=1, tc_n_heads=2, tc_mlp_dim=16, timesteps=6),
        "series2vec": dict(emb_size=4, rep_size=8, n_heads=2, dim_ff=16, softdtw_decimate=4)}


def windows(n=32, t=96, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, t)).astype(np.float32)


def encoder(name, seed=0):
    return build(name, device="cpu", seed=seed, verbose=False, **TINY[name])


@pytest.fixture
def separate_generator(monkeypatch):
    """Draws on the CPU from a generator of their own, as on a GPU."""
    monkeypatch.setattr(device_module, "has_separate_generator", lambda device: True)


@pytest.mark.parametrize("name", sorted(TINY))
def test_the_loss_is_read_once_per_epoch_and_once_per_validation(name, monkeypatch):
    """No batch loss is read on the host; the float64 sums are, once per epoch and validation.
    (Optimisers read their step counts, host tensors even for parameters on a GPU.)"""
    reads, batch_losses = [], []
    enc = encoder(name)
    loss = enc._loss

    def recorded_loss(xb, *gens):
        batch_losses.append(loss(xb, *gens))
        return batch_losses[-1]
    enc._loss = recorded_loss
    for method in ("item", "__float__", "tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, method)

        def counted(tensor, *args, _original=original, _method=method, **kwargs):
            reads.append((_method, tensor))
            return _original(tensor, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, method, counted)
    enc.fit(windows(), n_epochs=2, batch_size=8, x_val=windows(16, seed=1))
    monkeypatch.undo()
    assert len(batch_losses) == 2 * (4 + 2)  # 4 training and 2 validation batches per epoch
    assert not [m for m, t in reads if any(t is b for b in batch_losses)]
    sums = [m for m, t in reads if t.dtype == torch.float64 and t.dim() == 0]
    assert sums == ["item"] * 4
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_loss"]) for h in enc.history_)


def test_device_generator_is_seeded_once_per_fit_recorded_and_reproducible(separate_generator):
    first = encoder("ts2vec").fit(windows(), n_epochs=2, batch_size=8)
    again = encoder("ts2vec").fit(windows(), n_epochs=2, batch_size=8)
    other = encoder("ts2vec").fit(windows(), n_epochs=2, batch_size=8, seed=1)
    assert isinstance(first.fit_record_["device_seed"], int)
    assert first.fit_record_["device_seed"] == again.fit_record_["device_seed"]
    assert other.fit_record_["device_seed"] != first.fit_record_["device_seed"]
    assert first.weights_hash() == again.weights_hash() != other.weights_hash()
    record = first.training_record()
    assert record["device_seed"] == first.fit_record_["device_seed"]
    assert record["corpus"] == "host" and record["autocast"] is None
    assert {"cudnn_benchmark", "allow_tf32"} <= set(record)


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_fit_with_a_device_generator_resumes_exactly(name, tmp_path, separate_generator):
    from tests.models.test_checkpoint import Stop

    args = dict(n_epochs=2, batch_size=8, lr=1e-2)
    whole = encoder(name).fit(windows(), **args)
    path, calls = tmp_path / "fit.pt", {"n": 0}
    interrupted = encoder(name)
    loss = interrupted._loss

    def failing_loss(xb, *gens):
        calls["n"] += 1
        if calls["n"] == 6:  # the second batch of epoch 2
            raise Stop
        return loss(xb, *gens)
    interrupted._loss = failing_loss
    with pytest.raises(Stop):
        interrupted.fit(windows(), checkpoint=path, checkpoint_every_s=1e-9, **args)
    saved = torch.load(path, weights_only=False)["state"]
    assert len(saved["rng"]["generators"]) == 2  # host and device generator
    resumed = encoder(name).fit(windows(), checkpoint=path, checkpoint_every_s=1e-9, **args)
    assert resumed.checkpoint_.resumed_from["batch"] == 8
    assert resumed.weights_hash() == whole.weights_hash()
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in whole.history_]


def test_on_the_cpu_the_device_draws_come_from_the_host_generator():
    host = torch.Generator().manual_seed(0)
    on_device, seed = device_generator(host, torch.device("cpu"))
    assert on_device is host and seed is None and generators(host, on_device) == [host]


def test_corpus_placement_rule():
    cuda = torch.device("cuda")
    assert placement(10, torch.device("cpu"), free_bytes=0) == "host"
    assert placement(50, cuda, free_bytes=100) == "device"
    assert placement(51, cuda, free_bytes=100) == "pinned"
    assert placement(90, cuda, free_bytes=100, share=0.9) == "device"
    x = torch.arange(12.0).reshape(6, 1, 2)
    corpus = Corpus(x, torch.device("cpu"))
    idx = corpus.indices(torch.tensor([4, 1]))
    assert corpus.where == "host" and torch.equal(corpus.batch(idx), x[[4, 1]])
    assert torch.equal(corpus.slice(2, 4), x[2:4])


def test_backend_flags_are_set_for_the_block_and_restored():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    config = build("tstcc", device="cpu").config
    with numerics(torch.device("cpu"), config):
        assert cudnn.benchmark is True and not cudnn.allow_tf32 and not matmul.allow_tf32
    assert (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == before
    with pytest.raises(RuntimeError), backend_flags(True, True):
        raise RuntimeError
    assert (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == before
    record = numerics_record(torch.device("cuda"), build("ts2vec", device="cpu").config, True)
    assert record == {"device": "cuda", "autocast": "fp16", "cudnn_benchmark": False,
                      "allow_tf32": False, "flush_denormal": False}
    bf16 = build("series2vec", device="cpu", precision="bf16").config
    assert numerics_record(torch.device("cuda"), bf16)["autocast"] == "bf16"


def test_weight_average_step_equals_averaged_model_update():
    torch.manual_seed(0)
    network = TSEncoder(1, 8, 8, 2)
    ours = AveragedModel(network)
    ours.update_parameters(network)  # the average starts as TS2Vec's build starts it
    theirs = copy.deepcopy(ours)
    for _ in range(3):
        with torch.no_grad():
            for p in network.parameters():
                p.add_(torch.randn_like(p))
        average_step(ours, network)
        theirs.update_parameters(network)
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 4
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)
