"""``python -m ecgnb.bench probe-memory``: peak resident memory of a linear-probe cell's cached
inputs, one fresh process per backbone.

The FCN head reads time-resolved features (``[N, D', T']``: TS2Vec 320 x 720, Series2Vec
640 x 711 at 720-sample windows), cached once per split by ``run_cell``; at the study's sizes
they are the largest thing a downstream cell holds. The bench builds a default encoder (its
weights do not change the memory), caches the three splits' inputs as ``run_cell`` does and
reports the process's peak resident set size after caching and after training the FCN head on the
cache (one epoch by default), beside the bytes the cache itself holds.
"""
from __future__ import annotations

import types
from typing import Sequence

import numpy as np

from ecgnb.bench.timing import in_fresh_process, peak_rss_mb, synthetic_batch

SPLIT_SHARES = {"train": 0.65, "val": 0.15, "test": 0.20}  # the recipe's record shares


def probe_cache_peak(name: str, n_windows: int, length: int, head: str = "fcn",
                     overrides: dict | None = None, n_epochs: int = 0, seed: int = 0) -> dict:
    """Peak RSS (MB) of caching one lp cell's inputs for ``n_windows`` windows (this process),
    then of training the head ``n_epochs`` epochs on them (batch 64)."""
    from ecgnb.evaluation.cell import _cell_inputs
    from ecgnb.evaluation.settings import TrainConfig
    from ecgnb.evaluation.train import fit_classifier
    from ecgnb.models.heads import build_head
    from ecgnb.models import build

    x = synthetic_batch(n_windows, length, seed)[:, None, :]
    windows = types.SimpleNamespace(x=x, y=np.arange(n_windows) % 6, is_multilabel=False)
    cuts = np.cumsum([round(share * n_windows) for share in SPLIT_SHARES.values()])[:-1]
    indices = dict(zip(SPLIT_SHARES, np.split(np.arange(n_windows), cuts)))
    encoder = build(name, device="cpu", seed=seed, verbose=False).build(length)
    config = TrainConfig(head=head, mode="lp", backbone=name, device="cpu", verbose=False,
                         **(overrides or {}))
    before = peak_rss_mb()
    inputs = _cell_inputs(encoder, windows, indices, config)
    cached = sum(part[0].numel() * part[0].element_size() for part in inputs.values())
    cache_peak = peak_rss_mb()
    if n_epochs:
        fit_classifier(build_head(head, encoder.network_, 6), inputs["train"], inputs["val"],
                       TrainConfig(**{**vars(config), "n_epochs": n_epochs, "patience": 0}), 6)
    return dict(cache_peak_mb=cache_peak, n_epochs=n_epochs, backbone=name, n_windows=n_windows, shape=tuple(inputs["train"][0].shape[1:]),
                cached_mb=cached / 2**20, start_mb=before, peak_mb=peak_rss_mb(),
                setting=", ".join(f"{k}={v}" for k, v in (overrides or {}).items()) or "default")


def bench_probe_memory(names: Sequence[str], n_windows: int, length: int,
                       overrides: dict | None = None, n_epochs: int = 1) -> list[dict]:
    return [in_fresh_process(probe_cache_peak, name, n_windows, length, "fcn", overrides,
                             n_epochs) for name in names]


def format_probe_memory(rows: list[dict], length: int) -> str:
    lines = [f"linear probe (fcn head): cached inputs of train/val/test "
             f"({'/'.join(f'{s:.0%}' for s in SPLIT_SHARES.values())}), windows [1, {length}], "
             "fresh process per row",
             f"{'backbone':<12}{'N':>6}{'features':>12}{'cache MB':>10}{'start MB':>10}"
             f"{'cached peak':>12}{'+ head epochs':>14}{'peak MB':>9}  setting"]
    for r in rows:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"{r['backbone']:<12}{r['n_windows']:>6}{shape:>12}{r['cached_mb']:>10.0f}"
                     f"{r['start_mb']:>10.0f}{r['cache_peak_mb']:>12.0f}{r['n_epochs']:>14}"
                     f"{r['peak_mb']:>9.0f}  {r['setting']}")
    return "\n".join(lines)
