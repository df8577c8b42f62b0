"""What a downstream cell trains with: :class:`HeadTraining` (the knobs a recipe sets, as notebook
04's parameters name them) and :class:`TrainConfig` (one cell's: its head, mode, seed and
device besides), resolved from the recipe by :func:`ecgnb.recipes.resolve`.

A knob is one field of :class:`HeadTraining` and its values in the recipe tables
(:data:`ecgnb.recipes.HEAD_TRAINING`, :data:`ecgnb.recipes.BASELINE_TRAINING`); notebook 04's
config (:class:`ecgnb.finetuning.FinetuneConfig`) inherits the fields and the report's
``train_<name>`` columns are read from them (:func:`training_fields`).
"""
from __future__ import annotations

import dataclasses
import warnings

from ecgnb import recipes
from ecgnb.config import check_ranges

SUPERVISED = "supervised"  # the baselines' mode: a raw-signal model trained from scratch
MODES = ("lp", "ft", SUPERVISED)
IMBALANCE = ("weights", "sampler", "none")
SELECT_ON = ("macro_f1", "macro_auroc", "val_loss", "last")
LOSS_AVERAGES = ("samples", "batches")
OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("plateau_val", "plateau_train", "none")
ENCODER_OPTIMIZERS = ("same", "radam")
ENCODER_DECAYS = ("decoupled", "l2")  # the "radam" encoder's weight decay
FINETUNE_MASKS = ("none", "binomial")
FEATURE_DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class HeadTraining:
    """The downstream training knobs; ``None`` takes the ``recipe``'s value (per model where
    the study's differ), so a resolved config holds what the run used.
    ``patience``: epochs without a better validation score before stopping (0: never).
    ``schedule``: ReduceLROnPlateau (``lr_patience``, ``lr_factor``, ``min_lr``) on the
    validation or the training loss, or none. ``grad_clip``: max gradient norm (0: none).
    ``encoder_optimizer`` (ft): "same" (encoder group at ``lr * encoder_lr_ratio``) or "radam"
    (the study's: RAdam at the ``backbone``'s pretraining rate); ``encoder_lr``,
    ``encoder_weight_decay`` and, for "radam", ``encoder_decay`` ("decoupled", the study's, or
    "l2") follow from it unless set (None outside fine-tuning).
    ``finetune_mask`` (ft): TS2Vec's timestamp mask in training mode. ``mlp_head``: the MLP
    variant (heads and the raw-signal baseline). ``select_on``: "macro_f1", "macro_auroc",
    "val_loss" or "last" (no early stopping then); a multi-label task selects on "macro_auroc"
    where the recipe says "macro_f1" (:func:`for_task`).
    ``lead_pooling`` (lp, ft on C > 1 leads): each lead is encoded on its own by the same encoder
    and the per-lead embeddings (or features) are joined by "concat" or "mean"
    (:mod:`ecgnb.models.leads`); baselines take the leads as input channels (None there). ``loss_average``: "samples" or "batches" (mean of batch means).
    ``cudnn_benchmark``, ``allow_tf32`` and ``cudnn_deterministic``: cuDNN's autotuner, TF32 in
    its convolutions and its deterministic algorithms on CUDA (``ecgnb.models.precision``).
    ``n_members`` and ``shortcut`` (supervised): H-InceptionTime's ensemble size and residual
    connections ("conv" or "identity"); other models train one network."""

    recipe: str = "ecgnb"
    n_epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: int | None = None
    schedule: str | None = None
    lr_factor: float | None = None
    lr_patience: int | None = None
    min_lr: float | None = None
    grad_clip: float | None = None
    patience: int | None = None
    imbalance: str | None = None
    select_on: str | None = None
    loss_average: str | None = None
    use_amp: bool | None = None
    allow_tf32: bool | None = None
    cudnn_benchmark: bool | None = None
    cudnn_deterministic: bool | None = None
    encoder_optimizer: str | None = None
    encoder_lr_ratio: float | None = None
    encoder_lr: float | None = None
    encoder_weight_decay: float | None = None
    encoder_decay: str | None = None
    finetune_mask: str | None = None
    mlp_head: str | None = None
    n_members: int | None = None
    shortcut: str | None = None
    lead_pooling: str | None = None


def training_fields() -> tuple[str, ...]:
    """The knobs a cell trains with (every field of :class:`HeadTraining` but the recipe)."""
    return tuple(f.name for f in dataclasses.fields(HeadTraining) if f.name != "recipe")


@dataclasses.dataclass(frozen=True)
class TrainConfig(HeadTraining):
    """One downstream cell: ``head`` (linear | mlp | fcn for lp and ft; hinception | mlp | fcn
    for supervised), ``mode``, the encoder's ``backbone`` (the study's RAdam depends on it),
    ``label_fraction`` (< 1 trains on :func:`~ecgnb.data.splits.label_subset` of the training
    split), ``seed`` and ``device``, with the :class:`HeadTraining` knobs resolved from the
    recipe at construction. ``flush_denormal``: training and prediction flush subnormal floats.
    ``feature_dtype`` (lp): the cached encoder outputs' type, ``float32`` or ``float16`` (half the
    memory; about 3 significant digits, values beyond 65504 refused)."""

    head: str = "mlp"
    mode: str = "ft"
    backbone: str | None = None
    label_fraction: float = 1.0
    seed: int = 0
    device: str | None = None
    flush_denormal: bool = True
    feature_dtype: str = "float32"
    verbose: bool = True

    @classmethod
    def for_cell(cls, training: HeadTraining, **cell) -> "TrainConfig":
        """A cell's config from a stage's knobs (any :class:`HeadTraining`) and ``cell``'s
        fields (head, mode, seed, ...)."""
        return cls(**{name: getattr(training, name) for name in ("recipe", *training_fields())},
                   **cell)

    @property
    def table(self) -> str:
        """The recipe table this cell's knobs come from (:data:`ecgnb.recipes.TABLES`)."""
        return "baselines" if self.mode == SUPERVISED else "heads"

    def __post_init__(self):
        _one_of("mode", self.mode, MODES)
        _one_of("feature_dtype", self.feature_dtype, FEATURE_DTYPES)
        recipes.resolve(self, self.table, self.head)
        self._check_choices()
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        check_ranges(self)
        self._resolve_encoder()

    def _check_choices(self) -> None:
        # the model names are the models' registries, which import torch: read here, so that
        # the report and notebook 06 import these settings without it
        from ecgnb.models.heads import HEADS, MLP_VARIANTS
        from ecgnb.models.hinception import BASELINES, SHORTCUTS
        from ecgnb.models.leads import LEAD_POOLINGS

        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        _one_of("imbalance", self.imbalance, IMBALANCE)
        _one_of("select_on", self.select_on, SELECT_ON)
        _one_of("loss_average", self.loss_average, LOSS_AVERAGES)
        _one_of("mlp_head", self.mlp_head, MLP_VARIANTS)
        _one_of(f"head (mode={self.mode})", self.head,
                tuple(BASELINES) if self.mode == SUPERVISED else tuple(HEADS))
        if self.mode == SUPERVISED:
            _one_of("shortcut", self.shortcut, tuple(SHORTCUTS))
        else:
            _one_of("lead_pooling", self.lead_pooling, LEAD_POOLINGS)
        if self.select_on == "last" and self.patience:
            warnings.warn(f"select_on 'last' keeps the last epoch: patience {self.patience} "
                          "stops nothing", stacklevel=4)

    def _resolve_encoder(self) -> None:
        """The fine-tuned encoder's optimiser settings (None outside fine-tuning)."""
        if self.mode == SUPERVISED:
            self._set(encoder_optimizer=None, encoder_lr_ratio=None, finetune_mask=None,
                      lead_pooling=None)
            return
        _one_of("encoder_optimizer", self.encoder_optimizer, ENCODER_OPTIMIZERS)
        _one_of("finetune_mask", self.finetune_mask, FINETUNE_MASKS)
        if self.mode != "ft":  # linear probing: the encoder is frozen
            self._set(encoder_optimizer=None, encoder_lr_ratio=None, finetune_mask=None,
                      encoder_lr=None, encoder_weight_decay=None, encoder_decay=None)
            return
        if self.encoder_optimizer == "radam":
            self._resolve_radam()
        else:
            if self.encoder_decay is not None:
                raise ValueError("encoder_decay sets the 'radam' encoder optimiser's; with "
                                 "encoder_optimizer 'same' the head's optimiser decides")
            if self.encoder_lr is None:
                self._set(encoder_lr=self.lr * self.encoder_lr_ratio)
            if self.encoder_weight_decay is None:
                self._set(encoder_weight_decay=self.weight_decay)
        if self.encoder_lr >= self.lr:
            warnings.warn(f"encoder lr {self.encoder_lr:g} >= head lr {self.lr:g}: the encoder "
                          "learns at or above the head's rate (the study's fine-tuning collapsed "
                          "so, docs/deviations.md)", stacklevel=3)

    def _resolve_radam(self) -> None:
        """The study's encoder RAdam (:func:`ecgnb.recipes.encoder_radam`) where not set."""
        radam = recipes.encoder_radam(self.backbone)
        self._set(**{name: radam[key] for name, key in (("encoder_lr", "lr"), (
            "encoder_weight_decay", "weight_decay"), ("encoder_decay", "decay"))
            if getattr(self, name) is None})
        _one_of("encoder_decay", self.encoder_decay, ENCODER_DECAYS)

    def _set(self, **values) -> None:
        """Set resolved fields at construction (the config is frozen afterwards)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)


def for_task(config: TrainConfig, is_multilabel: bool) -> TrainConfig:
    """``config`` for a task: a multi-label one selects on macro-AUROC where ``config`` says
    macro-F1 (undefined without a threshold); anything else as it is."""
    if is_multilabel and config.select_on == "macro_f1":
        return dataclasses.replace(config, select_on="macro_auroc")
    return config


def _one_of(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got '{value}'")
