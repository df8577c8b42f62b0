"""Side-by-side training speed: our TS2Vec / TS-TCC against the published implementations.

``python -m ecgnb.bench published --ts2vec-code DIR --tstcc-code DIR`` times one training epoch of
each published code base at the study's hyper-parameters (``ecgnb.models.build`` defaults) on the
same seeded batches that :func:`ecgnb.bench.bench_backbone` times ours on, each in a fresh process
with the same number of torch threads. The published code is *not* shipped with ecgnb: point the
options at checkouts of github.com/yuezhihan/ts2vec and github.com/emadeldeen24/TS-TCC (TS-TCC
also needs ``einops`` importable). Only their public entry points are called:

- TS2Vec: ``TS2Vec(...).fit(x [N, T, 1], n_epochs=...)`` (crops, masks, loss, AdamW, SWA update).
- TS-TCC: ``dataloader.Load_Dataset`` (which draws both augmented views once, for the whole run:
  timed separately, as ``one-time aug s``) and one ``trainer.model_train`` epoch over a shuffled
  ``DataLoader`` (both Adam optimisers as in its ``main.py``). Ours draws the views per batch,
  inside the timed epoch.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ecgnb.bench import _sync, bench_backbone, in_fresh_process, synthetic_batch
from ecgnb.config import pick_device

PUBLISHED = {"ts2vec": "github.com/yuezhihan/ts2vec", "tstcc": "github.com/emadeldeen24/TS-TCC"}


def _import_from(code_dir: str | Path, marker: str) -> None:
    """Put a published checkout first on ``sys.path``; it must contain ``marker``."""
    code_dir = Path(code_dir).expanduser().resolve()
    if not (code_dir / marker).is_file():
        raise FileNotFoundError(f"{code_dir}: no {marker}; expected a checkout of the published "
                                f"code ({', '.join(PUBLISHED.values())})")
    sys.path.insert(0, str(code_dir))


def _time_published_ts2vec(code_dir: str, n_batches: int, batch_size: int, length: int,
                           device: str | None, seed: int) -> dict:
    _import_from(code_dir, "ts2vec.py")
    from ts2vec import TS2Vec  # the published class

    from ecgnb.models.ts2vec import TS2VecConfig

    cfg, device_ = TS2VecConfig(), pick_device(device)
    np.random.seed(seed)
    torch.manual_seed(seed)
    x = synthetic_batch((n_batches + 1) * batch_size, length, seed)[:, :, None]  # [N, T, 1]
    model = TS2Vec(input_dims=1, output_dims=cfg.output_dims, hidden_dims=cfg.hidden_dims,
                   depth=cfg.depth, device=str(device_), lr=cfg.lr, batch_size=batch_size,
                   max_train_length=cfg.max_train_length, temporal_unit=cfg.temporal_unit)
    model.fit(x[:batch_size], n_epochs=1)  # warm-up batch
    _sync(device_)
    start = time.perf_counter()
    model.fit(x[batch_size:], n_epochs=2)  # its epoch counter is at 1: one more epoch
    _sync(device_)
    return dict(seconds=time.perf_counter() - start, setup_seconds=None)


def _tstcc_config(length: int, batch_size: int) -> SimpleNamespace:
    """The published config object, filled with our study defaults (``TSTCCConfig``); its
    ``main.py`` hard-codes the weight decay, carried here as ``weight_decay``."""
    from ecgnb.models.tstcc import TSTCCConfig, feature_length

    c = TSTCCConfig()
    return SimpleNamespace(
        input_channels=c.input_channels, kernel_size=c.kernel_size, stride=c.stride,
        final_out_channels=c.final_out_channels, num_classes=6, dropout=c.dropout,
        features_len=feature_length(length, c.kernel_size, c.stride),  # hand-set there
        beta1=c.betas[0], beta2=c.betas[1], lr=c.lr, weight_decay=c.weight_decay,
        drop_last=True, batch_size=batch_size,
        Context_Cont=SimpleNamespace(temperature=c.temperature,
                                     use_cosine_similarity=c.use_cosine_similarity),
        TC=SimpleNamespace(hidden_dim=c.tc_hidden_dim, timesteps=c.timesteps),
        augmentation=SimpleNamespace(jitter_scale_ratio=c.jitter_scale_ratio,
                                     jitter_ratio=c.jitter_ratio, max_seg=c.max_seg))


def _time_published_tstcc(code_dir: str, n_batches: int, batch_size: int, length: int,
                          device: str | None, seed: int) -> dict:
    _import_from(code_dir, "trainer/trainer.py")
    from dataloader.dataloader import Load_Dataset  # the published modules
    from models.model import base_Model
    from models.TC import TC
    from trainer.trainer import model_train

    cfg, device_ = _tstcc_config(length, batch_size), pick_device(device)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model, temporal = base_Model(cfg).to(device_), TC(cfg, device_).to(device_)
    optimizers = [torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                   weight_decay=cfg.weight_decay) for m in (model, temporal)]
    x = torch.from_numpy(synthetic_batch((n_batches + 1) * batch_size, length, seed)[:, None, :])

    def epoch(samples: torch.Tensor) -> float:
        start = time.perf_counter()
        data = Load_Dataset({"samples": samples, "labels": torch.zeros(len(samples))}, cfg,
                            "self_supervised")
        setup = time.perf_counter() - start
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                             drop_last=True)
        model_train(model, temporal, *optimizers, torch.nn.CrossEntropyLoss(), loader, cfg,
                    device_, "self_supervised")
        return setup

    epoch(x[:batch_size])  # warm-up batch
    _sync(device_)
    start = time.perf_counter()
    setup = epoch(x[batch_size:])
    _sync(device_)
    return dict(seconds=time.perf_counter() - start - setup, setup_seconds=setup)


_PUBLISHED_TIMERS = {"ts2vec": _time_published_ts2vec, "tstcc": _time_published_tstcc}


def bench_published(code_dirs: dict[str, str], n_batches: int, batch_size: int, length: int,
                    device: str | None = None, seed: int = 0) -> list[dict]:
    """Rows ``{backbone, ours, published, setup}`` in samples/s (setup: seconds of the published
    TS-TCC's one-time augmentation, else ``None``); every measurement in a fresh process."""
    rows = []
    for name, code_dir in code_dirs.items():
        ours = in_fresh_process(bench_backbone, name, n_batches, batch_size, length, device, seed)
        theirs = in_fresh_process(_PUBLISHED_TIMERS[name], code_dir, n_batches, batch_size,
                                  length, device, seed)
        rows.append(dict(backbone=name, device=ours["device"], ours=ours["samples_per_s"],
                         published=n_batches * batch_size / theirs["seconds"],
                         setup=theirs["setup_seconds"]))
    return rows


def format_published(rows: list[dict], n_batches: int, batch_size: int, length: int) -> str:
    lines = [f"training samples/s, {n_batches} batches of {batch_size} x [1, {length}] after a "
             f"warm-up batch, study hyper-parameters, {torch.get_num_threads()} torch threads",
             f"{'backbone':<10}{'device':<8}{'ours':>9}{'published':>11}{'ours/published':>17}"
             f"{'one-time aug s':>16}"]
    for r in rows:
        setup = "-" if r["setup"] is None else f"{r['setup']:.2f}"
        lines.append(f"{r['backbone']:<10}{r['device']:<8}{r['ours']:>9.1f}{r['published']:>11.1f}"
                     f"{r['ours'] / r['published']:>16.2f}x{setup:>16}")
    return "\n".join(lines)
