"""``python -m ecgnb.bench checkpoint``: what a training checkpoint costs, per backbone.

A fit of ``--batches`` batches at the study's sizes writes a checkpoint after every batch
(``checkpoint_every_s`` tiny); the table gives the checkpoint's size, the time one write takes
(temporary file, ``fsync``, rename), the time one training batch takes, and the share of training
time spent writing at the default interval (one write per 10 minutes of training) and when a
checkpoint is written after every epoch of the paper's ECG corpus (1,640 batches of 64).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

from ecgnb.bench.timing import synthetic_batch
from ecgnb.models.checkpoint import CHECKPOINT_EVERY_S

PAPER_ECG_BATCHES = 1640  # ~104,900 WESAD ECG windows / 64


def bench_checkpoint(names: Sequence[str], n_batches: int, batch_size: int, length: int,
                     device: str | None = None, seed: int = 0) -> list[dict]:
    from ecgnb.models import build

    rows = []
    x = synthetic_batch(n_batches * batch_size, length, seed)[:, None, :]
    for name in names:
        enc = build(name, device=device, seed=seed, verbose=False).build(length)
        enc.fit(x[:batch_size], n_epochs=1, batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        enc.fit(x, n_epochs=1, batch_size=batch_size)
        batch_s = (time.perf_counter() - start) / n_batches
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "fit.pt"
            enc.fit(x, n_epochs=1, batch_size=batch_size, checkpoint=path,
                    checkpoint_every_s=1e-9)
            size_mb = path.stat().st_size / 2**20
        write_s = enc.checkpoint_.seconds_writing / enc.checkpoint_.n_writes
        rows.append(dict(backbone=name, size_mb=size_mb, write_s=write_s, batch_s=batch_s,
                         share_default=write_s / (CHECKPOINT_EVERY_S + write_s),
                         share_per_epoch=write_s / (PAPER_ECG_BATCHES * batch_s + write_s)))
    return rows


def format_checkpoint(rows: list[dict], batch_size: int, length: int) -> str:
    lines = [f"checkpoint cost, batch {batch_size} x {length} samples, study sizes",
             f"{'backbone':<11}{'size MB':>9}{'write s':>9}{'batch s':>9}"
             f"{'every 600 s':>13}{'every epoch':>13}"]
    for r in rows:
        lines.append(f"{r['backbone']:<11}{r['size_mb']:>9.1f}{r['write_s']:>9.3f}"
                     f"{r['batch_s']:>9.3f}{100 * r['share_default']:>12.3f}%"
                     f"{100 * r['share_per_epoch']:>12.3f}%")
    return "\n".join(lines)
