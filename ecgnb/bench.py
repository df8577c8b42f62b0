"""Benchmarks (a script, not a test): ``python -m ecgnb.bench softdtw|pretrain|published|probe``.

- ``softdtw``: pairwise soft-DTW of one batch ``[B, T]`` with our numba kernel (CPU, all cores),
  our torch anti-diagonal path (CPU, and CUDA when present) and tslearn's ``cdist_soft_dtw``;
  wall time (best of ``--repeats``, compile/warm-up excluded), speed-up over tslearn and the
  largest element-wise relative difference.
- ``pretrain``: per backbone (``ecgnb.models.build`` defaults), training samples/s over
  ``--batches`` batches after one warm-up batch, and peak memory: CUDA
  ``max_memory_allocated``; CPU the peak resident set size of a fresh process per backbone
  (``resource.getrusage``), and its growth from the start of the warm-up batch (the memory
  training adds on top of the built model and the data).
  ``--before DIR`` adds the rate and peak memory of another ecgnb checkout (before a change).
- ``published``: our TS2Vec and TS-TCC against checkouts of the published code, side by side
  (:mod:`ecgnb.bench_published`), as shipped and with both sides flushing denormals.
- ``probe``: linear probing's encoder work on cached embeddings against re-encoding every epoch.
Timing inputs are seeded synthetic windows (sines + noise, z-scored). Output is a plain table.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ecgnb.config import pick_device


def synthetic_batch(n_series: int, length: int, seed: int = 0) -> np.ndarray:
    """Seeded, z-scored sines plus noise: float32 ``[n_series, length]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    rate, phase = rng.uniform(1, 6, (n_series, 1)), rng.uniform(0, 1, (n_series, 1))
    x = np.sin(2 * np.pi * (rate * t + phase))
    x = x + 0.3 * rng.normal(size=x.shape)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    return x.astype(np.float32)


def best_time(run: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
              ) -> tuple[float, object]:
    """Smallest wall time of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        result = run()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), result


def max_relative_difference(values, reference) -> float:
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    return float(np.max(np.abs(values - reference) / np.maximum(np.abs(reference), 1e-300)))


# --------------------------------------------------------------------------- soft-DTW
def bench_softdtw(n_series: int, length: int, gamma: float, repeats: int, paths: Sequence[str],
                  torch_cpu_series: int = 16, seed: int = 0) -> list[dict]:
    """Rows ``{path, seconds, values [n, n], note}`` for each requested path on one batch.

    The torch path on CPU (it exists for CUDA) is timed on the first ``torch_cpu_series``
    series only; rates are compared in pairs/s.
    """
    from ecgnb.models.softdtw import set_cpu_threads, soft_dtw_numba, soft_dtw_torch

    x = synthetic_batch(n_series, length, seed).astype(np.float64)
    rows = []
    if "numba" in paths:
        n_threads = set_cpu_threads(os.cpu_count())
        start = time.perf_counter()
        soft_dtw_numba(x[:2, :8], gamma)  # compile, or load the on-disk cache
        warm = time.perf_counter() - start
        seconds, values = best_time(lambda: soft_dtw_numba(x, gamma), repeats)
        rows.append(dict(path=f"ours numba CPU ({n_threads} threads)", seconds=seconds,
                         values=values, note=f"best of {repeats}; first call {warm:.1f}s"))
    if "torch" in paths:
        rows.append(_bench_torch_cpu(x[:torch_cpu_series], gamma))
    if "torch" in paths and torch.cuda.is_available():
        x_gpu = torch.from_numpy(x).cuda()
        soft_dtw_torch(x_gpu[:2, :8], gamma)
        seconds, values = best_time(lambda: soft_dtw_torch(x_gpu, gamma), repeats,
                                    torch.cuda.synchronize)
        rows.append(dict(path=f"ours torch {torch.cuda.get_device_name()}", seconds=seconds,
                         values=values.cpu().numpy(), note=f"best of {repeats}"))
    if "tslearn" in paths:
        rows.append(_bench_tslearn(x, gamma))
    return rows


def _bench_torch_cpu(x: np.ndarray, gamma: float) -> dict:
    """The torch path on CPU, single-threaded: its ~20 small ops per anti-diagonal would
    otherwise pay an OpenMP fork/join each, which dominates (and collapses on a busy machine)."""
    from ecgnb.models.softdtw import soft_dtw_torch

    x_cpu, n_threads = torch.from_numpy(x), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        soft_dtw_torch(x_cpu[:2, :8], gamma)
        seconds, values = best_time(lambda: soft_dtw_torch(x_cpu, gamma).numpy(), 1)
    finally:
        torch.set_num_threads(n_threads)
    return dict(path="ours torch CPU (1 thread)", seconds=seconds, values=values,
                note=f"B={len(x_cpu)}, 1 run")


def _bench_tslearn(x: np.ndarray, gamma: float) -> dict:
    from tslearn.metrics import cdist_soft_dtw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cdist_soft_dtw(x[:2, :8, None], gamma=gamma)  # compile its numba kernels
        seconds, values = best_time(lambda: cdist_soft_dtw(x[..., None], gamma=gamma), 1)
    return dict(path="tslearn cdist_soft_dtw (1 thread)", seconds=seconds, values=values,
                note="1 run")


def pairs_per_second(row: dict) -> float:
    n_series = len(row["values"])
    return n_series * (n_series + 1) / 2 / row["seconds"]


def format_softdtw(rows: list[dict], length: int, gamma: float) -> str:
    """Table: seconds, pairs/s (upper triangle incl. diagonal), speed-up and max rel diff."""
    reference = next((r for r in rows if r["path"].startswith("tslearn")), None)
    lines = [f"pairwise soft-DTW, T={length}, gamma={gamma} (pairs: upper triangle + diagonal)",
             f"{'path':<40}{'B':>4}{'seconds':>10}{'pairs/s':>10}{'speed-up':>10}"
             f"{'max rel diff':>14}  note"]
    for row in rows:
        speed_up = max_diff = "-"
        if reference is not None:
            n = len(row["values"])
            speed_up = f"{pairs_per_second(row) / pairs_per_second(reference):.1f}x"
            max_diff = f"{max_relative_difference(row['values'], reference['values'][:n, :n]):.1e}"
        lines.append(f"{row['path']:<40}{len(row['values']):>4}{row['seconds']:>10.3f}"
                     f"{pairs_per_second(row):>10.1f}{speed_up:>10}{max_diff:>14}  {row['note']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- pretraining
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
    rss_before = _peak_rss_mb()
    enc.fit(x[:batch_size], n_epochs=1, batch_size=batch_size)  # warm-up (compile, caches)
    _sync(device_)
    start = time.perf_counter()
    enc.fit(x[batch_size:], n_epochs=1, batch_size=batch_size)
    _sync(device_)
    seconds = time.perf_counter() - start
    if device_.type == "cuda":
        peak, growth = torch.cuda.max_memory_allocated() / 2**20, float("nan")
    else:
        peak = _peak_rss_mb()
        growth = peak - rss_before
    return dict(backbone=name, device=str(device_), samples_per_s=n_batches * batch_size / seconds,
                seconds_per_batch=seconds / n_batches, peak_mb=peak, growth_mb=growth)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def in_fresh_process(fn: Callable, *args):
    """``fn(*args)`` in a freshly spawned process: clean imports, its own peak memory and threads."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(code_dir).resolve())] + os.environ.get("PYTHONPATH", "").split(os.pathsep))}
    printed = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
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


# --------------------------------------------------------------------------- linear probing
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


# --------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ecgnb.bench",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sdtw = sub.add_parser("softdtw", help="pairwise soft-DTW: ours vs tslearn")
    sdtw.add_argument("--batch", type=int, default=64)
    sdtw.add_argument("--length", type=int, default=720)
    sdtw.add_argument("--repeats", type=int, default=3)
    sdtw.add_argument("--gamma", type=float, default=0.1)
    sdtw.add_argument("--paths", default="numba,torch,tslearn",
                      help="comma-separated subset of numba,torch,tslearn")
    sdtw.add_argument("--torch-cpu-batch", type=int, default=16,
                      help="series used to time the torch path on CPU (it is the CUDA path)")
    pre = sub.add_parser("pretrain", help="training samples/s and peak memory per backbone")
    pre.add_argument("--backbones", default="ts2vec,tstcc,series2vec")
    pre.add_argument("--batches", type=int, default=5)
    pre.add_argument("--batch-size", type=int, default=64)
    pre.add_argument("--length", type=int, default=720)
    pre.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    pre.add_argument("--before", default=None,
                     help="another ecgnb checkout (e.g. before a change): its rate and peak "
                          "memory as extra columns")
    probe = sub.add_parser("probe", help="linear probing: cached embeddings vs re-encoding "
                                         "every epoch")
    probe.add_argument("--backbones", default="ts2vec,tstcc,series2vec")
    probe.add_argument("--windows", type=int, default=1024)
    probe.add_argument("--epochs", type=int, default=300, help="TrainConfig's default")
    probe.add_argument("--length", type=int, default=720)
    probe.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    pub = sub.add_parser("published", help="TS2Vec / TS-TCC training speed: ours vs the "
                                            "published code (checkouts you point to)")
    pub.add_argument("--ts2vec-code", default=None, help="checkout of yuezhihan/ts2vec")
    pub.add_argument("--tstcc-code", default=None, help="checkout of emadeldeen24/TS-TCC")
    pub.add_argument("--batches", type=int, default=10)
    pub.add_argument("--repeats", type=int, default=3,
                     help="seeds; each repeats the three measurements back to back")
    pub.add_argument("--batch-size", type=int, default=64)
    pub.add_argument("--length", type=int, default=720)
    pub.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    args = parser.parse_args(argv)
    if args.command == "published" and not (args.ts2vec_code or args.tstcc_code):
        parser.error("published: give --ts2vec-code and/or --tstcc-code")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "softdtw":
        paths = [p.strip() for p in args.paths.split(",") if p.strip()]
        rows = bench_softdtw(args.batch, args.length, args.gamma, args.repeats, paths,
                             torch_cpu_series=args.torch_cpu_batch)
        print(format_softdtw(rows, args.length, args.gamma))
    elif args.command == "published":
        from ecgnb.bench_published import bench_published, format_published

        code_dirs = {name: path for name, path in (("ts2vec", args.ts2vec_code),
                                                   ("tstcc", args.tstcc_code)) if path}
        rows = bench_published(code_dirs, args.batches, args.batch_size, args.length, args.device,
                               args.repeats)
        print(format_published(rows, args.batches, args.batch_size, args.length))
    elif args.command == "probe":
        names = [n.strip() for n in args.backbones.split(",") if n.strip()]
        rows = bench_probe(names, args.windows, args.length, args.epochs, args.device)
        print(format_probe(rows, args.windows, args.length, args.epochs))
    else:
        names = [n.strip() for n in args.backbones.split(",") if n.strip()]
        rows = bench_pretrain(names, args.batches, args.batch_size, args.length, args.device)
        before = (bench_pretrain_before(args.before, names, args.batches, args.batch_size,
                                        args.length, args.device) if args.before else None)
        print(format_pretrain(rows, args.batch_size, args.length, before))


if __name__ == "__main__":
    main()
