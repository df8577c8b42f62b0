"""Every switch of a *choice* row of docs/deviations.md resolves, through the stage configs, to the
study's value under ``recipe: study`` and to ours under ``recipe: ecgnb``.

The expected values are written here from the study's code (per backbone or model where it
differs), independently of ecgnb/recipes.py; a ledger switch missing from :data:`RESOLVE` fails.
"""
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgnb import recipes
from ecgnb.evaluation.train import TrainConfig
from ecgnb.models.ts2vec import TS2Vec
from ecgnb.pretraining import PretrainConfig, model_config
from ecgnb.regularization import RegularizationConfig

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
                           PretrainConfig(recipe=r).use_amp_, continuation(r).use_amp_),
                (False,) * 4, (True,) * 4),
    "target_holdout": (lambda r: continuation(r).target_holdout_, False, True),
    "selection": (lambda r: (tuple(PretrainConfig(backbone=b, recipe=r).selection_
                                   for b in BACKBONES),
                             tuple(continuation(r).selection_for(b) for b in BACKBONES)),
                  (("holdout", "last", "train_loss"), ("val", "last", "train_loss")),
                  (("last",) * 3, ("last",) * 3)),
    "betas": (lambda r: model_config("tstcc", "study", {}, r).get("betas", (0.9, 0.99)),
              (0.9, 0.999), (0.9, 0.99)),
    "clean_bn_stats": (lambda r: model_config("tstcc", "study", {}, r).get("clean_bn_stats", True),
                       False, True),
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
    assert {12, 17, 18, 20, 21, 28, 29, 31, 34, 35, 36, 37} <= set(rows)
    assert all(rows.values()), {r: k for r, k in rows.items() if not k}


@pytest.mark.parametrize("row, key", [(r, k) for r, keys in ledger_choice_switches().items()
                                      for k in keys])
def test_every_ledger_switch_resolves_to_each_recipes_value(row, key):
    assert key in RESOLVE, f"row {row}: switch '{key}' has no resolution in ecgnb.recipes"
    resolve, study, ours = RESOLVE[key]
    assert resolve("study") == study, f"row {row}: {key} under recipe: study"
    assert resolve("ecgnb") == ours, f"row {row}: {key} under recipe: ecgnb"


def test_recipes_cover_the_same_settings_side_by_side():
    for stage, table in recipes.STAGES.items():
        assert set(table["study"]) == set(table["ecgnb"]), stage
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
