"""Stage 02, self-supervised pretraining on one scenario corpus, with its lineage record."""
from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

from ecgnb import models
from ecgnb.data import DataConfig, Windows
from ecgnb.data.corpora import corpus_record
from ecgnb.data.scenarios import UNTRAINED
from ecgnb.models.base import Encoder


# Smoke-sized networks for tests and the demo; "study" uses each backbone's published defaults.
SMALL_MODELS: dict[str, dict] = {
    "ts2vec": {"hidden_dims": 16, "output_dims": 64, "depth": 3},
    "tstcc": {"mid_channels": (16, 32), "final_out_channels": 64, "tc_n_layers": 1,
              "timesteps": 10},
    "series2vec": {"rep_size": 64, "n_heads": 4, "dim_ff": 64, "softdtw_decimate": 4},
}


@dataclasses.dataclass(frozen=True)
class PretrainConfig(DataConfig):
    """Parameters of notebooks/02_pretraining.ipynb (same names as its parameters cell)."""

    STAGE: ClassVar[str] = "pretraining"  # its ranges: ecgnb.config.STAGE_RANGES

    backbone: str = "ts2vec"
    corpus: str = "ECG"
    corpus_fraction: float | None = None  # share of each subject's windows; None: the study's
    n_windows: int = 0  # cap on training windows (seeded subsample); 0: all
    n_epochs: int = 600  # 0: no training (the "untrained" reference, at its initial weights)
    batch_size: int = 64
    lr: float | None = None  # None: the backbone's default
    model_size: str = "study"  # "study" (published sizes) or "small" (smoke tests, demo)
    model_overrides: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    device: str = "auto"


def model_config(backbone: str, model_size: str, overrides: dict) -> dict:
    """Backbone config overrides: the size preset, then the explicit overrides."""
    if model_size not in ("study", "small"):
        raise ValueError(f"model_size must be 'study' or 'small', got '{model_size}'")
    base = SMALL_MODELS.get(backbone, {}) if model_size == "small" else {}
    return {**base, **overrides}


def initial_twin(encoder: Encoder, seed: int) -> Encoder:
    """The same backbone and config with fresh weights drawn from ``seed`` (with the pretraining
    seed: the network as it was before pretraining), for a pretrained-vs-random probe."""
    config = {f.name: getattr(encoder.config, f.name) for f in dataclasses.fields(encoder.config)}
    return models.build(encoder.name, device=encoder.device, seed=seed, verbose=False, **config)


def pretrain(cfg: PretrainConfig, train: Windows, val: Windows | None = None,
             verbose: bool = True) -> Encoder:
    """Build the backbone and run SSL on ``train``; appends a lineage record."""
    overrides = model_config(cfg.backbone, cfg.model_size, cfg.model_overrides)
    if cfg.backbone == "series2vec":
        overrides.setdefault("fs", cfg.fs)
    encoder = models.build(cfg.backbone, device=cfg.device, seed=cfg.seed, verbose=verbose,
                           **overrides)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    encoder.fit(train.x, n_epochs=cfg.n_epochs, batch_size=cfg.batch_size,
                lr=cfg.lr, x_val=None if val is None else val.x,
                seed=cfg.seed)
    if cfg.n_epochs == 0:  # the "untrained" reference: say so, and keep its losses as epoch 0
        encoder.history_.append(_initial_losses(encoder, cfg, train, val))
    trained = cfg.n_epochs > 0
    encoder.lineage.append({
        "stage": "pretrain" if trained else "untrained", "scenario": cfg.corpus if trained else
        UNTRAINED, "corpus": corpus_record(cfg.corpus, train) if trained else None,
        "epochs": cfg.n_epochs, "seed": cfg.seed, "parent": None, "parent_hash": None,
        "selection": "last epoch" if trained else f"initial weights (seed {cfg.seed}), no training",
        "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "weights_hash": encoder.weights_hash()})
    return encoder


def _initial_losses(encoder: Encoder, cfg: PretrainConfig, train: Windows,
                    val: Windows | None) -> dict:
    record = {"epoch": 0, "loss": encoder.evaluate_loss(train.x, cfg.batch_size, cfg.seed),
              "seconds": 0.0}
    if val is not None:
        record["val_loss"] = encoder.evaluate_loss(val.x, cfg.batch_size, cfg.seed)
    return record
