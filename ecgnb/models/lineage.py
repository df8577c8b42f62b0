"""A checkpoint's lineage: one record per stage that trained it (pretraining, then each
continuation), appended to ``Encoder.lineage`` and saved with the weights.

Every record names the stage and scenario, the corpus it trained on, its epochs, seed, recipe and
checkpoint selection, its parent (``None`` for a pretraining) and the parent's weights hash, what
it saw of the target task (:func:`~ecgnb.data.corpora.target_exposure`), when it ran, and the
hash of the weights it ends with; stage-specific keys come in between.
"""
from __future__ import annotations

import time

from ecgnb.data import DataConfig, Windows
from ecgnb.data.corpora import corpus_record, target_exposure
from ecgnb.models.base import Encoder


def timestamp() -> str:
    """The local time as lineage records write it (``2024-01-31T12:00:00``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def lineage_record(encoder: Encoder, data: DataConfig, train: Windows, val: Windows | None, *,
                   stage: str, scenario: str, corpus: str | None, epochs: int, seed: int,
                   recipe: str, selection: str, started: str, parent: str | None = None,
                   parent_hash: str | None = None, **details) -> dict:
    """The record of a stage that has just trained ``encoder`` on ``train`` (``val``: the windows
    checkpoint selection could read) and selected its checkpoint. ``corpus``: the corpus name
    (``None``: no training); ``details``: the stage's own keys. Finished now."""
    return {"stage": stage, "scenario": scenario,
            "corpus": None if corpus is None else corpus_record(corpus, train),
            "epochs": epochs, "seed": seed, "parent": parent, "parent_hash": parent_hash,
            "recipe": recipe, "selection": selection, **details,
            **target_exposure(data, train, val), "started": started, "finished": timestamp(),
            "weights_hash": encoder.weights_hash()}
