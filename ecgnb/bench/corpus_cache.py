"""``python -m ecgnb.bench cache``: a windowed corpus built from the WESAD pickles into the cache,
then loaded from it in a new process; time, peak RSS and a checksum of the windows, each side in
its own fresh process.

The corpus is one of the study's (``ECG``: every window of the ECG channel; ``All``: 20 % of each
subject's windows of the five channels), on the paper-size data (:func:`paper_roots`). The build
goes into a fresh cache folder under the data root, removed afterwards. "Load" opens the arrays
memory-mapped and then reads every window once (a checksum), so it counts the reading too.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np

from ecgnb.bench.rehearse import own_peak_mb
from ecgnb.bench.timing import in_fresh_process

CORPORA = {"ECG": {"channels": ("ECG",), "fraction": 1.0},
           "All": {"channels": ("ECG", "EMG", "EDA", "Temp", "Resp"), "fraction": 0.2}}


def _read_corpus(wesad_root: str, cache_dir: str, corpus: str) -> dict:
    from ecgnb.data.cache import cached_wesad

    rss_before = own_peak_mb()
    start = time.perf_counter()
    windows = cached_wesad(wesad_root, fs=360.0, cache_dir=cache_dir, **CORPORA[corpus])
    opened = time.perf_counter() - start
    digest = hashlib.sha256()
    for i in range(0, len(windows), 8192):  # read every window once
        digest.update(np.ascontiguousarray(windows.x[i:i + 8192]).tobytes())
    digest.update(windows.y.tobytes() + windows.groups.tobytes() + windows.domains.tobytes())
    return {"seconds": time.perf_counter() - start, "open_s": opened,
            "n_windows": len(windows), "sha256": digest.hexdigest()[:16],
            "peak_mb": own_peak_mb(), "start_mb": rss_before}


def bench_cache(wesad_root, corpus: str = "ECG", cache_dir=None) -> dict:
    """{"build": ..., "load": ...}: the first build and a later load, each in a fresh process."""
    from ecgnb.runs import data_root

    cache_dir = Path(cache_dir or data_root() / f"cache-bench-{time.strftime('%H%M%S')}")
    try:
        build = in_fresh_process(_read_corpus, str(wesad_root), str(cache_dir), corpus)
        load = in_fresh_process(_read_corpus, str(wesad_root), str(cache_dir), corpus)
        size = sum(p.stat().st_size for p in cache_dir.rglob("*.npy"))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return {"corpus": corpus, "build": build, "load": load, "cache_gb": size / 1e9}


def format_cache(result: dict) -> str:
    lines = [f"corpus {result['corpus']}: {result['build']['n_windows']:,} windows, "
             f"{result['cache_gb']:.2f} GB of arrays in the cache",
             f"{'':<22}{'seconds':>9}{'peak RSS MB':>13}{'at start MB':>13}  windows sha256"]
    for name, label in (("build", "first build (pickles)"), ("load", "load (new process)")):
        r = result[name]
        lines.append(f"{label:<22}{r['seconds']:>9.1f}{r['peak_mb']:>13.0f}{r['start_mb']:>13.0f}"
                     f"  {r['sha256']}")
    build, load = result["build"], result["load"]
    lines.append(f"load / build: {load['seconds'] / build['seconds']:.3f} (open alone: "
                 f"{load['open_s']:.2f} s); same windows: {build['sha256'] == load['sha256']}")
    return "\n".join(lines)
