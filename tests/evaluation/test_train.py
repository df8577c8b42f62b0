"""Downstream loop: frozen probing, fine-tuning, best-state restore, validation-only selection,
ensembles, and every backbone fine-tuned above chance on an easy task."""
import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

import ecgnb.models
from ecgnb.data import Windows, split_grouped
from ecgnb.models.heads import Classifier, build_head
from ecgnb.evaluation.metrics import metrics_from_predictions, write_run
from ecgnb.models.hinception import HInceptionTime
from ecgnb.evaluation.cell import run_cell
from ecgnb.evaluation.settings import TrainConfig
from ecgnb.evaluation.train import class_weights, make_optimizers

T = 64
TINY = {"ts2vec": {"depth": 2, "hidden_dims": 8, "output_dims": 16},
        "tstcc": {"final_out_channels": 16, "mid_channels": (8, 16), "tc_hidden_dim": 16,
                  "tc_n_layers": 1, "tc_n_heads": 2, "tc_mlp_dim": 16, "timesteps": 2},
        "series2vec": {"rep_size": 16, "emb_size": 8, "n_heads": 2, "dim_ff": 16}}
QUICK = dict(n_epochs=4, warmup_epochs=1, batch_size=16, verbose=False, device="cpu")


def sine_windows(n_groups=15, per_group=6, n_classes=3, seed=0) -> Windows:
    """Easy task: class k is a noisy sine of frequency 2 + 3k; records hold 1-2 classes."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / T
    x, y, groups = [], [], []
    for g in range(n_groups):
        for i in range(per_group):
            k = g % n_classes if (g % 2 == 0 or i % 3) else (g + 1) % n_classes
            x.append(np.sin(2 * np.pi * (2 + 3 * k) * t + rng.uniform(0, 2 * np.pi))
                     + 0.3 * rng.normal(size=T))
            y.append(k)
            groups.append(f"rec{g}")
    return Windows(x=np.asarray(x, np.float32)[:, None], y=np.asarray(y), groups=np.asarray(groups),
                   domains=np.full(len(y), "ECG"), fs=360.0,
                   classes=tuple(f"class{k}" for k in range(n_classes)))


@pytest.fixture(scope="module")
def task():
    windows = sine_windows()
    return windows, split_grouped(windows, val=0.2, test=0.2, seed=0)


def tiny_encoder(name="ts2vec", seed=0):
    return ecgnb.models.build(name, device="cpu", seed=seed, verbose=False, **TINY[name]).build(T)


def weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- lp / ft
@pytest.mark.slow
@pytest.mark.parametrize("head", ["linear", "fcn"])
def test_linear_probing_leaves_the_encoder_bit_identical(task, head):
    windows, splits = task
    encoder = tiny_encoder()
    before = encoder.weights_hash()
    result = run_cell(encoder, windows, splits, TrainConfig(head=head, mode="lp", **QUICK))
    assert encoder.weights_hash() == before
    network = result.model.network
    assert not any(p.requires_grad for p in network.parameters()) and not network.training
    for key, value in encoder._inference_network().state_dict().items():
        assert torch.equal(network.state_dict()[key].cpu(), value.cpu()), key
    assert result.predictions.shape == (len(splits["test"]), 4 + 3)


def test_fine_tuning_trains_the_encoder_copy_at_a_lower_rate(task):
    windows, splits = task
    encoder = tiny_encoder()
    before, start = encoder.weights_hash(), weights(encoder._inference_network())
    config = TrainConfig(head="mlp", mode="ft", **QUICK)
    network = encoder.trainable_network()
    [optimizer] = make_optimizers(Classifier(network, build_head("mlp", network, 3)), config)
    groups = optimizer.param_groups
    assert [g["name"] for g in groups] == ["encoder", "head"]
    encoder_lr, head_lr = groups[0]["lr"], groups[1]["lr"]
    assert encoder_lr < head_lr and encoder_lr == pytest.approx(0.1 * head_lr)
    result = run_cell(encoder, windows, splits, config)
    tuned = result.model.network.state_dict()
    changed = [k for k, v in start.items() if not torch.equal(tuned[k].cpu(), v.cpu())]
    assert any(start[k].is_floating_point() for k in changed)
    assert encoder.weights_hash() == before  # the pretrained encoder itself is untouched
    with pytest.warns(UserWarning, match="encoder lr"):
        TrainConfig(mode="ft", encoder_lr_ratio=3.0)


def test_best_state_is_deep_copied_and_restored(task):
    """The last epoch is wrecked; the reported metrics and weights must be the best epoch's."""
    windows, splits = task
    snapshots = {}

    def wreck_last_epoch(epoch, model):
        if epoch == 8:
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
                model.linear.bias[0] = 10.0  # always predicts class 0
        snapshots[epoch] = copy.deepcopy(model.state_dict())

    config = TrainConfig(head="linear", mode="lp", lr=1e-2, patience=None,
                         **{**QUICK, "n_epochs": 8})
    result = run_cell(tiny_encoder(), windows, splits, config, after_epoch=wreck_last_epoch)
    history = result.history.set_index("epoch")
    assert result.best_epoch < 8 and history.loc[8, "val_macro_f1"] < history["val_macro_f1"].max()
    best = history.loc[result.best_epoch]
    assert result.val_metrics["macro_f1"] == pytest.approx(best["val_macro_f1"])
    for key, value in result.model.head.state_dict().items():
        assert torch.equal(value.cpu(), snapshots[result.best_epoch][key].cpu()), key
    assert result.summary()["best_epoch"] == result.best_epoch


def test_select_on_last_keeps_the_last_epoch(task):
    """The paper's own selection: the wrecked last epoch is what the cell keeps and scores."""
    windows, splits = task
    snapshots = {}

    def wreck_last_epoch(epoch, model):
        if epoch == 5:
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
                model.linear.bias[0] = 10.0  # always predicts class 0
        snapshots[epoch] = copy.deepcopy(model.state_dict())

    config = TrainConfig(head="linear", mode="lp", lr=1e-2, select_on="last", patience=0,
                         **{**QUICK, "n_epochs": 5})
    result = run_cell(tiny_encoder(), windows, splits, config, after_epoch=wreck_last_epoch)
    assert result.best_epoch == 5 and result.summary()["select_on"] == "last"
    for key, value in result.model.head.state_dict().items():
        assert torch.equal(value.cpu(), snapshots[5][key].cpu()), key
    assert (result.predictions["y_pred"] == 0).all()
    with pytest.warns(UserWarning, match="patience 30 stops nothing"):
        TrainConfig(head="linear", mode="lp", select_on="last", verbose=False)


def test_selection_never_reads_the_test_split_and_runs_are_seeded(task):
    windows, splits = task
    encoder = tiny_encoder()
    config = TrainConfig(head="mlp", mode="lp", imbalance="sampler", **QUICK)
    first = run_cell(encoder, windows, splits, config)
    again = run_cell(encoder, windows, splits, config)
    y = windows.y.copy()
    y[splits["test"]] = np.random.default_rng(0).permutation(y[splits["test"]])
    shuffled = run_cell(encoder, dataclasses.replace(windows, y=y), splits, config)
    numeric = ["train_loss", "val_loss", "val_macro_f1"]
    assert first.history[numeric].equals(again.history[numeric])
    assert first.predictions.equals(again.predictions)
    assert first.history[numeric].equals(shuffled.history[numeric])
    assert first.best_epoch == shuffled.best_epoch
    assert not first.predictions["y_true"].equals(shuffled.predictions["y_true"])


def test_class_weights_and_config_checks():
    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 3), [4 / 6, 2.0, 1.0])
    with pytest.raises(ValueError, match="head"):
        TrainConfig(head="hinception", mode="ft")
    with pytest.raises(ValueError, match="imbalance"):
        TrainConfig(imbalance="focal")
    with pytest.raises(ValueError, match="encoder"):
        run_cell(None, None, {}, TrainConfig(mode="ft"))


@pytest.mark.slow
def test_h_inception_time_trains_independent_members(task):
    windows, splits = task
    config = TrainConfig(head="hinception", mode="supervised", n_members=2,
                         **{**QUICK, "n_epochs": 1, "warmup_epochs": 0})
    result = run_cell(None, windows, splits, config)
    assert isinstance(result.model, HInceptionTime) and len(result.model.members) == 2
    assert sorted(result.history["member"].unique()) == [0, 1] and len(result.best_epochs) == 2
    a, b = (m.network.inception[0].convs[0].weight for m in result.model.members)
    assert not torch.equal(a, b)
    proba = result.predictions.filter(like="prob_").to_numpy()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- learns something
@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(TINY))
def test_fine_tuning_every_backbone_beats_chance(task, backbone):
    windows, splits = task
    config = TrainConfig(head="mlp", mode="ft", **{**QUICK, "n_epochs": 12, "lr": 3e-3})
    result = run_cell(tiny_encoder(backbone), windows, splits, config)
    assert result.test_metrics["macro_f1"] > 0.6  # chance: 1/3


def test_a_cell_on_the_embedded_fragments(fragment_small, tmp_path):
    """The real loader's windows (6 classes, 720 samples, records as groups) end to end."""
    splits = split_grouped(fragment_small, seed=0)
    encoder = ecgnb.models.build("ts2vec", device="cpu", verbose=False, **TINY["ts2vec"])
    config = TrainConfig(head="mlp", mode="lp", label_fraction=0.5, **{**QUICK, "n_epochs": 3})
    result = run_cell(encoder, fragment_small, splits, config)
    assert set(result.train_indices) < set(splits["train"])
    assert set(result.predictions["group"]) == set(fragment_small.groups[splits["test"]])
    assert result.predictions.filter(like="prob_").shape[1] == 6
    write_run(tmp_path, result.test_metrics, result.predictions, result.summary(), n_boot=20)
    record = json.loads((tmp_path / "metrics.json").read_text())
    again = metrics_from_predictions(tmp_path / "predictions.csv", fragment_small.classes)
    assert {k: record[k] for k in again} == again
    assert record["n_train"] == len(result.train_indices)
    assert record["n_train_available"] == len(splits["train"])
    assert record["label_fraction_realised"] == len(result.train_indices) / len(splits["train"])
    assert record["best_epoch"] == result.best_epoch and record["select_on"] == "macro_f1"


# --------------------------------------------------------------------------- recipes
def test_recipe_switch_changes_optimiser_loss_and_schedule():
    from ecgnb.evaluation.train import _criterion
    ours = TrainConfig(head="mlp", mode="ft", verbose=False)
    study = TrainConfig(head="mlp", mode="ft", recipe="study", backbone="tstcc", verbose=False)
    assert (ours.optimizer, ours.lr, ours.weight_decay, ours.warmup_epochs, ours.schedule,
            ours.grad_clip, ours.patience, ours.imbalance, ours.n_epochs, ours.select_on) == \
        ("adamw", 1e-3, 1e-4, 5, "plateau_val", 1.0, 30, "weights", 300, "macro_f1")
    assert (study.optimizer, study.lr, study.weight_decay, study.warmup_epochs, study.schedule,
            study.grad_clip, study.patience, study.imbalance, study.n_epochs, study.select_on) == \
        ("adam", 1e-4, 0.0, 0, "none", 0.0, 0, "none", 300, "val_loss")
    baseline = TrainConfig(head="hinception", mode="supervised", recipe="study", verbose=False)
    assert (baseline.optimizer, baseline.lr, baseline.weight_decay, baseline.schedule,
            baseline.lr_factor, baseline.lr_patience, baseline.min_lr, baseline.n_epochs) == \
        ("adam", 1e-3, 0.0, "plateau_train", 0.1, 10, 0.0, 300)
    assert TrainConfig(head="fcn", mode="supervised", recipe="study").weight_decay == 1e-3
    # explicit values win over the recipe's
    assert TrainConfig(head="mlp", recipe="study", backbone="ts2vec", lr=3e-3, patience=7,
                       verbose=False).lr == 3e-3
    model = Classifier(torch.nn.Linear(4, 4), torch.nn.Linear(4, 3))
    [opt_ours], (opt_head, opt_encoder) = make_optimizers(model, ours), make_optimizers(model, study)
    assert type(opt_ours) is torch.optim.AdamW and type(opt_head) is torch.optim.Adam
    assert [g["lr"] for g in opt_ours.param_groups] == [1e-4, 1e-3]  # encoder at a tenth
    assert type(opt_encoder) is torch.optim.RAdam  # the study's: TS-TCC's pretraining rate
    assert (opt_encoder.param_groups[0]["lr"], opt_encoder.param_groups[0]["weight_decay"]) == \
        (3e-4, 3e-4)
    y = torch.tensor([0, 0, 0, 0, 1, 2])
    assert _criterion(y, 3, ours).weight is not None and _criterion(y, 3, study).weight is None
    with pytest.raises(ValueError, match="recipe"):
        TrainConfig(recipe="paper")
    with pytest.raises(ValueError, match="backbone"):  # the study's RAdam is per backbone
        TrainConfig(head="mlp", mode="ft", recipe="study")


def test_study_recipe_runs_without_early_stop_or_schedule(task):
    """Plain Adam at a fixed rate for every epoch; the best epoch is still chosen on validation."""
    windows, splits = task
    config = TrainConfig(head="linear", mode="lp", recipe="study",
                         **{**QUICK, "warmup_epochs": None, "n_epochs": 6})
    result = run_cell(tiny_encoder(), windows, splits, config)
    assert len(result.history) == 6 and (result.history["lr"] == 1e-4).all()
    assert 1 <= result.best_epoch <= 6


# --------------------------------------------------------------------------- checkpoints
class Stop(Exception):
    """Raised after an epoch to stand for a kill."""


@pytest.mark.slow
@pytest.mark.parametrize("mode, head, extra, stop_at", [
    ("ft", "mlp", {"recipe": "study", "backbone": "ts2vec"}, 2),  # RAdam encoder, timestamp mask
    ("supervised", "hinception", {"n_members": 2, "schedule": "plateau_train"}, 5),  # member 2
])
def test_an_interrupted_cell_resumes_to_the_same_result(task, tmp_path, mode, head, extra,
                                                       stop_at):
    windows, splits = task
    config = TrainConfig(head=head, mode=mode, **{**QUICK, "n_epochs": 3, "patience": 0}, **extra)
    encoder = tiny_encoder() if mode == "ft" else None
    whole = run_cell(encoder, windows, splits, config)
    calls = {"n": 0}

    def stop(epoch, model):  # after training, before validation and the epoch's checkpoint
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise Stop

    folder = tmp_path / "checkpoints"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ECGNB_CHECKPOINT_EVERY_S", "0")
        with pytest.raises(Stop):
            run_cell(encoder, windows, splits, config, checkpoint_dir=folder, name="c",
                     after_epoch=stop)
        resumed = run_cell(encoder, windows, splits, config, checkpoint_dir=folder, name="c")
    assert resumed.resumed_from[-1]["epoch"] == 2  # epoch 1 of the interrupted fit was kept
    assert resumed.test_metrics == whole.test_metrics
    assert resumed.best_epochs == whole.best_epochs
    for a, b in zip(weights(resumed.model).values(), weights(whole.model).values()):
        assert torch.equal(a, b)


CLASSIFIER_KILL_SCRIPT = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(1)
from ecgnb.evaluation.settings import TrainConfig
from ecgnb.evaluation.train import fit_classifier
from ecgnb.models.hinception import build_baseline
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.standard_normal((96, 1, 64)).astype(np.float32))
y = torch.from_numpy(np.arange(96) % 3)
config = TrainConfig(head="fcn", mode="supervised", n_epochs=12, batch_size=16, patience=0,
                     verbose=False)
model = build_baseline("fcn", 3, 64, seed=0)
path = None if sys.argv[1] == "-" else sys.argv[1]
fit = fit_classifier(model, (x[:64], y[:64]), (x[64:], y[64:]), config, 3,
                     checkpoint=path, checkpoint_every_s=0)
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in fit.model.state_dict().values()))
resumed = fit.resumed_from["epoch"] if fit.resumed_from else 0
print("RESULT", digest.hexdigest()[:16], fit.best_epoch, resumed, flush=True)
"""


@pytest.mark.slow
def test_a_classifier_fit_killed_mid_run_resumes_to_the_same_weights(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "fit.py"
    script.write_text(CLASSIFIER_KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    path = tmp_path / "checkpoints" / "cell.pt"

    def run(where: str) -> list[str]:
        out = subprocess.run([sys.executable, str(script), where], capture_output=True,
                             text=True, check=True, env=env).stdout
        return out.split("RESULT")[1].split()

    proc = subprocess.Popen([sys.executable, str(script), str(path)], env=env)
    deadline = time.monotonic() + 120
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    weights, best, resumed = run(str(path))
    assert 2 <= int(resumed) <= 13  # the epoch it resumed in (13: after the last)
    assert [weights, best] == run("-")[:2]
