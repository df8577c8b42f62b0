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


class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class Windows:
    """Labelled or unlabelled univariate windows.

    ``x`` float32 ``[N, C, T]``; ``y`` int64 ``[N]`` (-1 = unlabelled); ``groups`` str ``[N]``
    (subject or source record); ``domains`` str ``[N]`` (signal type, e.g. ``ECG``); ``fs`` in Hz;
    ``classes`` the names of labels ``0..K-1``.
    """

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    domains: np.ndarray
    fs: float
    classes: tuple[str, ...]

    def __post_init__(self):
        n = len(self.x)
        if self.x.ndim != 3:
            raise ValueError(f"Windows.x must be [N, C, T], got shape {self.x.shape}")
        for name in ("y", "groups", "domains"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Windows.{name} has {len(getattr(self, name))} rows, x has {n}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_timesteps(self) -> int:
        return self.x.shape[-1]

    def subset(self, idx) -> "Windows":
        idx = np.asarray(idx)
        return dataclasses.replace(self, x=self.x[idx], y=self.y[idx], groups=self.groups[idx],
                                   domains=self.domains[idx])

    def unlabelled(self) -> "Windows":
        return dataclasses.replace(self, y=np.full(len(self), -1, dtype=np.int64))

    def card(self) -> pd.DataFrame:
        """Counts per (domain, class) with the number of distinct groups."""
        names = np.array([self.classes[v] if v >= 0 else "unlabelled" for v in self.y])
        df = pd.DataFrame({"domain": self.domains, "class": names, "group": self.groups})
        return (df.groupby(["domain", "class"]).agg(windows=("group", "size"),
                                                    groups=("group", "nunique")).reset_index())

    @staticmethod
    def concat(parts: Sequence["Windows"]) -> "Windows":
        """Stack windows of equal ``fs`` and length; classes of the first part are kept."""
        parts = [p for p in parts if len(p)]
        if not parts:
            raise DataError("nothing to concatenate: every part is empty")
        if len({(p.fs, p.n_timesteps) for p in parts}) > 1:
            raise DataError("cannot concatenate windows with different fs or lengths: "
                            f"{[(p.fs, p.n_timesteps) for p in parts]}")
        return Windows(x=np.concatenate([p.x for p in parts]),
                       y=np.concatenate([p.y for p in parts]),
                       groups=np.concatenate([p.groups for p in parts]),
                       domains=np.concatenate([p.domains for p in parts]),
                       fs=parts[0].fs, classes=parts[0].classes)
