"""A training step that does not wait for the device, checked on the CPU: one read of the loss per
epoch, no read of a device value and no data-dependent shape in a step, the device generator
seeded once per fit (recorded, checkpointed, reproducible), the corpus placement rule, the backend
flags, and TS2Vec's weight average without a host read; on a GPU, the synchronisations per step
counted by CUDA itself."""
import collections
import copy
import warnings

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

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


# Operations that make the host wait for a device tensor: a read of its value, or an output
# whose shape depends on its values (a boolean mask).
WAITING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2",
               "unique_consecutive", "repeat_interleave"}


class DeviceWaits(TorchDispatchMode):
    """Counts, per operation, the host waits a GPU run of the block would make. Device tensors
    are the marked ones (parameters, batches), what is computed from them, and what is drawn from
    a generator in ``device_generators`` (ids)."""

    def __init__(self, device_generators: set):
        super().__init__()
        self.ids, self.kept = set(), []  # kept alive, so that no id is reused
        self.device_generators = device_generators
        self.waits = collections.Counter()

    def mark(self, tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self.ids.add(id(t))
                self.kept.append(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        on_device = any(id(t) in self.ids for t in inputs)
        name = func.__name__.split(".")[0]
        masked = name.startswith("index") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in inputs[1:])
        if on_device and (name in WAITING_OPS or masked):
            self.waits[name] += 1
        out = func(*args, **kwargs)
        if on_device or id(kwargs.get("generator")) in self.device_generators:
            self.mark(tree_flatten(out)[0])
        return out


def _waits(name: str, n_batches: int, monkeypatch) -> collections.Counter:
    """Host waits of a one-epoch fit of ``n_batches`` batches, as a GPU run would make them."""
    generators_made = set()

    def marked(host, device):
        on_device, seed = device_generator(host, device)
        generators_made.add(id(on_device))
        return on_device, seed
    import ecgnb.models.base as base
    monkeypatch.setattr(base, "device_generator", marked)
    enc = encoder(name).build(96)
    mode = DeviceWaits(generators_made)
    mode.mark([t for m in enc.modules_.values() for t in [*m.parameters(), *m.buffers()]])
    loss = enc._loss

    def marked_loss(xb, *gens):
        mode.mark([xb])
        return loss(xb, *gens)
    enc._loss = marked_loss
    with mode:
        enc.fit(windows(8 * n_batches), n_epochs=1, batch_size=8)
    return mode.waits


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_a_training_step_never_waits_for_the_device(name, monkeypatch, separate_generator):
    """The waits of a 5-batch epoch are those of a 1-batch epoch (the epoch's one read of its
    loss sum): a step adds none (TS-TCC's batch-norm pass included, one batch per step)."""
    one, five = _waits(name, 1, monkeypatch), _waits(name, 5, monkeypatch)
    assert one == five == collections.Counter({"_local_scalar_dense": 1})


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(TINY))
def test_cuda_counts_no_synchronisation_in_a_training_step(name):
    """CUDA's own sync detector (``torch.cuda.set_sync_debug_mode``): a 5-batch epoch makes as
    many synchronisations as a 1-batch one (fp32, no gradient scaler)."""
    def syncs(n_batches):
        enc = build(name, device="cuda", seed=0, verbose=False, use_amp=False, **TINY[name])
        x = windows(8 * n_batches)
        enc.fit(x[:8], n_epochs=1, batch_size=8)  # compile, allocate
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                enc.fit(x, n_epochs=1, batch_size=8)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)
    assert syncs(5) == syncs(1)


@pytest.mark.slow
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


@pytest.mark.slow
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
    config = build("tstcc", device="cpu").settings
    with numerics(torch.device("cpu"), config):
        assert cudnn.benchmark is True and not cudnn.allow_tf32 and not matmul.allow_tf32
    assert (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == before
    with pytest.raises(RuntimeError), backend_flags(True, True):
        raise RuntimeError
    assert (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == before
    record = numerics_record(torch.device("cuda"), build("ts2vec", device="cpu").settings, True)
    assert record == {"device": "cuda", "autocast": "fp16", "cudnn_benchmark": False,
                      "allow_tf32": False, "flush_denormal": False}
    bf16 = build("series2vec", device="cpu", precision="bf16").settings
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
