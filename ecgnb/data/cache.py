"""Windowed WESAD corpora cached on disk: decoded, windowed and normalised once, then memory-mapped.

A corpus is what :func:`~ecgnb.data.formats.load_wesad` returns for one set of settings: the
subject pickles decimated, windowed, z-scored, resampled and, for ``fraction`` < 1, reduced to the
seeded, label-stratified share of each subject. It is written as ``.npy`` arrays and a small JSON
under ``<data root>/cache/wesad-<key>/``::

    x.npy        float32 [N, 1, T], opened memory-mapped
    y.npy        int64 [N]
    groups.npy   str [N] (subject)
    domains.npy  str [N] (channel)
    meta.json    classes, fs, shape, the byte size of each array, the sources and settings, the
                 data warnings of the build (raised again on every read)

The key is a hash of the identity of every pickle read (resolved path, size, mtime_ns), the
channels, fs, window_s, stride, fraction, seed and :data:`CACHE_VERSION`: a changed pickle gives
another key, hence a rebuild. Concurrent runs that need the same corpus take an exclusive
``fcntl.flock`` on ``wesad-<key>.lock``; the first builds, the others wait, then read. A build
writes into a temporary folder, fsyncs it and renames it into place, so a reader only ever sees a
complete folder; a folder that fails its checks (a missing or truncated array, unreadable JSON)
is deleted and rebuilt, and temporary folders left by a killed build are removed.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ecgnb.config import DataWarning, fsync_file, fsync_folder
from ecgnb.data.formats import WESAD_CLASSES, wesad_paths, wesad_windows
from ecgnb.data.windows import DataError, Windows
from ecgnb.runs import data_root

CACHE_VERSION = "1"  # bump when the windowing in ecgnb.data.formats changes its output
CACHE_FOLDER = "cache"
META = "meta.json"
ARRAYS = ("x", "y", "groups", "domains")


def cache_root() -> Path:
    """Where cached corpora live: ``<data root>/cache`` (``ECGNB_DATA`` moves it)."""
    return data_root() / CACHE_FOLDER


def cached_wesad(root, channels: Sequence[str] = ("ECG",), fs: float = 360.0,
                 window_s: float = 2.0, stride: float = 0.2,
                 subjects: Sequence[str] | None = None, fraction: float = 1.0, seed: int = 0,
                 cache_dir=None) -> Windows:
    """``load_wesad(root, ...)`` read from the cache, built there first if needed.

    ``x`` is memory-mapped copy-on-write: pages are read from the file when used, and a write
    changes this process's copy, never the file."""
    paths = wesad_paths(root, subjects)
    settings = {"channels": list(channels), "fs": float(fs), "window_s": float(window_s),
                "stride": float(stride), "fraction": float(fraction), "seed": int(seed)}
    sources = [source_identity(p) for p in paths]
    folder = corpus_folder(sources, settings, cache_dir)
    windows = read_corpus(folder)
    if windows is None:
        with exclusive_lock(folder.parent / f"{folder.name}.lock"):
            windows = read_corpus(folder)  # another process may have built it meanwhile
            if windows is None:
                _discard(folder)
                build_corpus_folder(folder, paths, sources, settings)
                windows = read_corpus(folder)
    if windows is None:
        raise DataError(f"{folder}: the cached corpus just built does not read back; delete "
                        "the folder and run again")
    return windows


def corpus_folder(sources: list, settings: dict, cache_dir=None) -> Path:
    """The cache folder of the corpus of ``sources`` windowed with ``settings``."""
    return Path(cache_dir or cache_root()) / f"wesad-{corpus_key(sources, settings)}"


def source_identity(path: Path) -> list:
    """[resolved path, size in bytes, mtime in ns] of one source file."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def corpus_key(sources: list, settings: dict) -> str:
    """16 hex digits naming the corpus of ``sources`` windowed with ``settings``."""
    text = json.dumps({"version": CACHE_VERSION, "sources": sources, "settings": settings},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- read
def read_corpus(folder: Path) -> Windows | None:
    """The cached corpus in ``folder``; None when it is absent or fails a check."""
    try:
        meta = json.loads((folder / META).read_text())
        for name in ARRAYS:
            if (folder / f"{name}.npy").stat().st_size != meta["bytes"][name]:
                return None
        x = np.load(folder / "x.npy", mmap_mode="c")
        arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAYS[1:]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if list(x.shape) != meta["shape"] or x.dtype != np.float32 \
            or any(len(a) != len(x) for a in arrays.values()):
        return None
    for message in meta.get("warnings", []):
        warnings.warn(message, DataWarning, stacklevel=3)
    return Windows(x=x, y=arrays["y"], groups=arrays["groups"], domains=arrays["domains"],
                   fs=float(meta["fs"]), classes=tuple(meta["classes"]))


# --------------------------------------------------------------------------- build
def build_corpus_folder(folder: Path, paths: list[Path], sources: list, settings: dict) -> None:
    """Window every subject into a temporary folder, one subject in memory at a time, then
    fsync and rename it to ``folder``."""
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            parts = _write_parts(tmp, paths, settings)
        meta = _assemble(tmp, parts, settings)
        meta.update(sources=sources, settings=settings, version=CACHE_VERSION,
                    build_s=round(time.perf_counter() - start, 2),
                    warnings=[str(w.message) for w in caught
                              if issubclass(w.category, DataWarning)])
        (tmp / META).write_text(json.dumps(meta, indent=1))
        for path in tmp.iterdir():
            fsync_file(path)
        fsync_folder(tmp)
        os.rename(tmp, folder)
        fsync_folder(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for w in caught:  # data warnings come back from meta.json on every read; others now
        if not issubclass(w.category, DataWarning):
            warnings.warn(w.message, w.category, stacklevel=3)


def _write_parts(tmp: Path, paths: list[Path], settings: dict) -> list[dict]:
    """Each subject's windows: ``x`` to ``part-<i>.npy``, the labels kept in memory."""
    parts = []
    subjects = wesad_windows(paths, settings["channels"], settings["fs"], settings["window_s"],
                             settings["stride"], settings["fraction"], settings["seed"])
    for i, windows in enumerate(subjects):
        if not len(windows):
            continue
        np.save(tmp / f"part-{i}.npy", windows.x.astype(np.float32, copy=False))
        parts.append({"file": tmp / f"part-{i}.npy", "n": len(windows), "y": windows.y,
                      "groups": windows.groups, "domains": windows.domains,
                      "shape": windows.x.shape[1:]})
    if not parts:
        raise DataError(f"{paths[0].parent.parent}: no window with a modal label in 1..4 in "
                        f"subjects {[p.parent.name for p in paths]}")
    return parts


def _assemble(tmp: Path, parts: list[dict], settings: dict) -> dict:
    """The parts copied into one ``x.npy``; the label arrays saved beside it."""
    shape = (sum(p["n"] for p in parts), *parts[0]["shape"])
    x = np.lib.format.open_memmap(tmp / "x.npy", mode="w+", dtype=np.float32, shape=shape)
    row = 0
    for part in parts:
        x[row:row + part["n"]] = np.load(part["file"], mmap_mode="r")
        row += part["n"]
        part["file"].unlink()
    x.flush()
    del x
    for name in ARRAYS[1:]:
        np.save(tmp / f"{name}.npy", np.concatenate([p[name] for p in parts]))
    return {"shape": list(shape), "fs": settings["fs"], "classes": list(WESAD_CLASSES),
            "bytes": {name: (tmp / f"{name}.npy").stat().st_size for name in ARRAYS}}


def _discard(folder: Path) -> None:
    """Remove a cached folder that failed its checks, and the temporary folders of killed
    builds of the same key (the caller holds the key's lock: no live build owns them)."""
    if folder.exists():
        warnings.warn(f"{folder}: incomplete or corrupt cached corpus; rebuilding it",
                      DataWarning, stacklevel=4)
        shutil.rmtree(folder)
    for tmp in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
