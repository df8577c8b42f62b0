"""Stage 02, self-supervised pretraining on one scenario corpus, with its lineage record."""
from __future__ import annotations

import copy
import dataclasses
from typing import ClassVar

from ecgnb import models, recipes
from ecgnb.data import DataConfig, Windows
from ecgnb.data.scenarios import UNTRAINED
from ecgnb.models.base import Encoder
from ecgnb.models.best import BestState, loss_callback
from ecgnb.models.checkpoint import checkpoint_args, resumed_from
from ecgnb.models.lineage import lineage_record, timestamp


SMALL_MODELS = recipes.SMALL_MODELS  # the networks of ``model_size: small``
# Checkpoint selection: "holdout" = the epoch with the lowest SSL loss on the held-out subject,
# "train_loss" = the lowest training loss, "last" = the last epoch; each recipe's per backbone
# in ecgnb.recipes.PRETRAINING.
PRETRAINING_SELECTIONS = ("holdout", "train_loss", "last")


@dataclasses.dataclass(frozen=True)
class PretrainConfig(DataConfig):
    """Parameters of notebooks/02_pretraining.ipynb (same names as its parameters cell)."""

    STAGE: ClassVar[str] = "pretraining"  # its ranges: ecgnb.config.STAGE_RANGES

    backbone: str = "ts2vec"
    corpus: str = "ECG"
    corpus_fraction: float | None = None  # share of each subject's windows; None: the study's
    # n_windows, n_epochs, model_size: None takes the recipe's (ecgnb.recipes.PRETRAINING)
    n_windows: int | None = None  # cap on training windows (seeded subsample); 0: all
    n_epochs: int | None = None  # 0: no training (the "untrained" reference: initial weights)
    batch_size: int = 64
    lr: float | None = None  # None: the backbone's default
    model_size: str | None = None  # "study" (published sizes) or "small" (smoke tests, demo)
    model_overrides: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    recipe: str = "ecgnb"  # "study", "ecgnb" or "smoke": every None (ecgnb.recipes.PRETRAINING)
    selection: str | None = None  # "holdout", "train_loss" or "last"; None: the recipe's
    use_amp: bool | None = None  # float16 autocast on CUDA; None: the recipe's (study: off)
    device: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        recipes.check_recipe(self.recipe)
        recipes.resolve(self, "pretraining", self.backbone)
        if self.selection not in PRETRAINING_SELECTIONS:
            raise ValueError(f"selection must be one of {PRETRAINING_SELECTIONS}, "
                             f"got '{self.selection}'")


def model_config(backbone: str, model_size: str, overrides: dict, recipe: str = "ecgnb") -> dict:
    """Backbone config overrides: the recipe's settings, the size preset, then the explicit
    overrides."""
    if model_size not in ("study", "small"):
        raise ValueError(f"model_size must be 'study' or 'small', got '{model_size}'")
    base = SMALL_MODELS.get(backbone, {}) if model_size == "small" else {}
    return {**recipes.backbone_settings(recipe, backbone), **base, **overrides}


def initial_twin(encoder: Encoder, seed: int) -> Encoder:
    """The same backbone and config with fresh weights drawn from ``seed`` (with the pretraining
    seed: the network as it was before pretraining), for a pretrained-vs-random probe."""
    return type(encoder)(copy.deepcopy(encoder.config), device=encoder.device, seed=seed,
                         verbose=False, settings=copy.deepcopy(encoder.settings))


def pretrain(cfg: PretrainConfig, train: Windows, val: Windows | None = None,
             verbose: bool = True, checkpoint_dir=None) -> Encoder:
    """Build the backbone and run SSL on ``train``; keep the checkpoint of ``cfg.selection``
    (the lowest held-out loss needs ``val``); appends a lineage record.

    ``checkpoint_dir`` (the run's ``checkpoints/``): the fit writes its training state there
    and, run again, resumes from it (:mod:`ecgnb.models.checkpoint`); the lineage says where."""
    overrides = {"use_amp": cfg.use_amp,
                 **model_config(cfg.backbone, cfg.model_size, cfg.model_overrides, cfg.recipe)}
    if cfg.backbone == "series2vec":
        overrides.setdefault("fs", cfg.fs)
    if cfg.lr is not None:  # the checkpoint's config records the rate it was trained at
        overrides["lr"] = cfg.lr
    encoder = models.build(cfg.backbone, device=cfg.device, seed=cfg.seed, verbose=verbose,
                           **overrides)
    selecting = cfg.selection != "last" and cfg.n_epochs > 0
    if cfg.selection == "holdout" and selecting and (val is None or len(val) < 2):
        raise ValueError("selection 'holdout' needs the held-out subject's windows (val)")
    best = BestState("min")
    key = "val_loss" if cfg.selection == "holdout" else "loss"
    started = timestamp()
    encoder.fit(train.x, n_epochs=cfg.n_epochs, batch_size=cfg.batch_size,
                lr=cfg.lr, x_val=None if val is None else val.x, seed=cfg.seed,
                callback=loss_callback(best, key=key) if selecting else None,
                **checkpoint_args(checkpoint_dir, "pretrain"))
    trained = cfg.n_epochs > 0
    if not trained:  # the "untrained" reference: say so, and keep its losses as epoch 0
        encoder.history_.append(_initial_losses(encoder, cfg, train, val))
        selection = f"initial weights (seed {cfg.seed}), no training"
    elif selecting:
        best.restore(encoder)
        what = "held-out-subject SSL loss" if key == "val_loss" else "training SSL loss"
        selection = f"lowest {what}: epoch {best.epoch} of {cfg.n_epochs} ({key} {best.score:.4g})"
    else:
        selection = "last epoch"
    encoder.lineage.append(lineage_record(
        encoder, cfg, train, val, stage="pretrain" if trained else "untrained",
        scenario=cfg.corpus if trained else UNTRAINED, corpus=cfg.corpus if trained else None,
        epochs=cfg.n_epochs, seed=cfg.seed, recipe=cfg.recipe, selection=selection,
        started=started, selection_rule=cfg.selection,
        selected_epoch=best.epoch or cfg.n_epochs, start_from="initial weights",
        training=encoder.training_record(), resumed_from=resumed_from(encoder)))
    return encoder


def _initial_losses(encoder: Encoder, cfg: PretrainConfig, train: Windows,
                    val: Windows | None) -> dict:
    record = {"epoch": 0, "loss": encoder.evaluate_loss(train.x, cfg.batch_size, cfg.seed),
              "seconds": 0.0}
    if val is not None:
        record["val_loss"] = encoder.evaluate_loss(val.x, cfg.batch_size, cfg.seed)
    return record
