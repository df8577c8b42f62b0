"""Training checkpoints: the whole state of a fit on disk, so that a killed run resumes exactly.

A :class:`Checkpointer` owns one file (``<run>/checkpoints/<name>.pt``). The training loop asks
:meth:`Checkpointer.due` at its safe points (after a batch, after an epoch) and hands it the
complete state when it is; :meth:`Checkpointer.load` gives that state back to the same fit.

- **Atomic.** A checkpoint is written to a temporary file in the same folder, flushed to the
  disk (``fsync``), renamed over the previous one, and the folder is flushed: a kill at any moment
  leaves either the previous checkpoint or the new one, never half a file.
- **Cadence.** At an epoch end one is written whenever the time since the last write is at least
  :data:`OVERHEAD_FACTOR` times what the last write took (the writing stays under 2 % of the
  training time, and a short run checkpoints every epoch); within an epoch, every ``every_s``
  seconds (10 minutes by default); ``every_s=0`` writes at every epoch end and never within one. The time spent
  writing is kept in :attr:`Checkpointer.seconds_writing`.
- **Same fit, same code, same device only.** A checkpoint carries the *fingerprint* of the fit
  that wrote it (the settings, the data's shape and checksum, the starting weights, the device
  type) and the digest of every module of the package loaded when it was written
  (:func:`ecgnb.provenance.loaded_code`) with the library versions. A checkpoint of another fit,
  of code that has changed since or of another kind of device is set aside (renamed
  ``*.stale.pt``) with a warning, never resumed from.
- **Data, not code.** The file holds tensors and plain values only (numbers, strings, lists,
  dicts) and is read with ``torch.load(weights_only=True)``: loading it runs no code.
- **Every generator.** :func:`rng_state` captures torch's global generators (CPU and CUDA),
  NumPy's and Python's, and any ``torch.Generator`` the loop uses; :func:`set_rng_state` puts
  them back, so that the draws after a resume are those an uninterrupted run would make.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ecgnb import provenance
from ecgnb.files import atomic_write

CHECKPOINT_EVERY_S = 600.0  # default interval within an epoch: 10 minutes of training
OVERHEAD_FACTOR = 50  # at an epoch end: write when the time since the last write is 50 x its cost
EVERY_S_VARIABLE = "ECGNB_CHECKPOINT_EVERY_S"  # overrides the interval of the stages' fits
FORMAT = "ecgnb-checkpoint-2"  # tensors and plain values (weights_only)


class Checkpointer:
    """The checkpoint file of one fit (see the module docstring)."""

    def __init__(self, path, fingerprint: dict, every_s: float = CHECKPOINT_EVERY_S):
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        self.path = Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.every_s = float(every_s)
        self.n_writes = 0
        self.seconds_writing = 0.0
        self.resumed_from: dict | None = None  # where the fit resumed (epoch, batch), if it did
        self.last_write_s = 0.0  # what the last write took (the cadence at epoch ends)
        self._last = time.monotonic()

    def due(self, end_of_epoch: bool) -> bool:
        """Whether the loop should write now (see the cadence in the module docstring)."""
        elapsed = time.monotonic() - self._last
        if end_of_epoch:
            return self.every_s == 0 or elapsed >= OVERHEAD_FACTOR * self.last_write_s
        return self.every_s > 0 and elapsed >= self.every_s

    def save(self, state: dict[str, Any]) -> Path:
        """Write ``state`` atomically, with this fit's fingerprint and the code's identity."""
        start = time.monotonic()
        files = provenance.loaded_code()
        saved = {"format": FORMAT, "fingerprint": self.fingerprint, "code_files": files,
                 "libraries": provenance.library_versions(), "state": state}
        with atomic_write(self.path) as tmp:
            torch.save(saved, tmp)
        self.n_writes += 1
        self._last = time.monotonic()
        self.last_write_s = self._last - start
        self.seconds_writing += self.last_write_s
        return self.path

    def load(self) -> dict[str, Any] | None:
        """The state of this fit's checkpoint, or None (no file, or one of another fit, code or
        device: set aside)."""
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            fingerprint = saved["fingerprint"]
        except Exception as exc:  # noqa: BLE001 - an unreadable file is set aside like a stale one
            self._set_aside(f"it cannot be read as a checkpoint of this version "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            return None
        if saved.get("format") != FORMAT or fingerprint != self.fingerprint:
            self._set_aside("it was written by another fit: "
                            + fingerprint_difference(fingerprint, self.fingerprint))
            return None
        changed = provenance.changed_files(saved.get("code_files") or {}) \
            + provenance.changed_libraries(saved.get("libraries") or {})
        if changed or not saved.get("code_files"):
            self._set_aside("it was written by other code: "
                            + (", ".join(changed[:3]) or "no code record"))
            return None
        return saved["state"]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _set_aside(self, why: str) -> None:
        stale = self.path.with_name(f"{self.path.stem}.stale.pt")
        warnings.warn(f"{self.path}: not resumed, {why}; kept as {stale.name}", stacklevel=3)
        self.path.replace(stale)


def fingerprint_difference(old: dict, new: dict) -> str:
    """The first keys whose values differ between two fingerprints, for messages."""
    keys = sorted(set(old) | set(new))
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed[:3]) or "format changed"


def array_checksum(x: np.ndarray) -> str:
    """A short sha256 of an array's bytes, shape and dtype (the data part of a fingerprint)."""
    h = hashlib.sha256(f"{x.shape}{x.dtype}".encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()[:16]


def modules_checksum(modules: dict[str, torch.nn.Module]) -> str:
    """A short sha256 of the weights a fit starts from (the model part of a fingerprint)."""
    h = hashlib.sha256()
    for name, module in sorted(modules.items()):
        for key, value in sorted(module.state_dict().items()):
            h.update(f"{name}.{key}".encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def rng_state(generators: Sequence[torch.Generator] = ()) -> dict[str, Any]:
    """Every random state a training loop may draw from (see the module docstring), as tensors
    and plain values."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position),
                      int(has_gauss), float(gauss)],
            "python": random.getstate(), "generators": [g.get_state() for g in generators]}


def set_rng_state(state: dict[str, Any], generators: Sequence[torch.Generator] = ()) -> None:
    """Put back what :func:`rng_state` captured (the same generators, in the same order)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
    if len(state["generators"]) != len(generators):
        raise ValueError(f"checkpoint has {len(state['generators'])} generators, "
                         f"the loop {len(generators)}")
    for generator, saved in zip(generators, state["generators"]):
        generator.set_state(saved)


def checkpoint_args(folder, name: str) -> dict:
    """The checkpoint keywords of a stage's fit: ``<folder>/<name>.pt``, within an epoch every
    :data:`CHECKPOINT_EVERY_S` seconds (or ``$ECGNB_CHECKPOINT_EVERY_S``); none without a folder."""
    if folder is None:
        return {}
    every_s = float(os.environ.get(EVERY_S_VARIABLE) or CHECKPOINT_EVERY_S)
    return {"checkpoint": Path(folder) / f"{name}.pt", "checkpoint_every_s": every_s}


def resumed_from(fitted) -> dict | None:
    """Where the last checkpointed fit of ``fitted`` resumed (None: it ran from the start)."""
    checkpoint = getattr(fitted, "checkpoint_", None)
    return None if checkpoint is None else checkpoint.resumed_from
