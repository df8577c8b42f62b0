"""Training checkpoints: atomic files, only the same fit resumes, and a resumed fit ends exactly
where an uninterrupted one does (every backbone; at an epoch end, mid-epoch, and after kill -9)."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgnb.config import torch_generator
from ecgnb.models import build
from ecgnb.models.checkpoint import Checkpointer, rng_state, set_rng_state

TINY = {"ts2vec": dict(hidden_dims=8, output_dims=8, depth=2),
        "tstcc": dict(final_out_channels=16, mid_channels=(8, 16), tc_hidden_dim=16,
                      tc_n_layers=1, tc_n_heads=2, tc_mlp_dim=16, timesteps=6),
        "series2vec": dict(emb_size=4, rep_size=8, n_heads=2, dim_ff=16, softdtw_decimate=4)}


def windows(n=40, t=96, seed=0):
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    freq = rng.uniform(1, 5, (n, 1, 1))
    x = np.sin(np.linspace(0, 2 * np.pi, t)[None, None] * freq + phase)
    return (x + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)


def encoder(name, seed=0):
    return build(name, device="cpu", seed=seed, verbose=False, **TINY[name])


class Stop(Exception):
    """Raised inside a fit to stand for a kill."""


def test_save_is_atomic_and_another_fit_is_set_aside(tmp_path):
    path = tmp_path / "checkpoints" / "fit.pt"
    ckpt = Checkpointer(path, {"lr": 1e-3}, every_s=0)
    ckpt.save({"epoch": 3, "w": torch.arange(4)})
    assert [p.name for p in path.parent.iterdir()] == ["fit.pt"]  # no temporary file left
    assert Checkpointer(path, {"lr": 1e-3}).load()["epoch"] == 3
    with pytest.warns(UserWarning, match="another fit: lr: 0.001 -> 0.0003"):
        assert Checkpointer(path, {"lr": 3e-4}).load() is None
    assert not path.exists() and (path.parent / "fit.stale.pt").exists()


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "fit.pt"
    ckpt = Checkpointer(path, {}, every_s=0)
    ckpt.save({"epoch": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        ckpt.save({"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.pt"]
    assert Checkpointer(path, {}).load() == {"epoch": 1}


def test_due_by_time_and_every_epoch():
    assert Checkpointer("x.pt", {}, every_s=0).due(end_of_epoch=True)
    assert not Checkpointer("x.pt", {}, every_s=0).due(end_of_epoch=False)
    assert not Checkpointer("x.pt", {}, every_s=3600).due(end_of_epoch=False)
    assert Checkpointer("x.pt", {}, every_s=1e-9).due(end_of_epoch=False)


def test_an_epoch_end_is_due_once_fifty_times_the_last_write_has_passed(tmp_path):
    """The epoch-end cadence keeps the writing under 2 % of the time: a short run checkpoints
    at its first epoch end, then whenever 50 x the last write's time has passed."""
    ckpt = Checkpointer(tmp_path / "fit.pt", {}, every_s=3600)
    assert ckpt.due(end_of_epoch=True)  # nothing written yet
    ckpt.save({"epoch": 1})
    ckpt.last_write_s = 0.02  # as if the write took 20 ms
    ckpt._last = time.monotonic()
    assert not ckpt.due(end_of_epoch=True)  # 1 s has not passed
    ckpt._last -= 1.01
    assert ckpt.due(end_of_epoch=True)


def test_a_checkpoint_of_other_code_is_set_aside(tmp_path, monkeypatch):
    """An interrupted fit started again after an edit to code it had loaded does not resume
    the old code's state."""
    from ecgnb import provenance

    path = tmp_path / "fit.pt"
    Checkpointer(path, {"lr": 1e-3}, every_s=0).save({"epoch": 3})
    real = provenance.file_digest
    edited = "ecgnb/models/checkpoint.py"
    monkeypatch.setattr(provenance, "file_digest", lambda p: "0" * 16
                        if provenance.shown_path(p) == edited else real(p))
    with pytest.warns(UserWarning, match=f"other code: {edited}"):
        assert Checkpointer(path, {"lr": 1e-3}).load() is None
    assert (tmp_path / "fit.stale.pt").exists()


@pytest.mark.slow
def test_a_checkpoint_written_on_another_device_is_set_aside(tmp_path):
    path = tmp_path / "fit.pt"
    _interrupted_fit("ts2vec", path, ("epoch", 2), n_epochs=3, batch_size=16, lr=1e-2,
                     checkpoint_every_s=0)
    saved = torch.load(path, weights_only=True)
    saved["fingerprint"]["device"] = "cuda"  # as written on a GPU
    torch.save(saved, path)
    with pytest.warns(UserWarning, match="device: 'cuda' -> 'cpu'"):
        enc = encoder("ts2vec").fit(windows(), n_epochs=3, batch_size=16, lr=1e-2,
                                    checkpoint=path, checkpoint_every_s=0)
    assert enc.checkpoint_.resumed_from is None


class _Planted:
    """Unpickling this runs ``os.system``: what a tampered file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path):
    path, marker = tmp_path / "fit.pt", tmp_path / "ran"
    torch.save({"format": "ecgnb-checkpoint-2", "fingerprint": {}, "state": _Planted(marker)},
               path)
    with pytest.warns(UserWarning, match="cannot be read"):
        assert Checkpointer(path, {}).load() is None
    assert not marker.exists() and (tmp_path / "fit.stale.pt").exists()


def test_checkpoints_hold_data_only(tmp_path):
    path = tmp_path / "fit.pt"
    _interrupted_fit("tstcc", path, ("epoch", 2), n_epochs=3, batch_size=16, lr=1e-2,
                     checkpoint_every_s=0)
    assert torch.load(path, weights_only=True)["state"]["epochs_done"] == 1


def test_rng_state_round_trip():
    gen = torch_generator(5)
    state = rng_state([gen])
    first = (torch.rand(3), np.random.rand(), torch.rand(2, generator=gen))
    set_rng_state(state, [gen])
    again = (torch.rand(3), np.random.rand(), torch.rand(2, generator=gen))
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
    assert torch.equal(first[2], again[2])


def _interrupted_fit(name, path, fail_at, **fit_kwargs):
    """A fit that stops (an exception) at ``fail_at`` = ("epoch", k) or ("batch", k)."""
    enc = encoder(name)
    kind, k = fail_at
    calls = {"n": 0}
    if kind == "epoch":
        def callback(_enc, record):
            if record["epoch"] == k:
                raise Stop
        fit_kwargs["callback"] = callback
    else:
        loss = enc._loss

        def failing_loss(xb, *generators):
            calls["n"] += 1
            if calls["n"] == k:
                raise Stop
            return loss(xb, *generators)
        enc._loss = failing_loss
    with pytest.raises(Stop):
        enc.fit(windows(), checkpoint=path, **fit_kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ts2vec", "tstcc", "series2vec"])
def test_resumed_fit_equals_uninterrupted_fit(name, tmp_path):
    args = dict(n_epochs=3, batch_size=16, lr=1e-2)
    whole = encoder(name).fit(windows(), **args)
    path = tmp_path / "fit.pt"
    _interrupted_fit(name, path, ("epoch", 2), checkpoint_every_s=0, **args)
    resumed = encoder(name).fit(windows(), checkpoint=path, checkpoint_every_s=0, **args)
    assert resumed.checkpoint_.resumed_from["epoch"] == 2  # after epoch 1, the last checkpointed
    assert resumed.weights_hash() == whole.weights_hash()
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in whole.history_]


@pytest.mark.slow
def test_resume_in_the_middle_of_an_epoch(tmp_path):
    args = dict(n_epochs=2, batch_size=8, lr=1e-2)
    whole = encoder("ts2vec").fit(windows(), **args)
    path = tmp_path / "fit.pt"
    _interrupted_fit("ts2vec", path, ("batch", 8), checkpoint_every_s=1e-9, **args)  # epoch 2
    resumed = encoder("ts2vec").fit(windows(), checkpoint=path, checkpoint_every_s=1e-9, **args)
    assert resumed.checkpoint_.resumed_from == {**resumed.checkpoint_.resumed_from,
                                                "epoch": 2, "batch": 16}
    assert resumed.weights_hash() == whole.weights_hash()
    assert resumed.history_[1]["loss"] == whole.history_[1]["loss"]


@pytest.mark.slow
def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    path = tmp_path / "fit.pt"
    _interrupted_fit("ts2vec", path, ("epoch", 2), n_epochs=3, batch_size=16, lr=1e-2,
                     checkpoint_every_s=0)
    with pytest.warns(UserWarning, match="another fit"):
        enc = encoder("ts2vec").fit(windows(), n_epochs=3, batch_size=16, lr=5e-3,
                                    checkpoint=path, checkpoint_every_s=0)
    assert enc.checkpoint_.resumed_from is None and len(enc.history_) == 3


@pytest.mark.slow
def test_a_stateful_callback_resumes_with_the_fit(tmp_path):
    class Keeper:
        def __init__(self):
            self.epochs = []

        def update(self, _enc, record):
            self.epochs.append(record["epoch"])
            if record["epoch"] == 2 and len(self.epochs) == 2 and not resumed:
                raise Stop

        def state_dict(self):
            return {"epochs": list(self.epochs)}

        def load_state_dict(self, state):
            self.epochs = list(state["epochs"])

    path, resumed = tmp_path / "fit.pt", False
    with pytest.raises(Stop):
        encoder("ts2vec").fit(windows(), n_epochs=3, batch_size=16, checkpoint=path,
                              checkpoint_every_s=0, callback=Keeper().update)
    resumed, keeper = True, Keeper()
    encoder("ts2vec").fit(windows(), n_epochs=3, batch_size=16, checkpoint=path,
                          checkpoint_every_s=0, callback=keeper.update)
    assert keeper.epochs == [1, 2, 3]


KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    torch.set_num_threads(1)
    from ecgnb.models import build
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 128)).astype(np.float32)
    enc = build("ts2vec", device="cpu", seed=0, verbose=False, hidden_dims=16, output_dims=16,
                depth=3)
    path = None if sys.argv[1] == "-" else sys.argv[1]
    enc.fit(x, n_epochs=6, batch_size=8, lr=1e-3, checkpoint=path, checkpoint_every_s=0)
    resumed = enc.checkpoint_.resumed_from if path else None
    print("RESULT", enc.weights_hash(), resumed["epoch"] if resumed else 0, flush=True)
""")


ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's ecgnb, whatever is installed


def _run(script: Path, path: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, str(script), path], capture_output=True, text=True,
                         check=True, env=ENV).stdout
    weights, epoch = out.split("RESULT")[1].split()
    return weights, int(epoch)


@pytest.mark.slow
def test_kill_9_in_mid_run_then_the_same_command_finishes_identically(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(KILL_SCRIPT)
    path = tmp_path / "checkpoints" / "fit.pt"
    proc = subprocess.Popen([sys.executable, str(script), str(path)], env=ENV)
    deadline = time.monotonic() + 120
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    weights, resumed_epoch = _run(script, str(path))
    assert 2 <= resumed_epoch <= 7  # the epoch it resumed in (7: after the last)
    assert weights == _run(script, "-")[0]
