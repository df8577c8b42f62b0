"""Stage 02, self-supervised pretraining on one scenario corpus, with its lineage record."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from sklearn.model_selection import GroupShuffleSplit

from ecgnb import corpora, models
from ecgnb.data import Windows, load_fragment, split_grouped
from ecgnb.models.base import Encoder


# Smoke-sized networks for tests and the demo; "study" uses each backbone's published defaults.
SMALL_MODELS: dict[str, dict] = {
    "ts2vec": {"hidden_dims": 16, "output_dims": 64, "depth": 3},
    "tstcc": {"mid_channels": (16, 32), "final_out_channels": 64, "tc_n_layers": 1,
              "timesteps": 10},
    "series2vec": {"rep_size": 64, "n_heads": 4, "dim_ff": 64, "softdtw_decimate": 4},
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data come from and how the target task is split (shared by stages 02-05)."""

    fragment_root: str = ""  # empty: embedded default data
    wesad_root: str = ""
    data_seed: int = 0
    use_small_data: bool = True
    fs: float = 360.0
    split_seed: int = 0


@dataclasses.dataclass(frozen=True)
class PretrainConfig(DataConfig):
    """Parameters of notebooks/02_pretraining.ipynb (same names as its parameters cell)."""

    backbone: str = "ts2vec"
    corpus: str = "ECG"
    corpus_fraction: float = -1.0  # share of each subject's windows; -1: the study's default
    n_windows: int = 0  # cap on training windows (seeded subsample); 0: all
    n_epochs: int = 600
    batch_size: int = 64
    lr: float = -1.0  # -1: the backbone's default
    model_size: str = "study"  # "study" (published sizes) or "small" (smoke tests, demo)
    model_overrides: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    device: str = "auto"


def target_task(data: DataConfig) -> tuple[Windows, dict[str, np.ndarray]]:
    """The target fragments and their grouped train/val/test split (same split everywhere)."""
    roots = corpora.data_roots(data.fragment_root, data.wesad_root, data.data_seed,
                               data.use_small_data)
    fragments = load_fragment(roots["fragment"], fs=data.fs)
    return fragments, split_grouped(fragments, seed=data.split_seed)


def load_corpus(name: str, data: DataConfig, fraction: float = -1.0, n_windows: int = 0,
                channels=None, seed: int = 0) -> tuple[Windows, Windows]:
    """(train, validation) windows of corpus ``name``; validation = the held-out last subject
    for WESAD-based corpora, a grouped 20 % of the target training records for ``target``."""
    roots = corpora.data_roots(data.fragment_root, data.wesad_root, data.data_seed,
                               data.use_small_data)
    base, with_target = corpora.parse_corpus(name)
    fragments = splits = None
    if with_target or base == "target":
        fragments, splits = target_task(data)
    corpus = corpora.build_corpus(name, roots["wesad"], fragments, splits, fs=data.fs,
                                  fraction=None if fraction < 0 else fraction,
                                  channels=channels, seed=seed)
    if base == "target":
        train, val = holdout_groups(corpus, share=0.2, seed=seed)
    else:
        train, val = corpora.holdout_subject(corpus)
    return cap(train, n_windows, seed), cap(val, n_windows // 4 if n_windows else 0, seed)


def holdout_groups(windows: Windows, share: float, seed: int) -> tuple[Windows, Windows]:
    """(rest, held-out) with about ``share`` of the groups held out, never split."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    rest, held = next(splitter.split(windows.x, groups=windows.groups))
    return windows.subset(np.sort(rest)), windows.subset(np.sort(held))


def cap(windows: Windows, n_windows: int, seed: int) -> Windows:
    """A seeded random subsample of at most ``n_windows`` windows (0: keep all)."""
    if not n_windows or len(windows) <= n_windows:
        return windows
    idx = np.random.default_rng(seed).choice(len(windows), size=n_windows, replace=False)
    return windows.subset(np.sort(idx))


def corpus_record(name: str, windows: Windows) -> dict:
    domains, counts = np.unique(windows.domains, return_counts=True)
    return {"name": name, "n_windows": len(windows), "domains": dict(zip(domains.tolist(),
                                                                        counts.tolist())),
            "n_groups": len(set(windows.groups))}


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
    device = None if cfg.device == "auto" else cfg.device
    overrides = model_config(cfg.backbone, cfg.model_size, cfg.model_overrides)
    if cfg.backbone == "series2vec":
        overrides.setdefault("fs", cfg.fs)
    encoder = models.build(cfg.backbone, device=device, seed=cfg.seed, verbose=verbose,
                           **overrides)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    encoder.fit(train.x, n_epochs=cfg.n_epochs, batch_size=cfg.batch_size,
                lr=None if cfg.lr < 0 else cfg.lr, x_val=None if val is None else val.x,
                seed=cfg.seed)
    encoder.lineage.append({
        "stage": "pretrain", "scenario": cfg.corpus, "corpus": corpus_record(cfg.corpus, train),
        "epochs": cfg.n_epochs, "seed": cfg.seed, "parent": None, "parent_hash": None,
        "selection": "last epoch", "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "weights_hash": encoder.weights_hash()})
    return encoder
