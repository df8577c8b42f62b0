"""Every switch of a *choice* row of docs/deviations.md resolves, through the stage configs, to the
study's value under ``recipe: study`` and to ours under ``recipe: ecgnb``; the notebooks take
every recipe-decided value from ``recipe`` alone; and the study's H-InceptionTime shortcut, its
fine-tuning RAdam and its loss averaging behave as its code did.

The expected values are written here from the study's code (per backbone or model where it
differs), independently of ecgnb/recipes.py; a ledger switch missing from :data:`RESOLVE` fails.
"""
import ast
import copy
import dataclasses
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ecgnb import recipes
from ecgnb.evaluation import cell, train
from ecgnb.evaluation.settings import TrainConfig
from ecgnb.evaluation.train import fit_classifier, make_optimizers
from ecgnb.finetuning import FinetuneConfig, train_config
from ecgnb.models import REGISTRY, build
from ecgnb.models.hinception import build_baseline
from ecgnb.models.ts2vec import TS2Vec
from ecgnb.pretraining import SMALL_MODELS, PretrainConfig, model_config
from ecgnb.regularization import RegularizationConfig
from ecgnb.runs import NOTEBOOKS, PROJECT_ROOT, Cell
from ecgnb.workflow.runner import declared_parameters

LEDGER = Path(__file__).resolve().parents[1] / "docs" / "deviations.md"
BACKBONES = ("ts2vec", "tstcc", "series2vec")


def head(recipe, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the study's encoder rate warns by design
        return TrainConfig(head="mlp", mode="ft", recipe=recipe, backbone=kw.pop("backbone",
                           "ts2vec"), verbose=False, **kw)


def baseline(recipe, model):
    return TrainConfig(head=model, mode="supervised", recipe=recipe, verbose=False)


def per_model(recipe, name):
    """``name`` of the heads' config and of each supervised baseline's."""
    return (getattr(head(recipe), name),
            tuple(getattr(baseline(recipe, m), name) for m in ("hinception", "mlp", "fcn")))


def continuation(recipe):
    return RegularizationConfig(scenario="ECG extended", recipe=recipe)


def numerics(recipe, name):
    """``name`` of the heads' config, the baselines' and each backbone's (its defaults with the
    recipe's settings)."""
    backbones = tuple(getattr(build(b, **model_config(b, "study", {}, recipe)).settings, name)
                      for b in BACKBONES)
    return getattr(head(recipe), name), getattr(baseline(recipe, "hinception"), name), backbones


def encoder_ratio(recipe):
    """The fine-tuned encoder's rate over the head's, per backbone."""
    return tuple(round(c.encoder_lr / c.lr, 6) for c in (head(recipe, backbone=b) for b in BACKBONES))


# switch key -> (resolve(recipe), the study's value, ours)
RESOLVE = {
    "optimizer": (lambda r: per_model(r, "optimizer"),
                  ("adam", ("adam",) * 3), ("adamw", ("adamw",) * 3)),
    "lr": (lambda r: per_model(r, "lr"), (1e-4, (1e-3,) * 3), (1e-3, (1e-3,) * 3)),
    "weight_decay": (lambda r: per_model(r, "weight_decay"),
                     (0.0, (0.0, 1e-3, 1e-3)), (1e-4, (1e-4,) * 3)),
    "warmup_epochs": (lambda r: per_model(r, "warmup_epochs"), (0, (0,) * 3), (5, (5,) * 3)),
    "schedule": (lambda r: per_model(r, "schedule"),
                 ("none", ("plateau_train",) * 3), ("plateau_val", ("plateau_val",) * 3)),
    "lr_factor": (lambda r: per_model(r, "lr_factor")[1], (0.1,) * 3, (0.5,) * 3),
    "lr_patience": (lambda r: per_model(r, "lr_patience")[1], (10,) * 3, (10,) * 3),
    "min_lr": (lambda r: per_model(r, "min_lr")[1], (0.0,) * 3, (0.0,) * 3),
    "grad_clip": (lambda r: per_model(r, "grad_clip"), (0.0, (0.0,) * 3), (1.0, (1.0,) * 3)),
    "imbalance": (lambda r: per_model(r, "imbalance"),
                  ("none", ("none",) * 3), ("weights", ("weights",) * 3)),
    "patience": (lambda r: per_model(r, "patience"), (0, (0,) * 3), (30, (30,) * 3)),
    "n_epochs": (lambda r: per_model(r, "n_epochs"), (300, (300,) * 3), (300, (300,) * 3)),
    "select_on": (lambda r: per_model(r, "select_on"),
                  ("val_loss", ("val_loss",) * 3), ("macro_f1", ("macro_f1",) * 3)),
    "mlp_head": (lambda r: (head(r).mlp_head, baseline(r, "mlp").mlp_head),
                 ("study", "study"), ("ecgnb", "ecgnb")),
    "finetune_mask": (lambda r: head(r).finetune_mask, "binomial", "none"),
    "encoder_optimizer": (lambda r: tuple((c.encoder_optimizer, c.encoder_weight_decay)
                                          for c in (head(r, backbone=b) for b in BACKBONES)),
                          (("radam", 0.0), ("radam", 3e-4), ("radam", 0.0)),
                          (("same", 1e-4),) * 3),
    "encoder_lr_ratio": (encoder_ratio, (10.0, 3.0, 10.0), (0.1,) * 3),
    "use_amp": (lambda r: (head(r).use_amp, baseline(r, "hinception").use_amp,
                           PretrainConfig(recipe=r).use_amp, continuation(r).use_amp),
                (False,) * 4, (False,) * 4),
    "target_holdout": (lambda r: continuation(r).target_holdout, False, True),
    "selection": (lambda r: (tuple(PretrainConfig(backbone=b, recipe=r).selection
                                   for b in BACKBONES),
                             tuple(continuation(r).resolved(b).selection for b in BACKBONES)),
                  (("holdout", "last", "train_loss"), ("val", "last", "train_loss")),
                  (("last",) * 3, ("last",) * 3)),
    "betas": (lambda r: model_config("tstcc", "study", {}, r).get("betas", (0.9, 0.99)),
              (0.9, 0.999), (0.9, 0.99)),
    "clean_bn_stats": (lambda r: model_config("tstcc", "study", {}, r).get("clean_bn_stats", True),
                       False, True),
    "shortcut": (lambda r: baseline(r, "hinception").shortcut, "identity", "conv"),
    "loss_average": (lambda r: (head(r).loss_average, baseline(r, "mlp").loss_average),
                     ("batches",) * 2, ("samples",) * 2),
    "allow_tf32": (lambda r: numerics(r, "allow_tf32"), (True, True, (True,) * 3),
                   (True, True, (True,) * 3)),
    "cudnn_benchmark": (lambda r: numerics(r, "cudnn_benchmark"), (False, False, (False,) * 3),
                        (True, True, (False, True, True))),  # ours: TS2Vec's crops change shape
    "cudnn_deterministic": (lambda r: (head(r).cudnn_deterministic,
                                       baseline(r, "hinception").cudnn_deterministic),
                            (True, True), (False, False)),
    "batch_size": (lambda r: per_model(r, "batch_size"), (64, (64,) * 3), (64, (64,) * 3)),
}


def ledger_choice_switches() -> dict[str, list[str]]:
    """Row number -> the keys named in the switch column of every *choice* row whose study value
    is known (a row whose kind says "not published" has no study value to resolve to)."""
    found = {}
    for line in LEDGER.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].isdigit():
            continue
        kind, switch = cells[3], cells[4]
        if not kind.startswith("choice") or "not published" in kind or switch == "none" \
                or switch.startswith("none "):
            continue
        keys = []
        for span in re.findall(r"`([^`]+)`", switch):
            if span.startswith("model_overrides"):
                keys += re.findall(r"(\w+):", span.split("{", 1)[1])
            elif span.split(":")[0].strip() != "recipe":
                keys += re.findall(r"\w+", span.split(":")[0])[:1]
        found[int(cells[0])] = keys
    return found


def test_the_ledger_names_switches():
    rows = ledger_choice_switches()
    assert {12, 17, 18, 20, 21, 28, 29, 31, 34, 35, 36, 37, 45, 48, 49} <= set(rows)
    assert all(rows.values()), {r: k for r, k in rows.items() if not k}


@pytest.mark.parametrize("row, key", [(r, k) for r, keys in ledger_choice_switches().items()
                                      for k in keys])
def test_every_ledger_switch_resolves_to_each_recipes_value(row, key):
    assert key in RESOLVE, f"row {row}: switch '{key}' has no resolution in ecgnb.recipes"
    resolve, study, ours = RESOLVE[key]
    assert resolve("study") == study, f"row {row}: {key} under recipe: study"
    assert resolve("ecgnb") == ours, f"row {row}: {key} under recipe: ecgnb"


def test_recipes_cover_the_same_settings_side_by_side():
    for stage, table in recipes.TABLES.items():
        assert set(table["study"]) == set(table["ecgnb"]) == set(table["smoke"]), stage
    with pytest.raises(ValueError, match="recipe"):
        recipes.value("heads", "paper", "lr")


def test_study_downstream_accepts_no_early_stop_and_the_recipes_select_on():
    config = head("study", patience=0, select_on=None)
    assert (config.patience, config.select_on) == (0, "val_loss")
    assert head("study", select_on="macro_f1").select_on == "macro_f1"  # explicit wins


def test_ts2vec_finetune_mask_is_drawn_in_training_mode_only():
    encoder = TS2Vec(TS2Vec.Config(hidden_dims=8, output_dims=16, depth=1), device="cpu", seed=0)
    encoder.build(32)
    network = encoder.trainable_network()
    x = torch.randn(4, 1, 32)
    plain = network(x, generator=None).detach()
    encoder.use_finetune_mask(network, "binomial", torch.Generator().manual_seed(0))
    network.eval()
    assert torch.equal(network(x), encoder.trainable_network().eval()(x))  # eval: no mask
    network.train()
    torch.manual_seed(0)
    masked = network(x)
    torch.manual_seed(0)
    encoder.use_finetune_mask(network, "none", None)
    assert not torch.equal(masked, network(x))
    assert plain.shape == masked.shape


def test_ts2vec_held_out_loss_uses_the_averaged_network():
    encoder = TS2Vec(TS2Vec.Config(hidden_dims=8, output_dims=16, depth=1), device="cpu", seed=0)
    x = np.random.default_rng(0).standard_normal((16, 1, 32)).astype(np.float32)
    encoder.fit(x, n_epochs=1, batch_size=8, verbose=False)
    before = encoder.evaluate_loss(x, seed=1)
    with torch.no_grad():
        for p in encoder.network_.parameters():  # the training network alone changes
            p.add_(1.0)
    assert encoder.evaluate_loss(x, seed=1) == pytest.approx(before)


# --------------------------------------------------------------------------- the notebooks
def notebook_values(stage: str, cls, **explicit) -> dict:
    """The values notebook ``stage`` passes to its config ``cls`` from its parameters cell's
    defaults (lists as tuples, as the notebooks pass them), with ``explicit`` on top."""
    fields = {f.name for f in dataclasses.fields(cls)}
    declared = declared_parameters(PROJECT_ROOT / NOTEBOOKS[stage])
    values = {name: ast.literal_eval(info["default"]) for name, info in declared.items()
              if name in fields}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return {**values, **explicit}


def downstream(cfg: FinetuneConfig) -> list[TrainConfig]:
    """An SSL cell's and H-InceptionTime's training configs as notebook 04 resolves them."""
    return [train_config(cfg, Cell("mlp", "ft", 0, 1.0), backbone="ts2vec"),
            train_config(cfg, Cell("hinception", "supervised", 0, 1.0))]


@pytest.mark.parametrize("recipe", ["study", "ecgnb"])
def test_the_recipe_alone_sets_the_notebooks_epochs_and_network_sizes(recipe):
    pretraining = PretrainConfig(**notebook_values("pretraining", PretrainConfig, recipe=recipe))
    assert (pretraining.n_epochs, pretraining.model_size, pretraining.n_windows) == \
        (600, "study", 0)
    overrides = model_config(pretraining.backbone, pretraining.model_size,
                             pretraining.model_overrides, recipe)
    assert not set(SMALL_MODELS[pretraining.backbone]) & set(overrides)  # published sizes
    continued = RegularizationConfig(**notebook_values("regularization", RegularizationConfig,
                                                       recipe=recipe))
    assert continued.n_windows == 0 and continued.step.n_epochs == 1  # continued1: 1 epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the study's encoder rate warns by design
        cfg = FinetuneConfig(**notebook_values("finetuning", FinetuneConfig, recipe=recipe))
        ssl, hinception = downstream(cfg)
    assert (ssl.n_epochs, ssl.batch_size) == (300, 64)
    assert (hinception.n_epochs, hinception.batch_size, hinception.n_members) == (300, 64, 5)


def test_the_notebooks_own_defaults_stay_smoke_sized():
    pretraining = PretrainConfig(**notebook_values("pretraining", PretrainConfig))
    assert pretraining.recipe == "smoke"
    assert (pretraining.n_epochs, pretraining.model_size, pretraining.n_windows) == \
        (2, "small", 192)
    assert RegularizationConfig(**notebook_values("regularization", RegularizationConfig)
                                ).n_windows == 192
    ssl, hinception = downstream(FinetuneConfig(**notebook_values("finetuning", FinetuneConfig)))
    assert (ssl.n_epochs, hinception.n_epochs, hinception.n_members) == (8, 8, 2)
    assert (ssl.optimizer, ssl.select_on) == (head("ecgnb").optimizer, head("ecgnb").select_on)


# --------------------------------------------------------------------------- the study's behaviour
def test_the_study_h_inception_time_has_identity_shortcuts():
    study, ours = baseline("study", "hinception"), baseline("ecgnb", "hinception")
    model = cell._fresh_model(None, study, n_classes=3, n_timesteps=64, seed=0)
    shortcuts = model.network.shortcuts
    assert len(shortcuts) == 2
    assert not [p for s in shortcuts.values() for p in [*s.parameters(), *s.buffers()]]
    seen = []
    shortcuts["2"].register_forward_hook(lambda m, args, out: seen.append((args, out)))
    x = torch.randn(4, 1, 64)
    model.eval()(x)
    (residual, out), summed = seen[0]
    assert residual is x and out.shape == (4, 128, 64)
    torch.testing.assert_close(summed, out + x, rtol=0, atol=0)  # the input over every channel
    conv = cell._fresh_model(None, ours, n_classes=3, n_timesteps=64, seed=0).network.shortcuts
    assert all(list(s.parameters()) for s in conv.values())


def radam_reference(p, g, lr, wd, n_steps, decoupled, betas=(0.9, 0.999), eps=1e-8):
    """RAdam (Liu et al.) for ``n_steps`` with the constant gradient ``g``; weight decay applied
    to the weights (``decoupled``) or added to the gradient."""
    (b1, b2), m, v = betas, torch.zeros_like(p), torch.zeros_like(p)
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, n_steps + 1):
        grad = g if decoupled else g + wd * p
        p = p * (1 - lr * wd) if decoupled else p
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad * grad
        rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        step = m / (1 - b1 ** t)
        if rho > 5:
            rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf
                             / ((rho_inf - 4) * (rho_inf - 2) * rho))
            step = step * rect * math.sqrt(1 - b2 ** t) / (v.sqrt() + eps)
        p = p - lr * step
    return p


def test_the_study_fine_tuning_radam_decays_weights_decoupled():
    """TS-TCC's encoder RAdam under recipe: study (lr and weight decay 3e-4). RAdam's first
    steps are momentum SGD, where decoupled and coupled decay agree to second order, so the
    steps run into its rectified phase (step 6 on)."""
    config = head("study", backbone="tstcc")
    model = build_baseline("hinception", 3, 16, seed=0, n_filters=2, depth=1,
                           kernel_sizes=(3,), use_hybrid=False).double()
    radam = make_optimizers(model, config)[1]
    encoder = list(model.network.parameters())
    with torch.no_grad():  # known weights around 1, small known gradients
        for p in encoder:
            p.copy_(torch.linspace(0.5, 1.5, p.numel(), dtype=p.dtype).reshape(p.shape))
    start = [p.detach().clone() for p in encoder]
    grads = [torch.linspace(-1e-4, 1e-4, p.numel(), dtype=p.dtype).reshape(p.shape)
             for p in encoder]
    for _ in range(8):
        for p, g in zip(encoder, grads):
            p.grad = g.clone()
        radam.step()
    lr, wd = config.encoder_lr, config.encoder_weight_decay
    for p, p0, g in zip(encoder, start, grads):
        expected = radam_reference(p0, g, lr, wd, 8, decoupled=True)
        coupled = radam_reference(p0, g, lr, wd, 8, decoupled=False)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)
        assert (expected - coupled).abs().max() > 1e-6  # the test tells the two apart


def partial_batch_task(n_val=70, seed=0):
    """Inputs ``[N, 8]`` for a linear classifier; the validation's last 6 windows (a partial
    batch of 64) are scaled up so that their loss differs from the others'."""
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((100 + n_val, 8)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 3, 100 + n_val))
    x[-6:] *= 5
    return (x[:100], y[:100]), (x[100:], y[100:])


def test_the_study_validation_loss_is_the_mean_of_batch_means():
    train_set, (x_val, y_val) = partial_batch_task()
    config = TrainConfig(head="linear", mode="lp", recipe="study", n_epochs=1, verbose=False,
                         device="cpu")
    torch.manual_seed(0)
    fit = fit_classifier(nn.Linear(8, 3), train_set, (x_val, y_val), config, n_classes=3)
    with torch.no_grad():
        losses = nn.functional.cross_entropy(fit.model(x_val), y_val, reduction="none")
    batch_means = [losses[:64].mean().item(), losses[64:].mean().item()]
    assert fit.history[0]["val_loss"] == pytest.approx(np.mean(batch_means), rel=1e-6)
    assert abs(np.mean(batch_means) - losses.mean().item()) > 1e-3  # not the mean over samples
    ours = dataclasses.replace(config, loss_average="samples")
    torch.manual_seed(0)
    fit = fit_classifier(nn.Linear(8, 3), train_set, (x_val, y_val), ours, n_classes=3)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(fit.model(x_val), y_val).item()
    assert fit.history[0]["val_loss"] == pytest.approx(expected, rel=1e-6)


def test_the_study_training_loss_is_the_mean_of_batch_means():
    """At a rate too small to move a float32 weight, the epoch's loss is that of the initial
    model over the epoch's batches (100 windows: 64 + 36)."""
    (x, y), val = partial_batch_task()
    config = TrainConfig(head="linear", mode="lp", recipe="study", n_epochs=1, lr=1e-30,
                         verbose=False, device="cpu")
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    start = copy.deepcopy(model)
    fit = fit_classifier(model, (x, y), val, config, n_classes=3)
    loader, _ = train._train_loader(x, y, config)
    with torch.no_grad():
        means = [nn.functional.cross_entropy(start(x[idx]), y[idx]).item() for (idx,) in loader]
        over_samples = nn.functional.cross_entropy(start(x), y).item()
    assert [len(idx) for (idx,) in loader] == [64, 36]
    assert fit.history[0]["train_loss"] == pytest.approx(np.mean(means), rel=1e-6)
    assert abs(np.mean(means) - over_samples) > 1e-3  # not the mean over samples


# --------------------------------------------------------------------------- one place per knob
def test_each_knob_has_one_name_in_notebook_config_and_recipe_tables():
    from ecgnb.evaluation.settings import HeadTraining
    from ecgnb.models.base import FIT_FIELDS

    knobs = {f.name for f in dataclasses.fields(HeadTraining)}
    declared = set(declared_parameters(PROJECT_ROOT / NOTEBOOKS["finetuning"]))
    assert knobs <= declared and knobs <= {f.name for f in dataclasses.fields(FinetuneConfig)}
    derived = {"recipe", "encoder_lr", "encoder_weight_decay", "encoder_decay"}  # from others
    for name, table in recipes.TABLES.items():
        assert len({frozenset(values) for values in table.values()}) == 1, name  # every recipe
    tables = set(recipes.HEAD_TRAINING["study"]) | set(recipes.BASELINE_TRAINING["study"])
    assert tables == knobs - derived
    for stage, cls, table in (("pretraining", PretrainConfig, recipes.PRETRAINING),
                              ("regularization", RegularizationConfig, recipes.CONTINUATION)):
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(table["study"]) <= fields <= set(
            declared_parameters(PROJECT_ROOT / NOTEBOOKS[stage])), stage
    for backbone in BACKBONES:  # the shared training fields live in FitSettings only
        own = {f.name for f in dataclasses.fields(REGISTRY[backbone].Config)}
        assert not own & set(FIT_FIELDS), backbone
