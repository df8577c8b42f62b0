"""Downstream training: linear probing, fine-tuning and supervised baselines, one loop for all.

- ``mode="lp"`` (linear probing): the encoder is frozen; its embeddings (linear, mlp heads) or
  time-resolved features (fcn head) are computed once per split and cached, and only the head
  trains on them. The encoder's weights stay bit-identical. Features are written batch by batch
  into one array per split, of ``feature_dtype`` (float32; float16 halves the cache).
- ``mode="ft"`` (fine-tuning): a fresh copy of the encoder network (``enc.trainable_network()``)
  trains end to end with the head; the encoder's optimiser is ``encoder_optimizer`` ("same":
  the head's, at ``lr * encoder_lr_ratio``, ours 0.1; "radam": the study's, at the backbone's
  pretraining rate, 3-10x the head's, under which TS-TCC and Series2Vec collapsed below chance).
- ``mode="supervised"``: a raw-signal model of :mod:`ecgnb.models.hinception` from scratch
  (``head`` = ``hinception`` | ``mlp`` | ``fcn``); ``hinception`` trains ``n_members`` networks,
  each fresh and seeded independently, and averages their probabilities (H-InceptionTime).

Recipes (``recipe``; :mod:`ecgnb.recipes`, every value overridable): ``"ecgnb"`` (ours),
``"study"`` (the study's code: Adam at 1e-4 for the heads, its supervised script's recipe for the
baselines, the best epoch on validation loss) and ``"smoke"`` (ours at smoke sizes). In all, the
kept epoch is chosen on the *validation* split only (``select_on``: macro-F1, ties -> lower loss;
or the loss; or simply the last epoch, the paper's own numbers), its state deep-copied and
restored; the test split is scored once, afterwards. The training and validation losses are means
over samples or, as the study's, means of per-batch means (``loss_average``). Mixed precision
(``use_amp``) only on CUDA.

Layouts: windows ``x [N, 1, T]``; labels ``y [N]`` in ``0..K-1``; logits ``[B, K]``.

A training step does not wait for the device: the training and validation inputs are placed once
per fit (:class:`~ecgnb.models.device.Corpus`: on the device when they fit), an epoch's batch order
is drawn up front and copied once, the batch losses are summed on the device (float64, weighted by
batch size) and read once per epoch, and validation logits come back in one copy.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler
from tqdm.auto import tqdm

from ecgnb import recipes
from ecgnb.config import check_ranges, pick_device, torch_generator
from ecgnb.data.corpora import check_classes
from ecgnb.data.splits import label_subset
from ecgnb.models.heads import HEADS, MLP_VARIANTS, Classifier, build_head
from ecgnb.evaluation.metrics import compute_metrics, predictions_frame
from ecgnb.models.base import Encoder
from ecgnb.models.best import BestState
from ecgnb.models.checkpoint import (CHECKPOINT_EVERY_S, Checkpointer, array_checksum,
                                    checkpoint_args,
                                    modules_checksum, rng_state, set_rng_state)
from ecgnb.models.lineage import timestamp
from ecgnb.models.hinception import (BASELINES, ENSEMBLE_BASELINES, SHORTCUTS, HInceptionTime,
                                     build_baseline, member_seeds)
from ecgnb.models.device import Corpus
from ecgnb.models.precision import numerics

SUPERVISED = "supervised"  # the baselines' mode: a raw-signal model trained from scratch
MODES = ("lp", "ft", SUPERVISED)
IMBALANCE = ("weights", "sampler", "none")
SELECT_ON = ("macro_f1", "val_loss", "last")
LOSS_AVERAGES = ("samples", "batches")
OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("plateau_val", "plateau_train", "none")
ENCODER_OPTIMIZERS = ("same", "radam")
ENCODER_DECAYS = ("decoupled", "l2")  # the "radam" encoder's weight decay
FINETUNE_MASKS = ("none", "binomial")
FEATURE_DTYPES = ("float32", "float16")
FEATURE_BATCH = 64  # windows per encoder pass when caching features: its activations stay small
AfterEpoch = Callable[[int, nn.Module], None]


@dataclasses.dataclass
class TrainConfig:
    """One downstream run. ``head``: linear | mlp | fcn (lp, ft) or hinception | mlp | fcn
    (supervised). Fields left ``None`` take the ``recipe``'s value (:mod:`ecgnb.recipes`,
    per model where the study's differ), so the config holds what the run used.
    ``patience``: epochs without a better validation score before stopping (0: never).
    ``schedule``: ReduceLROnPlateau (``lr_patience``, ``lr_factor``, ``min_lr``) on the
    validation or the training loss, or none. ``grad_clip``: max gradient norm (0: none).
    ``encoder_optimizer`` (ft): "same" (encoder group at ``lr * encoder_lr_ratio``) or "radam"
    (the study's: RAdam at the ``backbone``'s pretraining rate); ``encoder_lr``,
    ``encoder_weight_decay`` and, for "radam", ``encoder_decay`` ("decoupled", the study's, or
    "l2") are resolved from it (None outside fine-tuning).
    ``finetune_mask`` (ft): TS2Vec's timestamp mask in training mode. ``mlp_head``: the MLP
    variant (heads and the raw-signal baseline). ``select_on``: "macro_f1", "val_loss" or "last"
    (no early stopping then). ``loss_average``: "samples" or "batches" (mean of batch means).
    ``flush_denormal``: training and prediction flush subnormal floats; ``cudnn_benchmark``,
    ``allow_tf32`` and ``cudnn_deterministic``: cuDNN's autotuner, TF32 in its convolutions and
    its deterministic algorithms on CUDA (``ecgnb.models.precision``). ``feature_dtype`` (lp):
    the cached encoder outputs' type, ``float32`` or ``float16`` (half the memory; about 3
    significant digits, values beyond 65504 refused).
    ``label_fraction`` < 1 trains on :func:`~ecgnb.data.splits.label_subset` of the training split.
    ``n_members`` and ``shortcut`` (supervised): H-InceptionTime's ensemble size and residual
    connections ("conv" or "identity"); other models train one network."""

    head: str = "mlp"
    mode: str = "ft"
    recipe: str = "ecgnb"
    backbone: str | None = None  # the encoder's (lp, ft); the study's RAdam depends on it
    n_epochs: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    encoder_optimizer: str | None = None
    encoder_lr_ratio: float | None = None
    encoder_lr: float | None = None
    encoder_weight_decay: float | None = None
    encoder_decay: str | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    warmup_epochs: int | None = None
    schedule: str | None = None
    patience: int | None = None
    lr_patience: int | None = None
    lr_factor: float | None = None
    min_lr: float | None = None
    grad_clip: float | None = None
    imbalance: str | None = None
    select_on: str | None = None
    loss_average: str | None = None
    use_amp: bool | None = None
    finetune_mask: str | None = None
    mlp_head: str | None = None
    label_fraction: float = 1.0
    n_members: int | None = None
    shortcut: str | None = None
    seed: int = 0
    device: str | None = None
    flush_denormal: bool = True
    cudnn_benchmark: bool | None = None
    allow_tf32: bool | None = None
    cudnn_deterministic: bool | None = None
    feature_dtype: str = "float32"
    verbose: bool = True

    def __post_init__(self):
        _one_of("mode", self.mode, MODES)
        _one_of("feature_dtype", self.feature_dtype, FEATURE_DTYPES)
        stage = "supervised" if self.mode == "supervised" else "heads"
        for name, value in recipes.values(stage, self.recipe, self.head).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._check_choices()
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        check_ranges(self)
        self._resolve_encoder()

    def _check_choices(self) -> None:
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
        if self.select_on == "last" and self.patience:
            warnings.warn(f"select_on 'last' keeps the last epoch: patience {self.patience} "
                          "stops nothing", stacklevel=4)

    def _resolve_encoder(self) -> None:
        """The fine-tuned encoder's optimiser settings (None outside fine-tuning)."""
        if self.mode == "supervised":
            self.encoder_optimizer = self.encoder_lr_ratio = self.finetune_mask = None
            return
        _one_of("encoder_optimizer", self.encoder_optimizer, ENCODER_OPTIMIZERS)
        _one_of("finetune_mask", self.finetune_mask, FINETUNE_MASKS)
        if self.mode != "ft":  # linear probing: the encoder is frozen
            self.encoder_optimizer = self.encoder_lr_ratio = self.finetune_mask = None
            self.encoder_lr = self.encoder_weight_decay = self.encoder_decay = None
            return
        if self.encoder_optimizer == "radam":
            self._resolve_radam()
        else:
            if self.encoder_decay is not None:
                raise ValueError("encoder_decay sets the 'radam' encoder optimiser's; with "
                                 "encoder_optimizer 'same' the head's optimiser decides")
            if self.encoder_lr is None:
                self.encoder_lr = self.lr * self.encoder_lr_ratio
            if self.encoder_weight_decay is None:
                self.encoder_weight_decay = self.weight_decay
        if self.encoder_lr >= self.lr:
            warnings.warn(f"encoder lr {self.encoder_lr:g} >= head lr {self.lr:g}: the encoder "
                          "learns at or above the head's rate (the study's fine-tuning collapsed "
                          "so, docs/deviations.md)", stacklevel=3)

    def _resolve_radam(self) -> None:
        """The study's encoder RAdam (:func:`ecgnb.recipes.encoder_radam`) where not set."""
        radam = recipes.encoder_radam(self.backbone)
        self.encoder_lr = radam["lr"] if self.encoder_lr is None else self.encoder_lr
        if self.encoder_weight_decay is None:
            self.encoder_weight_decay = radam["weight_decay"]
        self.encoder_decay = radam["decay"] if self.encoder_decay is None else self.encoder_decay
        _one_of("encoder_decay", self.encoder_decay, ENCODER_DECAYS)


def _one_of(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got '{value}'")


@dataclasses.dataclass
class FitResult:
    """A trained model (best validation state restored), its history and best epoch (1-based)."""

    model: nn.Module
    history: list[dict]
    best_epoch: int
    resumed_from: dict | None = None  # where a checkpointed fit resumed (None: from the start)


@dataclasses.dataclass
class CellResult:
    """One cell: the trained classifier, per-epoch history (one block per ensemble member),
    validation and test metrics, and the test predictions (``predictions.csv`` layout)."""

    model: nn.Module
    history: pd.DataFrame
    best_epochs: list[int]
    val_metrics: dict
    test_metrics: dict
    predictions: pd.DataFrame
    train_indices: np.ndarray
    config: TrainConfig
    n_train_available: int = 0  # labelled windows of the training split (before the label subset)
    resumed_from: list = dataclasses.field(default_factory=list)  # per member (None: not resumed)

    @property
    def best_epoch(self) -> int:
        """The best epoch of a single model (the first member's for an ensemble)."""
        return self.best_epochs[0]

    def summary(self) -> dict:
        """What ``metrics.json`` records besides the metrics (``extra`` of ``write_run``)."""
        best = self.best_epochs[0] if len(self.best_epochs) == 1 else self.best_epochs
        config = dataclasses.asdict(self.config)
        return {"seed": self.config.seed, "select_on": self.config.select_on, "best_epoch": best,
                "n_epochs_run": int(self.history.groupby("member")["epoch"].max().max()),
                **self.label_record(), "val_metrics": self.val_metrics, "train_config": config,
                "resumed_from": self.resumed_from}

    def label_record(self) -> dict:
        """The labels the cell trained on: ``n_train``, of ``n_train_available``, and the
        realised share (whole records only, so it differs from the requested ``label_fraction``)."""
        n_train, n_available = int(len(self.train_indices)), int(self.n_train_available)
        return {"n_train": n_train, "n_train_available": n_available,
                "label_fraction_realised": n_train / n_available if n_available else None}


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """sklearn "balanced" weights ``[K]`` (n / (n_present * count)); 1 for absent classes."""
    weights = np.ones(n_classes)
    present = np.unique(y)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return weights


# --------------------------------------------------------------------------- the loop
def make_optimizers(model: nn.Module, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW or Adam over the model; in fine-tuning the encoder is a group of its own at
    ``encoder_lr`` (``encoder_optimizer="same"``) or has its own RAdam (``"radam"``, its weight
    decay decoupled or L2 as ``encoder_decay`` says)."""
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    if not (config.mode == "ft" and isinstance(model, Classifier)):
        params = [p for p in model.parameters() if p.requires_grad]
        return [optimizer([{"params": params, "name": "model", "lr": config.lr}],
                          weight_decay=config.weight_decay)]
    encoder = {"params": list(model.network.parameters()), "name": "encoder",
               "lr": config.encoder_lr, "weight_decay": config.encoder_weight_decay}
    head = {"params": list(model.head.parameters()), "name": "head", "lr": config.lr}
    if config.encoder_optimizer == "radam":
        radam = torch.optim.RAdam([encoder],
                                  decoupled_weight_decay=config.encoder_decay == "decoupled")
        return [optimizer([head], weight_decay=config.weight_decay), radam]
    return [optimizer([encoder, head], weight_decay=config.weight_decay)]


def fit_classifier(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                   val: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, n_classes: int,
                   after_epoch: AfterEpoch | None = None, checkpoint=None,
                   checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> FitResult:
    """Train ``model`` (inputs -> logits ``[B, n_classes]``) on ``train = (inputs, y)``; select
    on ``val = (inputs, y)``.

    ``after_epoch(epoch, model)`` runs after each training epoch, before validation (a hook for
    tests and diagnostics). Returns the model with its best validation state restored.
    ``checkpoint``: a ``.pt`` file for the whole training state, written at an epoch end every
    ``checkpoint_every_s`` seconds; a fit run again with a checkpoint of itself resumes from it
    and ends as an uninterrupted fit would (:mod:`ecgnb.models.checkpoint`).
    """
    if len(train[1]) < 2 or len(val[1]) < 1:
        raise ValueError(f"need >= 2 training and >= 1 validation windows, got "
                         f"{len(train[1])} and {len(val[1])}")
    device = pick_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)  # dropout draws; data order and sampling use the generator
    criterion = _criterion(train[1], n_classes, config).to(device)
    optimizers = make_optimizers(model, config)
    groups = [g for opt in optimizers for g in opt.param_groups]
    base_lrs = [g["lr"] for g in groups]
    plateaus = [torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=config.lr_factor,
                                                           patience=config.lr_patience,
                                                           min_lr=config.min_lr)
                for opt in optimizers]
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.use_amp)
    (loader, loader_gen), history, best = _train_loader(*train, config), [], BestState("min")
    inputs = {"train": (Corpus(train[0], device), Corpus(train[1], device)),
              "val": (Corpus(val[0], device).x, val[1])}
    parts = _FitParts(model, optimizers, plateaus, scaler, best, history,
                      [loader_gen] + _generators_of(model))
    first = 1
    if checkpoint is not None:
        checkpoint = Checkpointer(checkpoint, _fingerprint(model, train, val, config, n_classes),
                                  checkpoint_every_s)
        first = parts.resume(checkpoint) + 1
    bar = tqdm(range(first, config.n_epochs + 1), desc=f"{config.mode}/{config.head}",
               disable=not config.verbose, leave=False, initial=first - 1, total=config.n_epochs)
    with numerics(device, config):
        for epoch in bar:
            if config.patience and best.epochs_since >= config.patience:
                break  # a fit resumed after its last epoch
            _warm_up(groups, base_lrs, epoch, config.warmup_epochs)
            start = time.perf_counter()
            train_loss = _train_epoch(model, loader, inputs["train"], criterion, optimizers,
                                      scaler, config, device)
            if after_epoch is not None:
                after_epoch(epoch, model)
            val_loss, val_f1 = _validate(model, inputs["val"], criterion, config, device)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                            "val_macro_f1": val_f1, "lr": optimizers[0].param_groups[-1]["lr"],
                            "seconds": time.perf_counter() - start})
            best.update(epoch, _selection_score(epoch, val_loss, val_f1, config.select_on),
                        model)
            if epoch >= config.warmup_epochs and config.schedule != "none":
                for plateau in plateaus:
                    plateau.step(val_loss if config.schedule == "plateau_val" else train_loss)
            bar.set_postfix(val_f1=f"{val_f1:.3f}", best=best.epoch)
            if checkpoint is not None and checkpoint.due(end_of_epoch=True):
                checkpoint.save(parts.state(epoch))
            if config.patience and best.epochs_since >= config.patience:
                break
    return FitResult(model=best.restore(model), history=history, best_epoch=best.epoch,
                     resumed_from=None if checkpoint is None else checkpoint.resumed_from)


@dataclasses.dataclass
class _FitParts:
    """Everything :func:`fit_classifier` changes as it trains, for its checkpoints."""

    model: nn.Module
    optimizers: list
    plateaus: list
    scaler: torch.amp.GradScaler
    best: BestState
    history: list
    generators: list

    def state(self, epoch: int) -> dict:
        return {"epoch": epoch, "model": self.model.state_dict(),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "plateaus": [p.state_dict() for p in self.plateaus],
                "scaler": self.scaler.state_dict(), "best": self.best.state_dict(),
                "history": self.history, "rng": rng_state(self.generators)}

    def resume(self, checkpoint: Checkpointer) -> int:
        """Load ``checkpoint`` when it is this fit's; returns the last epoch it holds (0: none)."""
        saved = checkpoint.load()
        if saved is None:
            return 0
        self.model.load_state_dict(saved["model"])
        for part, state in [*zip(self.optimizers, saved["optimizers"]),
                            *zip(self.plateaus, saved["plateaus"])]:
            part.load_state_dict(state)
        self.scaler.load_state_dict(saved["scaler"])
        self.best.load_state_dict(saved["best"])
        self.history[:] = saved["history"]
        set_rng_state(saved["rng"], self.generators)
        checkpoint.resumed_from = {"epoch": saved["epoch"] + 1, "at": timestamp()}
        return saved["epoch"]


def _generators_of(model: nn.Module) -> list[torch.Generator]:
    """The generators a model's modules draw from (e.g. a fine-tuned TS2Vec's timestamp mask)."""
    return [v for m in model.modules() for v in vars(m).values() if isinstance(v, torch.Generator)]


def _fingerprint(model, train, val, config: TrainConfig, n_classes: int) -> dict:
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("verbose",)}
    device = next(model.parameters()).device.type
    return {"config": settings, "n_classes": n_classes, "device": device,
            "start": modules_checksum({"model": model}),
            **{f"{name}_{i}": array_checksum(t.numpy()) for name, part in (("train", train),
                                                                          ("val", val))
               for i, t in enumerate(part)}}


def _selection_score(epoch: int, val_loss: float, val_f1: float, select_on: str) -> tuple:
    """Lower is better: ``(-macro-F1, loss)`` (ties -> lower loss), ``(loss,)`` or, for the
    last epoch, ``(-epoch,)`` (every epoch beats the one before)."""
    if select_on == "last":
        return (-float(epoch),)
    return (-val_f1, val_loss) if select_on == "macro_f1" else (val_loss,)


def _criterion(y: torch.Tensor, n_classes: int, config: TrainConfig) -> nn.CrossEntropyLoss:
    """Cross-entropy; class-weighted ("balanced") when ``imbalance="weights"``."""
    if config.imbalance != "weights":
        return nn.CrossEntropyLoss()
    weight = torch.tensor(class_weights(y.numpy(), n_classes), dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight)


def _train_loader(x: torch.Tensor, y: torch.Tensor, config: TrainConfig
                  ) -> tuple[DataLoader, torch.Generator]:
    """Seeded batches of indices into ``x``/``y`` (the loader and its generator);
    ``imbalance="sampler"`` draws classes evenly (with replacement)."""
    gen = torch_generator(config.seed)
    drop_last = len(y) % config.batch_size == 1  # a batch of one breaks BatchNorm
    dataset = TensorDataset(torch.arange(len(y)))
    if config.imbalance == "sampler":
        counts = torch.bincount(y).float()
        sampler = WeightedRandomSampler((1.0 / counts)[y].double(), num_samples=len(y),
                                        replacement=True, generator=gen)
        return DataLoader(dataset, config.batch_size, sampler=sampler, drop_last=drop_last), gen
    return (DataLoader(dataset, config.batch_size, shuffle=True, generator=gen,
                       drop_last=drop_last), gen)


def _warm_up(groups: list[dict], base_lrs: list[float], epoch: int, warmup_epochs: int) -> None:
    """Linear warm-up: epoch ``e <= warmup_epochs`` (1-based) runs at ``e / warmup_epochs`` of
    each parameter group's base rate."""
    if epoch <= warmup_epochs:
        for group, base in zip(groups, base_lrs):
            group["lr"] = base * epoch / warmup_epochs


def _train_epoch(model, loader, data: tuple[Corpus, Corpus], criterion, optimizers, scaler,
                 config, device) -> float:
    """One epoch over ``loader``'s index batches into ``data`` (x, y); the mean of the batch
    losses, weighted by batch size (``loss_average="samples"``) or not ("batches"), summed on
    the device and read once."""
    model.train()
    batches = [idx for (idx,) in loader]  # the epoch's draws, made up front
    order, sizes = data[0].indices(torch.cat(batches)), [len(idx) for idx in batches]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    start, by_samples = 0, config.loss_average == "samples"
    for size in sizes:
        idx, start = order[start:start + size], start + size
        xb, yb = as_input(_gather(data[0], idx)), _gather(data[1], idx)
        with torch.autocast(device.type, enabled=scaler.is_enabled()):
            loss = criterion(model(xb).float(), yb)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
            params = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach().double() * (size if by_samples else 1)
    return loss_sum.item() / (sum(sizes) if by_samples else len(sizes))


def _gather(data: Corpus, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` of ``data`` on its device. In host memory they are stacked row by row, as a
    ``DataLoader`` collates them: the same values as one indexing call, but a fine-tuned
    Series2Vec cell then ends bit-identical to a loader's on the CPU (with one indexing call its
    weights differ in the last bits)."""
    if data.where == "host":
        return torch.stack([data.x[i] for i in idx])
    return data.batch(idx)


def as_input(x: torch.Tensor) -> torch.Tensor:
    """A model's input in float32 (cached float16 features are widened per batch)."""
    return x.float() if x.dtype == torch.float16 else x


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
                   device: str | torch.device | None = None, use_amp: bool = True) -> torch.Tensor:
    """Logits ``[N, K]`` (float32, CPU) of ``model`` in eval mode, batch by batch; they stay on
    the device until the end (one copy back). ``x`` may already be on the device."""
    device = pick_device(device) if not isinstance(device, torch.device) else device
    model.to(device)
    was_training = model.training
    model.eval()
    use_amp = use_amp and device.type == "cuda"
    out = []
    for start in range(0, len(x), batch_size):
        with torch.autocast(device.type, enabled=use_amp):
            xb = as_input(x[start:start + batch_size].to(device, non_blocking=True))
            out.append(model(xb).float())
    model.train(was_training)
    return torch.cat(out).cpu()


def prediction_batch(x: torch.Tensor, config: TrainConfig) -> int:
    """Rows per prediction pass: the training batch for cached time-resolved features (an FCN
    probe's activations at 256 rows would take more memory than its cache), else at least 256.
    The logits do not depend on it."""
    is_features = config.mode == "lp" and x.dim() == 3
    return config.batch_size if is_features else max(256, config.batch_size)


def _validate(model, val, criterion, config, device) -> tuple[float, float]:
    """Validation loss (the mean over samples, or of the losses of consecutive batches of
    ``batch_size``, per ``loss_average``) and macro-F1."""
    logits = predict_logits(model, val[0], prediction_batch(val[0], config), device,
                            config.use_amp)
    loss = _mean_loss(criterion, logits.to(device), val[1].to(device), config)
    f1 = f1_score(val[1].numpy(), logits.argmax(1).numpy(), labels=np.arange(logits.shape[1]),
                  average="macro", zero_division=0)
    return float(loss), float(f1)


def _mean_loss(criterion, logits: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> float:
    if config.loss_average == "samples":
        return criterion(logits, y).item()
    batches = zip(logits.split(config.batch_size), y.split(config.batch_size))
    return torch.stack([criterion(lb, yb) for lb, yb in batches]).mean().item()


# --------------------------------------------------------------------------- one cell
def run_cell(encoder: Encoder | None, windows, splits: dict[str, np.ndarray],
             config: TrainConfig, after_epoch: AfterEpoch | None = None, checkpoint_dir=None,
             name: str = "cell") -> CellResult:
    """Train on ``splits["train"]`` (or its label subset), select on ``"val"``, score ``"test"``.
    With ``checkpoint_dir``, each fit checkpoints there as ``<name>-m<member>.pt`` and a cell run
    again resumes (:func:`fit_classifier`).

    ``encoder`` is a pretrained :class:`Encoder` (lp, ft) or ``None`` (supervised).
    ``windows`` is a labelled :class:`~ecgnb.data.Windows` (``x [N, 1, T]``); the test split is
    predicted once, with the best validation state restored.
    """
    if config.mode == SUPERVISED and encoder is not None:
        raise ValueError("mode 'supervised' trains a baseline from scratch: pass encoder=None")
    if config.mode != SUPERVISED and encoder is None:
        raise ValueError(f"mode '{config.mode}' needs a pretrained encoder, got None")
    if encoder is not None:
        encoder.build(windows.x.shape[-1])  # no-op for a pretrained encoder
    for name in ("train", "val", "test"):
        if np.any(windows.y[splits[name]] < 0):
            raise ValueError(f"split '{name}' holds unlabelled windows (y = -1)")
    check_classes(windows, splits)
    train_idx = label_subset(windows, config.label_fraction, config.seed, within=splits["train"])
    inputs = _cell_inputs(encoder, windows, {"train": train_idx, "val": splits["val"],
                                             "test": splits["test"]}, config)
    model, fits = _train_models(encoder, windows, inputs, config, after_epoch,
                                checkpoint_dir, name)
    scored = {name: _score(model, inputs, name, idx, windows, config)
              for name, idx in (("val", splits["val"]), ("test", splits["test"]))}
    history = pd.concat([pd.DataFrame(f.history).assign(member=m) for m, f in enumerate(fits)],
                        ignore_index=True)
    return CellResult(model=model, history=history, best_epochs=[f.best_epoch for f in fits],
                      val_metrics=scored["val"][0], test_metrics=scored["test"][0],
                      predictions=scored["test"][1], train_indices=train_idx, config=config,
                      n_train_available=int(len(splits["train"])),
                      resumed_from=[f.resumed_from for f in fits])


def _cell_inputs(encoder, windows, indices, config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per split ``(inputs, y)``: raw windows, or in lp the cached encoder outputs."""
    out = {}
    for name, idx in indices.items():
        x = windows.x[idx]
        if config.mode == "lp":
            reads_features = HEADS[config.head].input_kind == "features"
            x = (_features(encoder, x, config.feature_dtype) if reads_features
                 else encoder.encode(x))
        out[name] = (torch.from_numpy(np.ascontiguousarray(x)),
                     torch.from_numpy(np.asarray(windows.y[idx], dtype=np.int64)))
    return out


def _features(encoder: Encoder, x: np.ndarray, dtype: str) -> np.ndarray:
    """The encoder's time-resolved features ``[N, D', T']`` in one array of ``dtype``."""
    features = encoder.features(x, batch_size=FEATURE_BATCH, dtype=np.dtype(dtype))
    overflow = dtype == "float16" and not all(np.isfinite(features[i:i + 64]).all()
                                              for i in range(0, len(features), 64))
    if overflow:
        raise ValueError(f"encoder features overflow {dtype} (beyond +-65504): "
                         "use feature_dtype='float32'")
    return features


def _train_models(encoder, windows, inputs, config, after_epoch, checkpoint_dir=None,
                  name: str = "cell"):
    """Fit one model (or each ensemble member); returns the evaluation model and the fits.
    Member ``i`` checkpoints to ``<checkpoint_dir>/<name>-m<i>.pt`` (none without a folder)."""
    n_classes, n_timesteps = len(windows.classes), windows.x.shape[-1]
    is_ensemble = config.mode == SUPERVISED and config.head in ENSEMBLE_BASELINES
    seeds = member_seeds(config.seed, config.n_members) if is_ensemble else [config.seed]
    fits = []
    for member, seed in enumerate(seeds):
        member_config = dataclasses.replace(config, seed=seed)
        model = _fresh_model(encoder, config, n_classes, n_timesteps, seed)
        trainable = model.head if config.mode == "lp" else model
        fit = fit_classifier(trainable, inputs["train"], inputs["val"], member_config,
                             n_classes, after_epoch,
                             **checkpoint_args(checkpoint_dir, f"{name}-m{member}"))
        fits.append(dataclasses.replace(fit, model=model))
    model = HInceptionTime([f.model for f in fits]) if is_ensemble else fits[0].model
    return model, fits


def _fresh_model(encoder, config, n_classes, n_timesteps, seed) -> Classifier:
    variant = {"mlp_head": config.mlp_head} if config.head == "mlp" else {}
    if config.mode == SUPERVISED and config.head in ENSEMBLE_BASELINES:
        variant = {"shortcut": config.shortcut}
    if config.mode == SUPERVISED:
        return build_baseline(config.head, n_classes, n_timesteps, seed, **variant)
    network = encoder.trainable_network()
    if config.mode == "ft":  # the cell's generator draws the training-mode masks
        encoder.use_finetune_mask(network, config.finetune_mask, torch_generator(seed))
    torch.manual_seed(seed)  # head initial weights
    head = build_head(config.head, network, n_classes, **variant)
    return Classifier(network, head, freeze_network=config.mode == "lp")


def _score(model, inputs, name, idx, windows, config):
    """Metrics and predictions of split ``name``; lp scores the head on the cached inputs."""
    scorer = model.head if config.mode == "lp" else model
    with numerics(pick_device(config.device), config):
        logits = predict_logits(scorer, inputs[name][0],
                                prediction_batch(inputs[name][0], config),
                                pick_device(config.device), config.use_amp)
    proba = torch.softmax(logits, dim=1).numpy()
    y_true = inputs[name][1].numpy()
    frame = predictions_frame(idx, windows.groups[idx], y_true, proba, windows.classes)
    return compute_metrics(y_true, frame["y_pred"], proba, windows.classes), frame
