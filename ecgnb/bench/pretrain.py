"""``python -m ecgnb.bench pretrain|probe``: training samples/s and peak memory per backbone, and
linear probing's encoder work on cached embeddings against re-encoding every epoch.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ecgnb.config import pick_device
from ecgnb.bench.timing import best_time, in_fresh_process, peak_rss_mb, sync, synthetic_batch


def bench_backbone(name: str, n_batches: int, batch_size: int, length: int,
                   device: str | None = None, seed: int = 0, overrides: dict | None = None
                   ) -> dict:
    """Samples/s and peak memory of one backbone's training (run in a fresh process on CPU);
    ``overrides``: config fields that differ from the defaults (e.g. ``flush_denormal``)."""
    from ecgnb.models import build

    device_ = pick_device(device)
    x = synthetic_batch((n_batches + 1) * batch_size, length, seed)[:, None, :]
    enc = build(name, device=device, seed=seed, verbose=False, **(overrides or {})).build(length)
    if device_.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mb()
    enc.fit(x[:batch_size], n_epochs=1, batch_size=batch_size)  # warm-up (compile, caches)
    sync(device_)
    start = time.perf_counter()
    enc.fit(x[batch_size:], n_epochs=1, batch_size=batch_size)
    sync(device_)
    seconds = time.perf_counter() - start
    if device_.type == "cuda":
        peak, growth = torch.cuda.max_memory_allocated() / 2**20, float("nan")
    else:
        peak = peak_rss_mb()
        growth = peak - rss_before
    return dict(backbone=name, device=str(device_), samples_per_s=n_batches * batch_size / seconds,
                seconds_per_batch=seconds / n_batches, peak_mb=peak, growth_mb=growth)


def bench_pretrain(names: Sequence[str], n_batches: int, batch_size: int, length: int,
                   device: str | None = None) -> list[dict]:
    """One fresh process per backbone, so that peak memory is its own."""
    return [in_fresh_process(bench_backbone, name, n_batches, batch_size, length, device)
            for name in names]


def bench_pretrain_before(code_dir: str, names: Sequence[str], n_batches: int, batch_size: int,
                          length: int, device: str | None = None) -> dict[str, dict]:
    """The same table from another ecgnb checkout (``code_dir``, e.g. before a change), run as
    ``python -m ecgnb.bench pretrain`` with that checkout first on ``PYTHONPATH``; per backbone
    ``{samples_per_s, peak_mb}`` read back from its printed rows."""
    command = [sys.executable, "-m", "ecgnb.bench", "pretrain", "--backbones", ",".join(names),
               "--batches", str(n_batches), "--batch-size", str(batch_size),
               "--length", str(length)] + (["--device", device] if device else [])
    code_dir = Path(code_dir).resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(code_dir)] + os.environ.get("PYTHONPATH", "").split(os.pathsep))}
    # run from code_dir: ``python -m`` puts the working directory first on sys.path, so from a
    # checkout of this ecgnb it would import this one, whatever PYTHONPATH says
    printed = subprocess.run(command, env=env, cwd=code_dir, capture_output=True, text=True,
                             check=True).stdout
    rows = {}
    for line in printed.splitlines():
        fields = line.split()
        if fields and fields[0] in names and len(fields) >= 5:
            rows[fields[0]] = dict(samples_per_s=float(fields[2]), peak_mb=float(fields[4]))
    return rows


def format_pretrain(rows: list[dict], batch_size: int, length: int,
                    before: dict[str, dict] | None = None) -> str:
    lines = [f"pretraining, batch {batch_size} x [1, {length}], default configs",
             f"{'backbone':<12}{'device':<8}{'samples/s':>11}{'s/batch':>9}"
             f"{'peak MB':>10}{'growth MB':>11}"
             + (f"{'samples/s before':>18}{'peak MB before':>16}" if before else "")]
    for r in rows:
        line = (f"{r['backbone']:<12}{r['device']:<8}{r['samples_per_s']:>11.1f}"
                f"{r['seconds_per_batch']:>9.2f}{r['peak_mb']:>10.0f}{r['growth_mb']:>11.0f}")
        if before:
            old = before.get(r["backbone"], dict(samples_per_s=float("nan"), peak_mb=float("nan")))
            line += f"{old['samples_per_s']:>18.1f}{old['peak_mb']:>16.0f}"
        lines.append(line)
    return "\n".join(lines)


def bench_probe(names: Sequence[str], n_windows: int, length: int, n_epochs: int,
                device: str | None = None, seed: int = 0) -> list[dict]:
    """Encoder work of linear probing: encode the training windows once and train the linear
    head on the cached embeddings (ecgnb), against re-encoding them every epoch (the study's
    probe ran the frozen encoder inside every training step). Times one encoding pass and one
    head epoch (batch 64, Adam) per backbone and projects ``n_epochs``."""
    from ecgnb.models import build

    x = synthetic_batch(n_windows, length, seed)[:, None, :]
    rows = []
    for name in names:
        enc = build(name, device=device, seed=seed, verbose=False).build(length)
        encode_s, emb = best_time(lambda: enc.encode(x, batch_size=64), 1)
        head_s, _ = best_time(lambda: _head_epoch(emb, seed), 3)
        cached = encode_s + n_epochs * head_s
        every_epoch = n_epochs * (encode_s + head_s)
        rows.append(dict(backbone=name, encode_s=encode_s, head_epoch_s=head_s,
                         cached_s=cached, every_epoch_s=every_epoch,
                         saved=every_epoch / cached))
    return rows


def _head_epoch(embeddings: np.ndarray, seed: int, n_classes: int = 6) -> None:
    """One epoch of a linear head on cached ``embeddings [N, D]`` (batch 64, Adam)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.from_numpy(embeddings)
    y = torch.randint(0, n_classes, (len(z),), generator=gen)
    head = torch.nn.Linear(z.shape[1], n_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    for idx in torch.randperm(len(z), generator=gen).split(64):
        loss = torch.nn.functional.cross_entropy(head(z[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def format_probe(rows: list[dict], n_windows: int, length: int, n_epochs: int) -> str:
    lines = [f"linear probing, {n_windows} training windows x [1, {length}], {n_epochs} epochs, "
             f"default encoders, {torch.get_num_threads()} torch threads",
             f"{'backbone':<12}{'encode s':>10}{'head epoch s':>14}{'cached total s':>16}"
             f"{'re-encode total s':>19}{'saved':>8}"]
    for r in rows:
        lines.append(f"{r['backbone']:<12}{r['encode_s']:>10.2f}{r['head_epoch_s']:>14.4f}"
                     f"{r['cached_s']:>16.1f}{r['every_epoch_s']:>19.1f}{r['saved']:>7.0f}x")
    return "\n".join(lines)
