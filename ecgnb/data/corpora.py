"""The data a run reads: pretraining corpora (ECG, All, no-ECG, target and
``X+target``, or a corpus card), the target task (the Fragment DB or a target card,
:mod:`ecgnb.data.cards`) with its grouped split, and where the data roots come from.

A "+target" corpus adds the unlabelled target *training* fragments: validation and test fragments
never reach a pretraining or continuation corpus (``target_training`` enforces it).
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from sklearn.model_selection import GroupShuffleSplit

from ecgnb.data import cards
from ecgnb.data.cache import cached_wesad
from ecgnb.data.formats import WESAD_CHANNELS, load_fragment, load_wesad
from ecgnb.data.splits import split_grouped
from ecgnb.data.windows import DataError, Windows
from ecgnb.config import DataWarning, check_ranges
from ecgnb.data.signals import zscore
from ecgnb.runs import data_root

CORPUS_CHANNELS: dict[str, tuple[str, ...]] = {
    "ECG": ("ECG",),
    "All": WESAD_CHANNELS,
    "no-ECG": tuple(c for c in WESAD_CHANNELS if c != "ECG"),
    "target": (),
}
# The study's corpora: "All" and "no-ECG" are 20 % of each subject's windows, stratified by label
# (no-ECG: 83,876 windows = 20,969 x 4 channels); "ECG" keeps every window.
DEFAULT_FRACTION = {"ECG": 1.0, "All": 0.2, "no-ECG": 0.2, "target": 1.0}
TARGET_DOMAIN = "target"
# How target fragments are normalised; pretraining windows are always z-scored per window.
NORMALIZATIONS = ("zscore", "none")


def parse_corpus(name: str) -> tuple[str, bool]:
    """``"All+target"`` -> ("All", True); a corpus card's path -> (path, False); unknown names
    are an error listing the known ones."""
    if cards.is_card(name):
        return name, False
    base, plus, rest = name.partition("+")
    if base not in CORPUS_CHANNELS or (plus and rest != "target"):
        known = list(CORPUS_CHANNELS) + [f"{b}+target" for b in ("ECG", "All")]
        raise KeyError(f"unknown corpus '{name}'; known: {known} or a corpus card "
                       "(params/datasets/*.yaml)")
    return base, bool(plus)


def target_training(fragments: Windows, splits: dict[str, np.ndarray]) -> Windows:
    """The unlabelled target *training* fragments (domain ``target``), nothing else."""
    train = fragments.subset(splits["train"]).unlabelled()
    return dataclasses.replace(train, domains=np.full(len(train), TARGET_DOMAIN))


def build_corpus(name: str, wesad_root=None, fragments: Windows | None = None,
                 splits: dict[str, np.ndarray] | None = None, fs: float = 360.0,
                 fraction: float | None = None, channels: Sequence[str] | None = None,
                 subjects: Sequence[str] | None = None, seed: int = 0,
                 data_seed: int = 0, use_cache: bool = True) -> Windows:
    """One pretraining corpus as univariate windows ``[N, 1, T]``.

    ``channels`` overrides the corpus's WESAD channels (e.g. perturb with EDA+Resp only) or a
    corpus card's leads; ``fraction`` the share of each subject's (a card: each record's)
    windows kept (default: the study's; a card: all); ``data_seed``: a card's embedded sample.
    ``use_cache``: the WESAD windows come from the on-disk cache of windowed corpora
    (:mod:`ecgnb.data.cache`, built on first use, memory-mapped); False reads the pickles.
    """
    if cards.is_card(name):
        return cards.load_corpus_card(cards.read_card(name, kind="corpus"), fs, channels,
                                      fraction or 1.0, seed, data_seed)
    base, with_target = parse_corpus(name)
    channels = tuple(channels) if channels is not None else CORPUS_CHANNELS[base]
    fraction = DEFAULT_FRACTION[base] if fraction is None else fraction
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    parts = []
    if with_target or base == "target":
        if fragments is None or splits is None:
            raise DataError(f"corpus '{name}' needs the target fragments and their splits")
    if channels:
        read = cached_wesad if use_cache else load_wesad
        parts.append(read(wesad_root, channels=channels, fs=fs, subjects=subjects,
                          fraction=fraction, seed=seed))
    if with_target or base == "target":
        parts.append(target_training(fragments, splits))
    return parts[0] if len(parts) == 1 else Windows.concat(parts)


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


# --------------------------------------------------------------------------- data of a run
# Params files name the real folders through these variables, e.g. ``${ECGNB_FRAGMENT_ROOT}``.
ROOT_VARIABLES = {"fragment": "ECGNB_FRAGMENT_ROOT", "wesad": "ECGNB_WESAD_ROOT"}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data come from and how the target task is split (shared by stages 02-05)."""

    target: str = ""  # a target card (params/datasets/*.yaml); empty: the Fragment DB
    fragment_root: str = ""  # empty: embedded default data
    wesad_root: str = ""
    data_seed: int = 0
    use_small_data: bool = True
    fs: float = 360.0
    split_seed: int = 0
    normalization: str = "zscore"  # target fragments: per-window z-score (as pretraining) or none

    def __post_init__(self):
        check_ranges(self)  # every stage config inherits this: ranges of ecgnb.config
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, "
                             f"got '{self.normalization}'")


def data_roots(fragment_root: str = "", wesad_root: str = "", data_seed: int = 0,
               small: bool = False) -> dict[str, Path]:
    """The folders to read: the given ones (``~`` and ``${VARIABLE}`` expanded, e.g.
    ``${ECGNB_FRAGMENT_ROOT}``), or, where empty, the embedded default data, generated in the
    real formats under the data cache on first use."""
    roots = {"fragment": resolve_root(fragment_root), "wesad": resolve_root(wesad_root)}
    if all(roots.values()):
        return roots
    if any(roots.values()):
        missing = [k for k, v in roots.items() if not v]
        warnings.warn(f"only some data roots are set: the {missing} data are the embedded "
                      "synthetic data, not real recordings", DataWarning, stacklevel=2)
    from ecgnb.data.simulate import embedded_data

    embedded = embedded_data(data_root(), seed=data_seed, small=small)
    return {k: v or embedded[k] for k, v in roots.items()}


def resolve_root(root: str) -> Path | None:
    """``root`` with ``~`` and environment variables expanded (None when empty); an unset
    variable is a :class:`DataError` that names it."""
    if not root:
        return None
    expanded = os.path.expandvars(str(root))
    if "$" in expanded:
        known = ", ".join(ROOT_VARIABLES.values())
        raise DataError(f"data root '{root}' names an unset environment variable; set it to the "
                        f"dataset's folder (e.g. export {known.split(', ')[0]}=~/data/...)")
    return Path(expanded).expanduser()


def read_target(data: DataConfig) -> tuple[Windows, dict[str, np.ndarray] | None]:
    """The target task's windows at ``data.fs`` as read (not normalised): the card
    ``data.target``'s, else the Fragment DB at ``data.fragment_root`` (or the embedded one); and
    the splits the data give (a card's split column, PTB-XL's folds), else None."""
    if data.target:
        card = cards.read_card(data.target, kind="target")
        return cards.load_target(card, data.fs, data.data_seed, data.use_small_data)
    roots = data_roots(data.fragment_root, data.wesad_root, data.data_seed, data.use_small_data)
    return load_fragment(roots["fragment"], fs=data.fs), None


def target_task(data: DataConfig, val: float = 0.15,
                test: float = 0.2) -> tuple[Windows, dict[str, np.ndarray]]:
    """The target windows, normalised per ``data.normalization`` (per-window z-score, as every
    pretraining window), and their train/val/test split: the one the data give, else grouped
    and stratified with ``val`` and ``test`` shares of the groups (same split everywhere)."""
    windows, given = read_target(data)
    windows = normalize(windows, data.normalization)
    if given:
        return windows, given
    try:
        return windows, split_grouped(windows, val=val, test=test, seed=data.split_seed)
    except DataError as exc:
        raise DataError(f"card {data.target}: {exc}" if data.target else str(exc)) from None


def normalize(windows: Windows, normalization: str) -> Windows:
    """``windows`` z-scored per window and channel (``"zscore"``) or unchanged (``"none"``)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got '{normalization}'")
    if normalization == "none":
        return windows
    return dataclasses.replace(windows, x=zscore(windows.x).astype(np.float32))


def load_corpus(name: str, data: DataConfig, fraction: float | None = None, n_windows: int = 0,
                channels=None, seed: int = 0,
                target_holdout: bool = True) -> tuple[Windows, Windows]:
    """(train, validation) windows of corpus ``name``; validation = the held-out last subject
    for WESAD-based corpora, a grouped 20 % of the records for a corpus card and of the target
    training records for ``target``
    (``target_holdout=False``: every target training record trains, validation is empty).
    ``fraction``: share of each subject's windows (None: the study's); ``n_windows``: a cap."""
    roots = data_roots(data.fragment_root, data.wesad_root, data.data_seed,
                               data.use_small_data)
    base, with_target = parse_corpus(name)
    fragments = splits = None
    if with_target or base == "target":
        fragments, splits = target_task(data)
    corpus = build_corpus(name, roots["wesad"], fragments, splits, fs=data.fs,
                                  fraction=fraction,
                                  channels=channels, seed=seed, data_seed=data.data_seed)
    if cards.is_card(name):
        train, val = holdout_groups(corpus, share=0.2, seed=seed)
    elif base == "target" and not target_holdout:
        train, val = corpus, corpus.subset(np.arange(0))
    elif base == "target":
        train, val = holdout_groups(corpus, share=0.2, seed=seed)
    else:
        train, val = holdout_subject(corpus)
    return cap(train, n_windows, seed), cap(val, n_windows // 4 if n_windows else 0, seed)


def holdout_groups(windows: Windows, share: float, seed: int) -> tuple[Windows, Windows]:
    """(rest, held-out) with about ``share`` of the groups held out, never split."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    rest, held = next(splitter.split(windows.x, groups=windows.groups))
    return windows.subset(np.sort(rest)), windows.subset(np.sort(held))


def cap(windows: Windows, n_windows: int, seed: int) -> Windows:
    """A seeded random subsample of at most ``n_windows`` windows (0: keep all)."""
    if not n_windows or len(windows) <= n_windows:
        return windows
    idx = np.random.default_rng(seed).choice(len(windows), size=n_windows, replace=False)
    return windows.subset(np.sort(idx))


def corpus_record(name: str, windows: Windows) -> dict:
    domains, counts = np.unique(windows.domains, return_counts=True)
    return {"name": name, "n_windows": len(windows), "domains": dict(zip(domains.tolist(),
                                                                        counts.tolist())),
            "n_groups": len(set(windows.groups))}


# --------------------------------------------------------------------------- encoder vs data
def target_exposure(data: DataConfig, *parts: Windows) -> dict:
    """What a checkpoint trained on ``parts`` knows of the target task: the normalisation of
    its target windows and, when target fragments were among them, the target (its card; empty:
    the Fragment DB), the split seed and the source records it saw (for
    :func:`check_encoder_data`)."""
    seen = sorted({str(g) for p in parts if p is not None
                   for g in p.groups[p.domains == TARGET_DOMAIN]})
    record = {"normalization": data.normalization}
    if seen:
        record["target_split"] = {"target": data.target, "split_seed": data.split_seed,
                                  "records": seen}
    return record


def check_encoder_data(lineage: list[dict], data: DataConfig, fragments: Windows | None = None,
                       splits: dict[str, np.ndarray] | None = None, what: str = "encoder") -> None:
    """Refuse (:class:`DataError`) an encoder whose recorded normalisation differs from
    ``data.normalization``, or one pretrained on target records that ``splits`` puts in
    validation or test. Lineage records without these keys (older checkpoints) are not checked."""
    for record in lineage:
        norm = record.get("normalization")
        if norm is not None and norm != data.normalization:
            raise DataError(f"{what} was trained with target normalisation '{norm}' "
                            f"({record.get('stage')} [{record.get('scenario')}]) but the data "
                            f"are normalised '{data.normalization}': set normalization: {norm} "
                            "or use an encoder trained with the same normalisation")
        seen = (record.get("target_split") or {}).get("records")
        if not seen or fragments is None or splits is None \
                or record["target_split"].get("target", "") != data.target:
            continue  # another target's records are no leak into this one
        for name in ("val", "test"):
            leaked = sorted(set(seen) & {str(g) for g in fragments.groups[splits[name]]})
            if leaked:
                raise DataError(
                    f"{what} saw target records {leaked[:5]}{' ...' if len(leaked) > 5 else ''} "
                    f"during {record.get('stage')} [{record.get('scenario')}] (split seed "
                    f"{record['target_split']['split_seed']}), and they are in the '{name}' split "
                    f"here (split seed {data.split_seed}): evaluate it on the split it was "
                    "pretrained with")


def check_classes(windows: Windows, splits: dict[str, np.ndarray],
                  names: Sequence[str] = ("train", "val", "test")) -> None:
    """Every split scored must hold every class of the task (macro-F1 and macro-AUROC are over
    all of them; multi-label: at least one window with each class)."""
    metric = "macro-AUROC" if windows.is_multilabel else "macro-F1"
    for name in names:
        if windows.is_multilabel:
            present = np.asarray(windows.indicator()[splits[name]].any(0))
        else:
            present = np.isin(np.arange(len(windows.classes)), windows.y[splits[name]])
        missing = [c for c, is_present in zip(windows.classes, present) if not is_present]
        if missing:
            raise DataError(f"split '{name}' has no window of class(es) {missing}: its {metric} "
                            "would not be comparable; use more records, another split_seed or "
                            "smaller validation/test shares")
