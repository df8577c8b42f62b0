"""The one way to write a file or a folder safely: build it under a private temporary name, flush
it to the disk, then rename it into place. A kill at any moment leaves the previous version or
the new one, never half of one, and two writers never share (or remove) a temporary name.

- :func:`atomic_write`: a file, written by the caller (``torch.save``, ``DataFrame.to_csv``, a
  plotly export) into the temporary path it is handed;
- :func:`write_json`, :func:`write_text`: the common cases of it;
- :func:`atomic_folder`: a folder, filled by the caller and published by one rename; where
  another process published the same folder first, its copy wins and this one is discarded (no
  lock needed, so it holds on shared file systems that do not honour ``flock``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def temporary_name(path: Path) -> Path:
    """A name beside ``path`` that no other writer (process or thread) uses; ends in ``.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-"
                          f"{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_write(path, durable: bool = True) -> Iterator[Path]:
    """``with atomic_write(path) as tmp: write(tmp)``: ``tmp`` is renamed to ``path`` when the
    block ends without error, and removed when it raises. ``durable``: flush the file and its
    folder to the disk (the default; off for files whose loss costs only a recomputation)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full or read-only disk: keep the first error
            tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)


def write_text(path, text: str, durable: bool = True) -> Path:
    with atomic_write(path, durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, obj: Any, durable: bool = False) -> Path:
    """JSON written atomically; ``durable`` for records that vouch for other files (a run's
    completion record)."""
    return write_text(path, json.dumps(obj, indent=2, default=_jsonable), durable)


@contextlib.contextmanager
def atomic_folder(final) -> Iterator[Path]:
    """``with atomic_folder(final) as tmp: fill(tmp)``: the folder ``tmp`` (private to this
    writer, beside ``final``) is flushed and renamed to ``final``. If ``final`` appeared in the
    meantime (another writer won the race), ``final`` is kept and ``tmp`` discarded; on an error
    ``tmp`` is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    tmp.mkdir()
    try:
        yield tmp
        for item in sorted(tmp.rglob("*")):
            if item.is_file():
                fsync_file(item)
        try:
            os.rename(tmp, final)  # fails when final exists and is not empty
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_folder(final.parent)


def fsync_file(path) -> None:
    """Flush a file written by anyone (torch, pandas, papermill) to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
