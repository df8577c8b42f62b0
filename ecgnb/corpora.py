"""Pretraining corpora of the study (brief 2 and 3): ECG, All, no-ECG, target, and ``X+target``.

A "+target" corpus adds the unlabelled target *training* fragments: validation and test fragments
never reach a pretraining or continuation corpus (``target_training`` enforces it).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgnb.data import WESAD_CHANNELS, DataError, Windows, load_wesad

CORPUS_CHANNELS: dict[str, tuple[str, ...]] = {
    "ECG": ("ECG",),
    "All": WESAD_CHANNELS,
    "no-ECG": tuple(c for c in WESAD_CHANNELS if c != "ECG"),
    "target": (),
}
# The study subsampled the multi-domain "All" corpus to 20 % of each subject's windows.
DEFAULT_FRACTION = {"ECG": 1.0, "All": 0.2, "no-ECG": 1.0, "target": 1.0}
TARGET_DOMAIN = "target"


def parse_corpus(name: str) -> tuple[str, bool]:
    """``"All+target"`` -> ("All", True); unknown names are an error listing the known ones."""
    base, plus, rest = name.partition("+")
    if base not in CORPUS_CHANNELS or (plus and rest != "target"):
        known = list(CORPUS_CHANNELS) + [f"{b}+target" for b in ("ECG", "All")]
        raise KeyError(f"unknown corpus '{name}'; known: {known}")
    return base, bool(plus)


def target_training(fragments: Windows, splits: dict[str, np.ndarray]) -> Windows:
    """The unlabelled target *training* fragments (domain ``target``), nothing else."""
    train = fragments.subset(splits["train"]).unlabelled()
    return dataclasses.replace(train, domains=np.full(len(train), TARGET_DOMAIN))


def build_corpus(name: str, wesad_root=None, fragments: Windows | None = None,
                 splits: dict[str, np.ndarray] | None = None, fs: float = 360.0,
                 fraction: float | None = None, channels: Sequence[str] | None = None,
                 subjects: Sequence[str] | None = None, seed: int = 0) -> Windows:
    """One pretraining corpus as univariate windows ``[N, 1, T]``.

    ``channels`` overrides the corpus's WESAD channels (e.g. perturb with EDA+Resp only);
    ``fraction`` the share of each subject's windows kept (default: the study's).
    """
    base, with_target = parse_corpus(name)
    channels = tuple(channels) if channels is not None else CORPUS_CHANNELS[base]
    fraction = DEFAULT_FRACTION[base] if fraction is None else fraction
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    parts = []
    if channels:
        parts.append(load_wesad(wesad_root, channels=channels, fs=fs, subjects=subjects,
                                fraction=fraction, seed=seed))
    if with_target or base == "target":
        if fragments is None or splits is None:
            raise DataError(f"corpus '{name}' needs the target fragments and their splits")
        parts.append(target_training(fragments, splits))
    return Windows.concat(parts)


def holdout_subject(corpus: Windows, subject: str | None = None) -> tuple[Windows, Windows]:
    """(train, held-out) by subject; default holds out the highest-numbered subject (S17).

    Target fragments (records, not subjects) always stay in the training part.
    """
    subjects = sorted({g for g in corpus.groups if re.fullmatch(r"S\d+", str(g))},
                      key=lambda s: int(s[1:]))
    if not subjects:
        raise DataError("no WESAD subject in this corpus to hold out")
    subject = subject or subjects[-1]
    held = corpus.groups == subject
    if not held.any():
        raise DataError(f"subject {subject} not in corpus (subjects: {subjects})")
    return corpus.subset(np.flatnonzero(~held)), corpus.subset(np.flatnonzero(held))


def data_roots(fragment_root: str = "", wesad_root: str = "", data_seed: int = 0,
               small: bool = False) -> dict[str, Path]:
    """The folders to read: the user's real ones, or (when empty) the embedded default data,
    generated in the real formats under the data cache on first use."""
    roots = {"fragment": fragment_root, "wesad": wesad_root}
    if all(roots.values()):
        return {k: Path(v).expanduser() for k, v in roots.items()}
    from ecgnb.paths import data_root
    from ecgnb.simulate import embedded_data

    embedded = embedded_data(data_root(), seed=data_seed, small=small)
    return {k: Path(v).expanduser() if v else embedded[k] for k, v in roots.items()}
