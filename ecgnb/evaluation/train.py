"""A classifier's fit, on the one training loop (:class:`~ecgnb.models.loop.TrainingLoop`):
linear probing, fine-tuning and supervised baselines train here; :mod:`ecgnb.evaluation.cell`
runs one cell of them (data, model, fit, scores) and :mod:`ecgnb.evaluation.settings` holds what
a cell trains with.

Each epoch trains on seeded batches, then scores the *validation* split; the kept epoch is
chosen on it only (``select_on``: macro-F1 or macro-AUROC, ties -> lower loss; or the loss; or
simply the last epoch, the paper's own numbers), its state deep-copied and restored. The
training and validation losses are means over samples or, as the study's, means of per-batch means
(``loss_average``). Mixed precision (``use_amp``) only on CUDA.

Layouts: inputs ``[N, ...]`` (raw windows ``[N, C, T]`` or cached encoder outputs); labels ``y``
int64 ``[N]`` in ``0..K-1`` (single-label: cross-entropy, softmax) or float32 ``[N, K]`` 0/1
indicators (multi-label: binary cross-entropy per class, sigmoid); logits ``[B, K]``.

A training step does not wait for the device: the training and validation inputs are placed once
per fit (:class:`~ecgnb.models.device.Corpus`: on the device when they fit), an epoch's batch order
is drawn up front and copied once, the batch losses are summed on the device (float64, weighted by
batch size) and read once per epoch, and validation logits come back in one copy.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from ecgnb.config import pick_device, torch_generator
from ecgnb.evaluation.metrics import macro_auroc
from ecgnb.evaluation.multilabel import per_class_auroc
from ecgnb.evaluation.settings import TrainConfig
from ecgnb.models.best import BestState
from ecgnb.models.checkpoint import (CHECKPOINT_EVERY_S, Checkpointer, array_checksum,
                                    modules_checksum)
from ecgnb.models.device import Corpus
from ecgnb.models.heads import Classifier
from ecgnb.models.loop import Parts, TrainingLoop
from ecgnb.models.precision import numerics

AfterEpoch = Callable[[int, nn.Module], None]


@dataclasses.dataclass
class FitResult:
    """A trained model (best validation state restored), its history and best epoch (1-based)."""

    model: nn.Module
    history: list[dict]
    best_epoch: int
    resumed_from: dict | None = None  # where a checkpointed fit resumed (None: from the start)


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
    is_multilabel = train[1].dim() == 2
    if is_multilabel and config.select_on == "macro_f1":
        raise ValueError("multi-label fits select on macro_auroc, val_loss or last, not macro_f1")
    device = pick_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)  # dropout draws; data order and sampling use the generator
    criterion = _criterion(train[1], n_classes, config).to(device)
    optimizers = make_optimizers(model, config)
    base_lrs = [g["lr"] for opt in optimizers for g in opt.param_groups]
    plateaus = [torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=config.lr_factor,
                                                           patience=config.lr_patience,
                                                           min_lr=config.min_lr)
                for opt in optimizers]
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.use_amp)
    (loader, loader_gen), history, best = _train_loader(*train, config), [], BestState("min")
    inputs = {"train": (Corpus(train[0], device), Corpus(train[1], device)),
              "val": (Corpus(val[0], device).x, val[1])}
    if checkpoint is not None:
        checkpoint = Checkpointer(checkpoint, _fingerprint(model, train, val, config, n_classes),
                                  checkpoint_every_s)
    loop = TrainingLoop(
        config.n_epochs, {"model": model, "optimizers": Parts(optimizers),
                          "plateaus": Parts(plateaus), "scaler": scaler}, history,
        [loader_gen] + _generators_of(model), checkpoint, best=best, model=model,
        score=lambda r: _selection_score(r["epoch"], r["val_loss"],
                                         r.get(f"val_{config.select_on}"), config.select_on),
        patience=config.patience, desc=f"{config.mode}/{config.head}",
        show=("val_macro_auroc" if is_multilabel else "val_macro_f1",),
        verbose=config.verbose)

    def run_epoch(epoch: int, position=None, after_batch=None) -> dict:
        # the optimisers' groups as they are now: loading a checkpoint replaces them
        groups = [g for opt in optimizers for g in opt.param_groups]
        _warm_up(groups, base_lrs, epoch, config.warmup_epochs)
        start = time.perf_counter()
        train_loss = _train_epoch(model, loader, inputs["train"], criterion, optimizers, scaler,
                                  config, device)
        if after_epoch is not None:
            after_epoch(epoch, model)
        val_loss, val_scores = _validate(model, inputs["val"], criterion, config, device)
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                  **val_scores, "lr": optimizers[0].param_groups[-1]["lr"],
                  "seconds": time.perf_counter() - start}
        if epoch >= config.warmup_epochs and config.schedule != "none":
            for plateau in plateaus:
                plateau.step(val_loss if config.schedule == "plateau_val" else train_loss)
        return record

    with numerics(device, config):
        loop.run(run_epoch)
    return FitResult(model=best.restore(model), history=history, best_epoch=best.epoch,
                     resumed_from=None if checkpoint is None else checkpoint.resumed_from)


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


def _selection_score(epoch: int, val_loss: float, val_score: float | None,
                     select_on: str) -> tuple:
    """Lower is better: ``(-score, loss)`` for macro-F1 or macro-AUROC (ties -> lower loss; an
    undefined AUROC ranks last), ``(loss,)`` or, for the last epoch, ``(-epoch,)`` (every epoch
    beats the one before)."""
    if select_on == "last":
        return (-float(epoch),)
    if select_on == "val_loss":
        return (val_loss,)
    return (float("inf") if val_score is None else -val_score, val_loss)


def _criterion(y: torch.Tensor, n_classes: int, config: TrainConfig) -> nn.Module:
    """Cross-entropy; class-weighted ("balanced") when ``imbalance="weights"``. Multi-label
    (``y [N, K]``): binary cross-entropy per class, each class's positives weighted by its
    negatives / positives when ``imbalance="weights"``; ``"sampler"`` is refused (a record holds
    several classes, so no per-class draw balances them)."""
    if y.dim() == 2:
        return _multilabel_criterion(y, config)
    if config.imbalance != "weights":
        return nn.CrossEntropyLoss()
    weight = torch.tensor(class_weights(y.numpy(), n_classes), dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight)


def _multilabel_criterion(y: torch.Tensor, config: TrainConfig) -> nn.BCEWithLogitsLoss:
    if config.imbalance == "sampler":
        raise ValueError("imbalance 'sampler' draws single-label classes evenly; multi-label "
                         "targets take 'weights' (per-class pos_weight) or 'none'")
    if config.imbalance != "weights":
        return nn.BCEWithLogitsLoss()
    positives = y.double().sum(0)
    pos_weight = torch.where(positives > 0, (len(y) - positives) / positives.clamp(min=1), 1.0)
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight.float())


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


def _validate(model, val, criterion, config, device) -> tuple[float, dict]:
    """Validation loss (the mean over samples, or of the losses of consecutive batches of
    ``batch_size``, per ``loss_average``) and scores: ``val_macro_f1`` (single-label; with
    ``val_macro_auroc`` when selecting on it) or ``val_macro_auroc`` (multi-label)."""
    logits = predict_logits(model, val[0], prediction_batch(val[0], config), device,
                            config.use_amp)
    loss = _mean_loss(criterion, logits.to(device), val[1].to(device), config)
    y = val[1].numpy()
    if y.ndim == 2:
        auroc = [a for a in per_class_auroc(y, torch.sigmoid(logits).numpy()) if a is not None]
        return float(loss), {"val_macro_auroc": float(np.mean(auroc)) if auroc else None}
    f1 = f1_score(y, logits.argmax(1).numpy(), labels=np.arange(logits.shape[1]),
                  average="macro", zero_division=0)
    scores = {"val_macro_f1": float(f1)}
    if config.select_on == "macro_auroc":
        scores["val_macro_auroc"] = macro_auroc(y, torch.softmax(logits, 1).numpy())[0]
    return float(loss), scores


def _mean_loss(criterion, logits: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> float:
    if config.loss_average == "samples":
        return criterion(logits, y).item()
    batches = zip(logits.split(config.batch_size), y.split(config.batch_size))
    return torch.stack([criterion(lb, yb) for lb, yb in batches]).mean().item()
