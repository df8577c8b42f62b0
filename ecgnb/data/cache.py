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

The key is a hash of the content of every pickle read (:func:`ecgnb.provenance.fingerprint`,
cached by path, size and mtime), of the code that windows them (:data:`WINDOWING_CODE` and every
module of the package it imports) and of the channels, fs, window_s, stride, fraction and seed:
a changed pickle or an edit to the windowing gives another key, hence a rebuild. A build writes
into a folder private to its process, flushes it and publishes it by one rename
(:func:`ecgnb.files.atomic_folder`); where two processes build the same corpus at once, the first
rename wins and the other discards its copy. No lock is taken, so the cache holds on shared file
systems that do not honour ``flock`` (NFS, Lustre) across the nodes of a cluster. A folder that
fails its checks (a missing or truncated array, unreadable JSON) is moved out of the way and
rebuilt; temporary folders older than :data:`STALE_TMP_S` (left by killed builds) are removed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgnb import provenance
from ecgnb.config import DataWarning
from ecgnb.data.formats import WESAD_CLASSES, wesad_paths, wesad_windows
from ecgnb.data.windows import DataError, Windows
from ecgnb.files import atomic_folder
from ecgnb.runs import data_root, fingerprint_cache

WINDOWING_CODE = ("ecgnb.data.formats", "ecgnb.data.cache")  # and what they import
STALE_TMP_S = 24 * 3600.0  # a temporary build folder this old belongs to no live build
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
    """[resolved path, content fingerprint] of one source file."""
    return [str(Path(path).resolve()), provenance.fingerprint(path, fingerprint_cache())]


def corpus_key(sources: list, settings: dict) -> str:
    """16 hex digits naming the corpus of ``sources`` windowed with ``settings`` by this code."""
    text = json.dumps({"code": provenance.modules_digest(WINDOWING_CODE), "sources": sources,
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    """Window every subject into a private temporary folder, one subject in memory at a time,
    then publish it as ``folder`` (:func:`ecgnb.files.atomic_folder`)."""
    start = time.perf_counter()
    with atomic_folder(folder) as tmp:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            parts = _write_parts(tmp, paths, settings)
        meta = _assemble(tmp, parts, settings)
        meta.update(sources=sources, settings=settings,
                    code=provenance.modules_digest(WINDOWING_CODE),
                    build_s=round(time.perf_counter() - start, 2),
                    warnings=[str(w.message) for w in caught
                              if issubclass(w.category, DataWarning)])
        (tmp / META).write_text(json.dumps(meta, indent=1))
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
    """Move a cached folder that failed its checks out of the way (one rename, so a concurrent
    reader sees it whole or not at all) and remove it; remove temporary folders of the cache
    older than :data:`STALE_TMP_S`."""
    if folder.exists():
        warnings.warn(f"{folder}: incomplete or corrupt cached corpus; rebuilding it",
                      DataWarning, stacklevel=4)
        doomed = folder.with_name(f".{folder.name}.corrupt-{uuid.uuid4().hex[:8]}.tmp")
        try:
            folder.rename(doomed)
        except OSError:  # another process moved it first
            return
        shutil.rmtree(doomed, ignore_errors=True)
    for tmp in folder.parent.glob(".*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass
