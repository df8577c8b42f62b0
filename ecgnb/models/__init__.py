"""Encoder registry: ``build(name, **overrides)`` and ``load(path)``.

Backbones: ``ts2vec`` (D=320), ``tstcc`` (D=320), ``series2vec`` (D=640); see ``base.Encoder``.
Each backbone's module is imported when the backbone is first looked up, so a run loads (and its
code identity covers, :func:`ecgnb.provenance.loaded_code`) the backbone it builds and no other.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import torch

from ecgnb.config import from_dict
from ecgnb.models.base import (ENCODER_FORMAT, FIT_FIELDS, CheckpointError, Encoder,
                               FitSettings, Network, restore)


class Registry(Mapping):
    """``name -> Encoder subclass``, each imported from its module on first lookup."""

    def __init__(self, entries: dict[str, str]):
        self._entries = dict(entries)  # name -> "module:Class"

    def __getitem__(self, name: str) -> type[Encoder]:
        module, cls = self._entries[name].split(":")
        return getattr(importlib.import_module(module), cls)

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def module(self, name: str) -> str:
        """The module that defines backbone ``name`` (without importing it)."""
        return self._entries[name].split(":")[0]


REGISTRY = Registry({"ts2vec": "ecgnb.models.ts2vec:TS2Vec",
                     "tstcc": "ecgnb.models.tstcc:TSTCC",
                     "series2vec": "ecgnb.models.series2vec:Series2Vec"})


def build(name: str, device: str | None = None, seed: int = 0, verbose: bool = True,
          **overrides) -> Encoder:
    """A fresh encoder of backbone ``name`` with the study's defaults, overridden by keywords:
    the fields of its ``Config`` and of :class:`~ecgnb.models.base.FitSettings` alike."""
    if name not in REGISTRY:
        raise KeyError(f"unknown backbone '{name}'; known: {sorted(REGISTRY)}")
    cls = REGISTRY[name]
    own = {k: v for k, v in overrides.items() if k not in FIT_FIELDS}
    config = from_dict(cls.Config, own, where=f"{name} config")
    settings = cls.default_settings(**{k: v for k, v in overrides.items() if k in FIT_FIELDS})
    return cls(config, device=device, seed=seed, verbose=verbose, settings=settings)


def load(path, device: str | None = None) -> Encoder:
    """Rebuild a saved encoder; strict: any mismatch is a :class:`CheckpointError`. The file is
    read as data (``weights_only``): one that would run code when unpickled is refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused: not readable as data (tensors and plain values) ({first}); an "
            "encoder written by an older ecgnb is converted once, from a source you trust, with "
            f"`ecgnb convert-encoder {path}`") from exc
    if not isinstance(state, dict) or state.get("format") != ENCODER_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not an ecgnb encoder checkpoint of format "
                              f"{ENCODER_FORMAT} (found {found!r})")
    if state["backbone"] not in REGISTRY:
        raise CheckpointError(f"{path}: unknown backbone '{state['backbone']}'")
    return restore(REGISTRY[state["backbone"]], state, device=device, path=path)


def convert_encoder(path) -> Path:
    """Rewrite an encoder saved by an older ecgnb (Python objects in the file) as data only.
    Reading it unpickles with ``weights_only=False``, which runs whatever the file asks for:
    for files you trust. The original is kept as ``<stem>.old.pt``; returns its path."""
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not str(state.get("format", "")).startswith("ecgnb-encoder"):
        raise CheckpointError(f"{path}: not an ecgnb encoder checkpoint")
    encoder = restore(REGISTRY[state["backbone"]], {**state, "format": ENCODER_FORMAT},
                      device="cpu", path=path)
    old = path.with_name(f"{path.stem}.old.pt")
    path.replace(old)
    encoder.save(path)
    return old


__all__ = ["REGISTRY", "build", "load", "Encoder", "FitSettings", "Network", "CheckpointError",
           "ENCODER_FORMAT"]
