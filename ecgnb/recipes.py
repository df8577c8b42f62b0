"""Both training recipes side by side, one section per stage.

``"study"`` is the study's published code, setting by setting, with its defects fixed
(docs/deviations.md, rows marked *defect fixed*); ``"ecgnb"`` is ours. Every parameter that a
notebook leaves ``None`` takes its recipe's value from the tables below; an explicit value always
wins. The ledger's "switch" column names these keys, and ``tests/test_recipes.py`` checks that
every switch of a *choice* row resolves here under both recipes.

A value is either one setting or a dict keyed by model (supervised baselines) or by backbone
(pretraining, continuation, the fine-tuned encoder's optimiser); :func:`value` picks the entry.
"""
from __future__ import annotations

RECIPES = ("ecgnb", "study")
BACKBONES = ("ts2vec", "tstcc", "series2vec")
SUPERVISED_MODELS = ("hinception", "mlp", "fcn")


def check_recipe(recipe: str) -> str:
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got '{recipe}'")
    return recipe


# --------------------------------------------------------------------------- pretraining (02)
# selection: "holdout" = the lowest SSL loss on the held-out subject (TS2Vec: computed with the
# averaged network, the one used downstream), "train_loss" = the lowest training loss (the
# study's Series2Vec), "last" = the last epoch (the study's TS-TCC: downstream loaded `_last`).
# use_amp: float16 mixed precision on CUDA (CPU runs are float32 either way).
PRETRAINING: dict[str, dict] = {
    "ecgnb": {"selection": {"ts2vec": "last", "tstcc": "last", "series2vec": "last"},
              "use_amp": True},
    "study": {"selection": {"ts2vec": "holdout", "tstcc": "last", "series2vec": "train_loss"},
              "use_amp": False},
}
# Backbone config fields where the study's code differs from our backbone defaults (ledger rows
# on TS-TCC); applied before the size preset and the explicit ``model_overrides``.
BACKBONE_SETTINGS: dict[str, dict[str, dict]] = {
    "ecgnb": {},
    "study": {"tstcc": {"betas": (0.9, 0.999), "clean_bn_stats": False}},
}

# --------------------------------------------------------------------------- continuation (03)
# selection: "val" = the lowest loss on the continuation corpus's held-out subject / records,
# "train_loss", "last". The study's Series2Vec continuation is not readable in its code; its
# pretraining rule (training loss) is assumed. target_holdout: an "extended" continuation holds
# back a grouped 20 % of the target's training records as its validation (True) or trains on
# all of them (False, the study's: it validated on target test data, a leak that ecgnb never
# repeats, so a study "extended" run has no held-out part and keeps its last epoch).
CONTINUATION: dict[str, dict] = {
    "ecgnb": {"selection": {"ts2vec": "last", "tstcc": "last", "series2vec": "last"},
              "use_amp": True, "target_holdout": True},
    "study": {"selection": {"ts2vec": "val", "tstcc": "last", "series2vec": "train_loss"},
              "use_amp": False, "target_holdout": False},
}

# --------------------------------------------------------------------------- downstream heads (04)
# Linear probing and fine-tuning. schedule: ReduceLROnPlateau on the validation loss
# ("plateau_val") or the training loss ("plateau_train"), or "none"; patience 0 = no early
# stopping; grad_clip 0 = no clipping. encoder_optimizer (fine-tuning): "same" = the head's
# optimiser class, encoder at ``lr * encoder_lr_ratio`` and the head's weight decay; "radam" = a
# separate RAdam at the backbone's pretraining rate and weight decay (ENCODER_RADAM), the study's,
# whose encoder at 3-10x the head's rate collapsed for TS-TCC and Series2Vec. finetune_mask:
# TS2Vec's binomial timestamp mask in the fine-tuned network's training forward ("binomial",
# the study's) or none; backbones without a mask ignore it. mlp_head: "ecgnb" (one hidden
# layer, ReLU, dropout 0.2) or "study" (two hidden layers, LeakyReLU, input dropout 0.1).
HEADS: dict[str, dict] = {
    "ecgnb": {"n_epochs": 300, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
              "warmup_epochs": 5, "schedule": "plateau_val", "lr_factor": 0.5,
              "lr_patience": 10, "min_lr": 0.0, "grad_clip": 1.0, "patience": 30,
              "imbalance": "weights", "select_on": "macro_f1", "use_amp": True,
              "encoder_optimizer": "same", "encoder_lr_ratio": 0.1, "finetune_mask": "none",
              "mlp_head": "ecgnb"},
    "study": {"n_epochs": 300, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
              "warmup_epochs": 0, "schedule": "none", "lr_factor": 0.1, "lr_patience": 10,
              "min_lr": 0.0, "grad_clip": 0.0, "patience": 0, "imbalance": "none",
              "select_on": "val_loss", "use_amp": False, "encoder_optimizer": "radam",
              "encoder_lr_ratio": 0.1, "finetune_mask": "binomial", "mlp_head": "study"},
}
# The study's encoder optimiser in fine-tuning: RAdam built from the backbone's pretraining
# config (TS2Vec: no weight decay given to RAdam; TS-TCC: 3e-4; Series2Vec: 0).
ENCODER_RADAM: dict[str, dict] = {
    "ts2vec": {"lr": 1e-3, "weight_decay": 0.0},
    "tstcc": {"lr": 3e-4, "weight_decay": 3e-4},
    "series2vec": {"lr": 1e-3, "weight_decay": 0.0},
}

# --------------------------------------------------------------------------- supervised baselines (04)
# The study's main_supervised.py: Adam lr 1e-3, weight decay 1e-3 for FCN and MLP and 0 for
# H-InceptionTime, ReduceLROnPlateau on the *training* loss (factor 0.1, patience 10, min_lr 0),
# 300 epochs, the best epoch on validation loss. Ours: the heads' recipe.
SUPERVISED: dict[str, dict] = {
    "ecgnb": {k: v for k, v in HEADS["ecgnb"].items()
              if k not in ("encoder_optimizer", "encoder_lr_ratio", "finetune_mask")},
    "study": {"n_epochs": 300, "optimizer": "adam", "lr": 1e-3,
              "weight_decay": {"hinception": 0.0, "mlp": 1e-3, "fcn": 1e-3},
              "warmup_epochs": 0, "schedule": "plateau_train", "lr_factor": 0.1,
              "lr_patience": 10, "min_lr": 0.0, "grad_clip": 0.0, "patience": 0,
              "imbalance": "none", "select_on": "val_loss", "use_amp": False,
              "mlp_head": "study"},
}

STAGES: dict[str, dict[str, dict]] = {"pretraining": PRETRAINING, "continuation": CONTINUATION,
                                      "heads": HEADS, "supervised": SUPERVISED}


def value(stage: str, recipe: str, name: str, key: str | None = None):
    """The ``recipe``'s value of ``name`` in ``stage``; ``key`` (a backbone or a model) picks
    the entry of a per-model value."""
    found = STAGES[stage][check_recipe(recipe)][name]
    if isinstance(found, dict):
        if key not in found:
            raise ValueError(f"{stage} '{name}' of recipe '{recipe}' is set per model "
                             f"({sorted(found)}), got {key!r}")
        return found[key]
    return found


def values(stage: str, recipe: str, key: str | None = None) -> dict:
    """Every setting of ``stage`` under ``recipe``, per-model values resolved for ``key``."""
    return {name: value(stage, recipe, name, key) for name in STAGES[stage][check_recipe(recipe)]}


def backbone_settings(recipe: str, backbone: str) -> dict:
    """The backbone config fields the ``recipe`` sets (before size preset and overrides)."""
    return dict(BACKBONE_SETTINGS[check_recipe(recipe)].get(backbone, {}))


def encoder_radam(backbone: str) -> dict:
    """The study's fine-tuning RAdam (``lr``, ``weight_decay``) for ``backbone``."""
    if backbone not in ENCODER_RADAM:
        raise ValueError(f"encoder_optimizer 'radam' needs a backbone of {sorted(ENCODER_RADAM)},"
                         f" got {backbone!r}")
    return dict(ENCODER_RADAM[backbone])
