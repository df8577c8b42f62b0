"""Encoder registry: ``build(name, **overrides)`` and ``load(path)``.

Backbones: ``ts2vec`` (D=320), ``tstcc`` (D=320), ``series2vec`` (D=640); see ``base.Encoder``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ecgnb.config import from_dict
from ecgnb.models.base import CheckpointError, Encoder, Network, restore
from ecgnb.models.series2vec import Series2Vec
from ecgnb.models.ts2vec import TS2Vec
from ecgnb.models.tstcc import TSTCC

REGISTRY: dict[str, type[Encoder]] = {"ts2vec": TS2Vec, "tstcc": TSTCC, "series2vec": Series2Vec}


def build(name: str, device: str | None = None, seed: int = 0, verbose: bool = True,
          **overrides) -> Encoder:
    """A fresh encoder of backbone ``name`` with the study's defaults, overridden by keywords."""
    if name not in REGISTRY:
        raise KeyError(f"unknown backbone '{name}'; known: {sorted(REGISTRY)}")
    cls = REGISTRY[name]
    config = from_dict(cls.Config, overrides, where=f"{name} config")
    return cls(config, device=device, seed=seed, verbose=verbose)


def load(path, device: str | None = None) -> Encoder:
    """Rebuild a saved encoder; strict: any mismatch is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != "ecgnb-encoder-1":
        raise CheckpointError(f"{path}: not an ecgnb encoder checkpoint")
    if state["backbone"] not in REGISTRY:
        raise CheckpointError(f"{path}: unknown backbone '{state['backbone']}'")
    return restore(REGISTRY[state["backbone"]], state, device=device, path=path)


__all__ = ["REGISTRY", "build", "load", "Encoder", "Network", "CheckpointError"]
