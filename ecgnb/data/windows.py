"""The one currency of the package: :class:`Windows`, and :class:`DataError` for bad input data.

Every reader (:mod:`~ecgnb.data.formats`), corpus (:mod:`~ecgnb.data.corpora`) and split
(:mod:`~ecgnb.data.splits`) hands windows around as a :class:`Windows`; every bad input raises a
:class:`DataError` naming the file and the problem.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd


NO_CLASS = "no class"  # the name of an empty label set


class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""


def label_names(y: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """A readable label per window: single-label ``y [N]`` its class (``unlabelled`` for -1);
    an indicator ``y [N, K]`` its label set, classes in task order joined by ``+``
    (``MI+STTC``), the empty set :data:`NO_CLASS`."""
    y = np.asarray(y)
    if y.ndim == 2:
        names = np.asarray(classes)
        return np.array(["+".join(names[row.astype(bool)]) or NO_CLASS for row in y])
    return np.array([classes[v] if v >= 0 else "unlabelled" for v in y])


@dataclasses.dataclass(frozen=True, eq=False)
class Windows:
    """Labelled or unlabelled windows of one or more channels.

    ``x`` float32 ``[N, C, T]``: C = 1 for univariate windows (every corpus, and a target card's
    single ``channel``), C leads for a target card's ``channels``, named in ``leads`` (empty
    where the channels are unnamed); ``groups`` str ``[N]`` (subject, source record or patient);
    ``domains`` str ``[N]`` (signal type, e.g. ``ECG``); ``fs`` in Hz; ``classes`` the K class
    names. ``y`` holds the labels in one of two layouts:

    - single-label: int64 ``[N]``, the index ``0..K-1`` of each window's class (-1 = unlabelled);
    - multi-label (:attr:`is_multilabel`): int8 ``[N, K]``, a binary indicator matrix,
      ``y[i, k] == 1`` when window ``i`` has class ``classes[k]`` (every labelled window has at
      least one; a window with none is unlabelled).

    :meth:`indicator` gives the ``[N, K]`` matrix of either layout; :func:`label_names` a
    readable label (class or label set) per window.
    """

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    domains: np.ndarray
    fs: float
    classes: tuple[str, ...]
    leads: tuple[str, ...] = ()

    def __post_init__(self):
        n = len(self.x)
        if self.x.ndim != 3:
            raise ValueError(f"Windows.x must be [N, C, T], got shape {self.x.shape}")
        for name in ("y", "groups", "domains"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Windows.{name} has {len(getattr(self, name))} rows, x has {n}")
        if self.y.ndim == 2 and self.y.shape[1] != len(self.classes):
            raise ValueError(f"Windows.y is an indicator matrix of {self.y.shape[1]} classes, "
                             f"but {len(self.classes)} classes are named")
        if self.y.ndim not in (1, 2):
            raise ValueError(f"Windows.y must be [N] or [N, K], got shape {self.y.shape}")
        if self.leads and len(self.leads) != self.x.shape[1]:
            raise ValueError(f"Windows.leads names {len(self.leads)} channels, x has "
                             f"{self.x.shape[1]}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_timesteps(self) -> int:
        return self.x.shape[-1]

    @property
    def is_multilabel(self) -> bool:
        """Whether ``y`` is an ``[N, K]`` indicator matrix (several classes per window)."""
        return self.y.ndim == 2

    def indicator(self) -> np.ndarray:
        """int8 ``[N, K]``: 1 where a window has a class (single-label: one-hot; unlabelled
        windows: a row of zeros)."""
        if self.is_multilabel:
            return self.y.astype(np.int8, copy=False)
        out = np.zeros((len(self), len(self.classes)), dtype=np.int8)
        labelled = np.flatnonzero(self.y >= 0)
        out[labelled, self.y[labelled]] = 1
        return out

    def subset(self, idx) -> "Windows":
        idx = np.asarray(idx)
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx], groups=self.groups[idx],
                                   domains=self.domains[idx])

    def unlabelled(self) -> "Windows":
        """The same windows with ``y`` = -1 ``[N]`` (in either layout)."""
        return dataclasses.replace(self, y=np.full(len(self), -1, dtype=np.int64))

    def card(self) -> pd.DataFrame:
        """Counts per (domain, class) with the number of distinct groups (a multi-label window
        counts once for each of its classes)."""
        if self.is_multilabel:
            row, k = np.nonzero(self.y)
            names = np.asarray(self.classes)[k]
            domains, groups = self.domains[row], self.groups[row]
        else:
            names = np.array([self.classes[v] if v >= 0 else "unlabelled" for v in self.y])
            domains, groups = self.domains, self.groups
        df = pd.DataFrame({"domain": domains, "class": names, "group": groups})
        return (df.groupby(["domain", "class"]).agg(windows=("group", "size"),
                                                    groups=("group", "nunique")).reset_index())

    @staticmethod
    def concat(parts: Sequence["Windows"]) -> "Windows":
        """Stack windows of equal ``fs``, length and label layout; classes and leads of the
        first part are kept."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise DataError("nothing to concatenate: every part is empty")
        if len({(p.fs, p.n_timesteps) for p in parts}) > 1:
            raise DataError("cannot concatenate windows with different fs or lengths: "
                            f"{[(p.fs, p.n_timesteps) for p in parts]}")
        if len({p.y.shape[1:] for p in parts}) > 1:
            raise DataError("cannot concatenate single-label and multi-label windows (or "
                            "indicator matrices of different widths): "
                            f"{[p.y.shape[1:] for p in parts]}")
        return Windows(x=np.concatenate([p.x for p in parts]),
                       y=np.concatenate([p.y for p in parts]),
                       groups=np.concatenate([p.groups for p in parts]),
                       domains=np.concatenate([p.domains for p in parts]),
                       fs=parts[0].fs, classes=parts[0].classes, leads=parts[0].leads)
