"""One downstream cell: an encoder (or none) and a labelled split in, a trained classifier and its
validation and test scores out.

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

Records of C > 1 leads: an encoder reads each lead as its own univariate series and the per-lead
outputs are joined (``lead_pooling``, :mod:`ecgnb.models.leads`); the baselines take the C leads as
input channels. Multi-label windows (``y [N, K]``) train on binary cross-entropy and are scored
by :mod:`ecgnb.evaluation.multilabel` (macro-AUROC; sample-F1 at the threshold chosen on the
validation split).

The fit is :func:`ecgnb.evaluation.train.fit_classifier`; the test split is scored once,
afterwards, with the best validation state restored.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
from torch import nn

from ecgnb.config import pick_device, torch_generator
from ecgnb.data.corpora import check_classes
from ecgnb.data.splits import label_subset
from ecgnb.evaluation.metrics import compute_metrics, predictions_frame
from ecgnb.evaluation.multilabel import choose_threshold, multilabel_frame, multilabel_metrics
from ecgnb.evaluation.settings import SUPERVISED, TrainConfig, for_task
from ecgnb.evaluation.train import AfterEpoch, fit_classifier, predict_logits, prediction_batch
from ecgnb.models.base import Encoder
from ecgnb.models.checkpoint import checkpoint_args
from ecgnb.models.heads import HEADS, Classifier, build_head
from ecgnb.models.hinception import (ENSEMBLE_BASELINES, HInceptionTime, build_baseline,
                                     member_seeds)
from ecgnb.models.leads import LeadWise, join_leads, split_leads
from ecgnb.models.precision import numerics

FEATURE_BATCH = 64  # windows per encoder pass when caching features: its activations stay small


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


def run_cell(encoder: Encoder | None, windows, splits: dict[str, np.ndarray],
             config: TrainConfig, after_epoch: AfterEpoch | None = None, checkpoint_dir=None,
             name: str = "cell") -> CellResult:
    """Train on ``splits["train"]`` (or its label subset), select on ``"val"``, score ``"test"``.
    With ``checkpoint_dir``, each fit checkpoints there as ``<name>-m<member>.pt`` and a cell run
    again resumes (:func:`fit_classifier`).

    ``encoder`` is a pretrained :class:`Encoder` (lp, ft) or ``None`` (supervised).
    ``windows`` is a labelled :class:`~ecgnb.data.Windows` (``x [N, C, T]``, ``y`` single- or
    multi-label); the test split is predicted once, with the best validation state restored.
    A multi-label task selects on macro-AUROC where ``config`` says macro-F1
    (:func:`~ecgnb.evaluation.settings.for_task`; ``result.config`` holds what was used).
    """
    if config.mode == SUPERVISED and encoder is not None:
        raise ValueError("mode 'supervised' trains a baseline from scratch: pass encoder=None")
    if config.mode != SUPERVISED and encoder is None:
        raise ValueError(f"mode '{config.mode}' needs a pretrained encoder, got None")
    config = for_task(config, windows.is_multilabel)
    if encoder is not None:
        check_length(encoder, windows)
        encoder.build(windows.x.shape[-1])  # no-op for a pretrained encoder
    labelled = windows.indicator().any(1)
    for split in ("train", "val", "test"):
        if not labelled[splits[split]].all():
            raise ValueError(f"split '{split}' holds unlabelled windows (y = -1, or no class)")
    check_classes(windows, splits)
    train_idx = label_subset(windows, config.label_fraction, config.seed, within=splits["train"])
    inputs = _cell_inputs(encoder, windows, {"train": train_idx, "val": splits["val"],
                                             "test": splits["test"]}, config)
    model, fits = _train_models(encoder, windows, inputs, config, after_epoch,
                                checkpoint_dir, name)
    scored = {"val": _score(model, inputs, "val", splits["val"], windows, config)}
    threshold = scored["val"][0].get("threshold")  # multi-label: chosen on validation
    scored["test"] = _score(model, inputs, "test", splits["test"], windows, config, threshold)
    history = pd.concat([pd.DataFrame(f.history).assign(member=m) for m, f in enumerate(fits)],
                        ignore_index=True)
    return CellResult(model=model, history=history, best_epochs=[f.best_epoch for f in fits],
                      val_metrics=scored["val"][0], test_metrics=scored["test"][0],
                      predictions=scored["test"][1], train_indices=train_idx, config=config,
                      n_train_available=int(len(splits["train"])),
                      resumed_from=[f.resumed_from for f in fits])


def check_length(encoder: Encoder, windows) -> None:
    """Refuse windows of another length than the one a length-bound encoder was built for,
    with the ``window_s`` the card needs at this ``fs``."""
    n_timesteps = windows.x.shape[-1]
    if encoder.reads_any_length or not encoder.is_built or encoder.n_timesteps_ == n_timesteps:
        return
    raise ValueError(f"{encoder.name} reads windows of {encoder.n_timesteps_} samples only (its "
                     f"pretraining length); the card's are {n_timesteps} at {windows.fs:g} Hz: "
                     f"set the card's window_s to {encoder.n_timesteps_ / windows.fs:g}")


def _cell_inputs(encoder, windows, indices, config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per split ``(inputs, y)``: raw windows, or in lp the cached encoder outputs (of each
    lead, joined); ``y`` int64 ``[N]`` or, multi-label, float32 ``[N, K]``."""
    out = {}
    for name, idx in indices.items():
        x = windows.x[idx]
        if config.mode == "lp":
            x = _encoded(encoder, x, config)
        y = (windows.indicator()[idx].astype(np.float32) if windows.is_multilabel
             else np.asarray(windows.y[idx], dtype=np.int64))
        out[name] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    return out


def _encoded(encoder: Encoder, x: np.ndarray, config) -> np.ndarray:
    """The frozen encoder's embeddings or features of ``x [N, C, T]``, each lead on its own."""
    n_leads = x.shape[1]
    x = split_leads(x) if n_leads > 1 else x
    reads_features = HEADS[config.head].input_kind == "features"
    z = _features(encoder, x, config.feature_dtype) if reads_features else encoder.encode(x)
    return join_leads(z, n_leads, config.lead_pooling) if n_leads > 1 else z


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
    n_classes, (n_leads, n_timesteps) = len(windows.classes), windows.x.shape[1:]
    is_ensemble = config.mode == SUPERVISED and config.head in ENSEMBLE_BASELINES
    seeds = member_seeds(config.seed, config.n_members) if is_ensemble else [config.seed]
    fits = []
    for member, seed in enumerate(seeds):
        member_config = dataclasses.replace(config, seed=seed)
        model = _fresh_model(encoder, config, n_classes, n_timesteps, seed, n_leads)
        trainable = model.head if config.mode == "lp" else model
        fit = fit_classifier(trainable, inputs["train"], inputs["val"], member_config,
                             n_classes, after_epoch,
                             **checkpoint_args(checkpoint_dir, f"{name}-m{member}"))
        fits.append(dataclasses.replace(fit, model=model))
    model = (HInceptionTime([f.model for f in fits], windows.is_multilabel) if is_ensemble
             else fits[0].model)
    return model, fits


def _fresh_model(encoder, config, n_classes, n_timesteps, seed, n_leads=1) -> Classifier:
    variant = {"mlp_head": config.mlp_head} if config.head == "mlp" else {}
    if config.mode == SUPERVISED and config.head in ENSEMBLE_BASELINES:
        variant = {"shortcut": config.shortcut}
    if config.mode == SUPERVISED:
        return build_baseline(config.head, n_classes, n_timesteps, seed, n_leads, **variant)
    network = encoder.trainable_network()
    if config.mode == "ft":  # the cell's generator draws the training-mode masks
        encoder.use_finetune_mask(network, config.finetune_mask, torch_generator(seed))
    if n_leads > 1:
        network = LeadWise(network, n_leads, config.lead_pooling)
    torch.manual_seed(seed)  # head initial weights
    head = build_head(config.head, network, n_classes, **variant)
    return Classifier(network, head, freeze_network=config.mode == "lp")


def _score(model, inputs, name, idx, windows, config, threshold=None):
    """Metrics and predictions of split ``name``; lp scores the head on the cached inputs.
    Multi-label: sample-F1 at ``threshold`` (``None``: the best on this split, the validation's)."""
    scorer = model.head if config.mode == "lp" else model
    with numerics(pick_device(config.device), config):
        logits = predict_logits(scorer, inputs[name][0],
                                prediction_batch(inputs[name][0], config),
                                pick_device(config.device), config.use_amp)
    y_true = inputs[name][1].numpy()
    if windows.is_multilabel:
        proba = torch.sigmoid(logits).numpy()
        threshold = choose_threshold(y_true, proba) if threshold is None else threshold
        frame = multilabel_frame(idx, windows.groups[idx], y_true, proba, windows.classes)
        return multilabel_metrics(y_true, proba, windows.classes, threshold), frame
    proba = torch.softmax(logits, dim=1).numpy()
    frame = predictions_frame(idx, windows.groups[idx], y_true, proba, windows.classes)
    return compute_metrics(y_true, frame["y_pred"], proba, windows.classes), frame
