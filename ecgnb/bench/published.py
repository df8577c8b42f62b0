"""Side-by-side training speed: our TS2Vec / TS-TCC against the published implementations.

``python -m ecgnb.bench published --ts2vec-code DIR --tstcc-code DIR`` times one training epoch of
each published code base at the study's hyper-parameters (``ecgnb.models.build`` defaults) on the
same seeded batches that :func:`ecgnb.bench.pretrain.bench_backbone` times ours on, each in a fresh process
with the same number of torch threads. The published code is *not* shipped with ecgnb: point the
options at checkouts of github.com/yuezhihan/ts2vec and github.com/emadeldeen24/TS-TCC (TS-TCC
also needs ``einops`` importable). Only their public entry points are called:

- TS2Vec: ``TS2Vec(...).fit(x [N, T, 1], n_epochs=...)`` (crops, masks, loss, AdamW, SWA update).
- TS-TCC: ``dataloader.Load_Dataset`` (which draws both augmented views once, for the whole run:
  timed separately, as ``one-time aug s``) and one ``trainer.model_train`` epoch over a shuffled
  ``DataLoader`` (both Adam optimisers as in its ``main.py``). Ours draws the views per batch,
  inside the timed epoch.

Two comparisons in one run, ``--repeats`` times (seeds 0, 1, ...): ours *as shipped* (its config
flushes denormals) against the published code *as published* (it does not), and ours against the
published code with ``torch.set_flush_denormal(True)`` set for its whole process (the same
arithmetic speed on both sides). TS2Vec's cost follows its random crops, so both sides get the
same crops: one seeded script of ``(overlap length, left, extended left, extended right)`` per
batch replaces the draws of both (the per-series shifts stay random).
"""
from __future__ import annotations

import inspect
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ecgnb.bench.pretrain import bench_backbone
from ecgnb.bench.timing import in_fresh_process, sync, synthetic_batch
from ecgnb.config import pick_device

PUBLISHED = {"ts2vec": "github.com/yuezhihan/ts2vec", "tstcc": "github.com/emadeldeen24/TS-TCC"}


def _import_from(code_dir: str | Path, marker: str) -> None:
    """Put a published checkout first on ``sys.path``; it must contain ``marker``."""
    code_dir = Path(code_dir).expanduser().resolve()
    if not (code_dir / marker).is_file():
        raise FileNotFoundError(f"{code_dir}: no {marker}; expected a checkout of the published "
                                f"code ({', '.join(PUBLISHED.values())})")
    sys.path.insert(0, str(code_dir))


def crop_script(n_batches: int, length: int, seed: int, min_overlap: int = 2) -> list[tuple]:
    """Seeded ``(crop_l, left, eleft, eright)`` per batch, drawn as both TS2Vecs draw them."""
    rng = np.random.default_rng(seed)
    script = []
    for _ in range(n_batches):
        crop_l = int(rng.integers(min_overlap, length + 1))
        left = int(rng.integers(0, length - crop_l + 1))
        script.append((crop_l, left, int(rng.integers(0, left + 1)),
                       int(rng.integers(left + crop_l, length + 1))))
    return script


def _script_published_crops(script: list[tuple]) -> None:
    """Make the published ``fit`` take its crop extents from ``script`` (its four scalar
    ``np.random.randint`` calls per batch); the per-series offsets stay random."""
    draws, randint = iter([v for crop in script for v in crop]), np.random.randint

    def scripted(*args, size=None, **kwargs):
        return randint(*args, size=size, **kwargs) if size is not None else next(draws)

    np.random.randint = scripted  # this process only runs the published fit


def _script_our_crops(script: list[tuple]) -> None:
    """Make our TS2Vec take its crop extents from ``script``; the per-series shifts stay drawn
    from the training generator."""
    from ecgnb.models import ts2vec

    crops = iter(script)

    def scripted(x: torch.Tensor, min_overlap: int, generator: torch.Generator,
                 device_generator: torch.Generator | None = None):
        """:func:`ecgnb.models.ts2vec.draw_overlapping_crops` with the extents of the script."""
        crop_l, left, eleft, eright = next(crops)
        shifts = generator if device_generator is None else device_generator
        shift = torch.randint(-eleft, x.shape[-1] - eright + 1, (x.shape[0],), generator=shifts,
                              device=shifts.device)
        return (ts2vec.take_per_row(x, shift + eleft, left + crop_l - eleft),
                ts2vec.take_per_row(x, shift + left, eright - left), crop_l)

    if (list(inspect.signature(scripted).parameters)
            != list(inspect.signature(ts2vec.draw_overlapping_crops).parameters)):
        raise TypeError("ecgnb.models.ts2vec.draw_overlapping_crops changed its parameters: "
                        "change the bench's scripted copy with it")
    ts2vec.draw_overlapping_crops = scripted  # this process only runs this measurement


def _time_ours(name: str, n_batches: int, batch_size: int, length: int, device: str | None,
               seed: int, flush: bool | None, script: list[tuple] | None) -> dict:
    """:func:`bench_backbone` as shipped (``flush=None``) or with ``flush_denormal=flush``."""
    if script is not None:
        _script_our_crops(script)
    overrides = {} if flush is None else {"flush_denormal": flush}
    return bench_backbone(name, n_batches, batch_size, length, device, seed, overrides)


def _time_published_ts2vec(code_dir: str, n_batches: int, batch_size: int, length: int,
                           device: str | None, seed: int, flush: bool = False,
                           script: list[tuple] | None = None) -> dict:
    _import_from(code_dir, "ts2vec.py")
    from ts2vec import TS2Vec  # the published class

    from ecgnb.models.ts2vec import TS2Vec as Ours, TS2VecConfig

    torch.set_flush_denormal(flush)  # a fresh process of its own: no need to restore
    if script is not None:
        _script_published_crops(script)
    cfg, device_ = TS2VecConfig(), pick_device(device)
    np.random.seed(seed)
    torch.manual_seed(seed)
    x = synthetic_batch((n_batches + 1) * batch_size, length, seed)[:, :, None]  # [N, T, 1]
    model = TS2Vec(input_dims=1, output_dims=cfg.output_dims, hidden_dims=cfg.hidden_dims,
                   depth=cfg.depth, device=str(device_), lr=Ours.FIT_DEFAULTS["lr"], batch_size=batch_size,
                   max_train_length=cfg.max_train_length, temporal_unit=cfg.temporal_unit)
    model.fit(x[:batch_size], n_epochs=1)  # warm-up batch
    sync(device_)
    start = time.perf_counter()
    model.fit(x[batch_size:], n_epochs=2)  # its epoch counter is at 1: one more epoch
    sync(device_)
    return dict(seconds=time.perf_counter() - start, setup_seconds=None)


def _tstcc_config(length: int, batch_size: int) -> SimpleNamespace:
    """The published config object, filled with our study defaults (``TSTCCConfig``); its
    ``main.py`` hard-codes the weight decay, carried here as ``weight_decay``."""
    from ecgnb.models.tstcc import TSTCC, TSTCCConfig, feature_length

    c, lr = TSTCCConfig(), TSTCC.FIT_DEFAULTS["lr"]
    return SimpleNamespace(
        input_channels=c.input_channels, kernel_size=c.kernel_size, stride=c.stride,
        final_out_channels=c.final_out_channels, num_classes=6, dropout=c.dropout,
        features_len=feature_length(length, c.kernel_size, c.stride),  # hand-set there
        beta1=c.betas[0], beta2=c.betas[1], lr=lr, weight_decay=c.weight_decay,
        drop_last=True, batch_size=batch_size,
        Context_Cont=SimpleNamespace(temperature=c.temperature,
                                     use_cosine_similarity=c.use_cosine_similarity),
        TC=SimpleNamespace(hidden_dim=c.tc_hidden_dim, timesteps=c.timesteps),
        augmentation=SimpleNamespace(jitter_scale_ratio=c.jitter_scale_ratio,
                                     jitter_ratio=c.jitter_ratio, max_seg=c.max_seg))


def _time_published_tstcc(code_dir: str, n_batches: int, batch_size: int, length: int,
                          device: str | None, seed: int, flush: bool = False,
                          script: list[tuple] | None = None) -> dict:
    torch.set_flush_denormal(flush)  # a fresh process of its own: no need to restore
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
    sync(device_)
    start = time.perf_counter()
    setup = epoch(x[batch_size:])
    sync(device_)
    return dict(seconds=time.perf_counter() - start - setup, setup_seconds=setup)


_PUBLISHED_TIMERS = {"ts2vec": _time_published_ts2vec, "tstcc": _time_published_tstcc}


def bench_published(code_dirs: dict[str, str], n_batches: int, batch_size: int, length: int,
                    device: str | None = None, repeats: int = 3) -> list[dict]:
    """One row per backbone and repeat (seed): samples/s of ours as shipped, the published code
    as published and the published code flushing denormals (``published_flush``), plus the
    published TS-TCC's one-time augmentation seconds (``setup``, else ``None``). Every
    measurement runs in a fresh process; a repeat's three measurements run back to back."""
    rows = []
    for seed in range(repeats):
        script = crop_script(n_batches + 1, length, seed)  # + the warm-up batch
        for name, code_dir in code_dirs.items():
            crops = script if name == "ts2vec" else None
            ours = in_fresh_process(_time_ours, name, n_batches, batch_size, length, device,
                                    seed, None, crops)
            row = dict(backbone=name, seed=seed, device=ours["device"], ours=ours["samples_per_s"])
            _progress(row, "ours")
            for key, flush in (("published", False), ("published_flush", True)):
                theirs = in_fresh_process(_PUBLISHED_TIMERS[name], code_dir, n_batches,
                                          batch_size, length, device, seed, flush, crops)
                row[key] = n_batches * batch_size / theirs["seconds"]
                row["setup"] = theirs["setup_seconds"]
                _progress(row, key)
            rows.append(row)
    return rows


def _progress(row: dict, key: str) -> None:
    """One line per finished measurement on stderr (a run takes minutes)."""
    print(f"{row['backbone']} seed {row['seed']} {key}: {row[key]:.2f} samples/s",
          file=sys.stderr, flush=True)


def _spread(values: list[float], unit: str = "") -> str:
    """``median [min, max]`` of the repeats."""
    return (f"{statistics.median(values):.2f}{unit} [{min(values):.2f}, {max(values):.2f}]"
            if len(values) > 1 else f"{values[0]:.2f}{unit}")


def format_published(rows: list[dict], n_batches: int, batch_size: int, length: int) -> str:
    """Per backbone: median [min, max] over repeats of each side's rate and of the two ratios
    (each ratio taken within a repeat, so both sides of it shared the machine's load)."""
    n_repeats = len({r["seed"] for r in rows})
    lines = [f"training samples/s, {n_batches} batches of {batch_size} x [1, {length}] after a "
             f"warm-up batch, study hyper-parameters, {torch.get_num_threads()} torch threads; "
             f"median [min, max] of {n_repeats} repeats",
             f"{'backbone':<10}{'ours':>26}{'published':>26}{'published+flush':>26}"
             f"{'shipped/published':>26}{'both flushing':>24}"]
    for name in dict.fromkeys(r["backbone"] for r in rows):
        mine = [r for r in rows if r["backbone"] == name]
        cols = [_spread([r[k] for r in mine]) for k in ("ours", "published", "published_flush")]
        ratios = [_spread([r["ours"] / r[k] for r in mine], "x")
                  for k in ("published", "published_flush")]
        lines.append(f"{name:<10}{cols[0]:>26}{cols[1]:>26}{cols[2]:>26}{ratios[0]:>26}"
                     f"{ratios[1]:>24}")
    setups = [r["setup"] for r in rows if r["setup"] is not None]
    if setups:
        lines.append(f"(published TS-TCC draws its augmented views once per run: "
                     f"{statistics.median(setups):.2f} s, not counted in its rate)")
    return "\n".join(lines)
