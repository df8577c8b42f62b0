"""Folders of recordings named by a dataset card (:mod:`ecgnb.data.cards`): WFDB records
(``*.hea`` with their signal files) or NumPy archives (``*.npz`` with ``signal`` ``[T]`` or
``[T, C]``, optional ``fs`` and ``leads``), anywhere under the card's root.

A record's name is its path under the root without the suffix (``p01/rec3``). Its sampling rate is
what the file says, else the card's ``fs``; without ``fs`` in the card every record must be at
one rate. The card's lead (``channel``) or leads (``channels``) are read, resampled to the common
``fs`` and cut to ``window_s`` by the card's length policy (``long``: crop_center, crop_start or
windows; ``short``: pad or drop), each lead alike. A multi-label card's label cells hold
``;``-separated classes and become an indicator matrix (:class:`~ecgnb.data.windows.Windows`).
"""
from __future__ import annotations

import contextlib
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ecgnb.config import DataWarning
from ecgnb.data import signals
from ecgnb.data.splits import stratified_share
from ecgnb.data.windows import DataError, Windows

SPLITS = ("train", "val", "test")
LABEL_COLUMNS = ("record", "label", "group")
MULTILABEL_COLUMN = "labels"  # a multi-label card's classes, ';'-separated (or in "label")


def find_records(card, root: Path) -> dict[str, Path]:
    """Record name -> file (``.hea`` or ``.npz``) of every record under ``root``."""
    suffix = ".hea" if card.format == "wfdb" else ".npz"
    found = {p.relative_to(root).with_suffix("").as_posix(): p
             for p in sorted(root.rglob(f"*{suffix}"))}
    if not found:
        raise card.error(f"no {card.format} record (*{suffix}) under {root}")
    return found


def read_labels(card, root: Path, on_disk: dict[str, Path]) -> pd.DataFrame:
    """The label CSV, checked: its columns, one row per record, every record on disk, a split
    column (where present) of train/val/test; records on disk without a label are a warning."""
    path = root / card.labels
    if not path.is_file():
        raise card.error(f"label file {path} not found (labels: a CSV under root with columns "
                         "record,label,group[,split])")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise card.error(f"label file {path} is empty: it needs a header line "
                         "record,label,group[,split] and one row per record") from None
    if card.multilabel and MULTILABEL_COLUMN in table.columns:
        if "label" in table.columns:
            raise card.error(f"{path}: both a 'label' and a '{MULTILABEL_COLUMN}' column; keep "
                             "one")
        table = table.rename(columns={MULTILABEL_COLUMN: "label"})
    elif MULTILABEL_COLUMN in table.columns and "label" not in table.columns:
        raise card.error(f"{path}: a '{MULTILABEL_COLUMN}' column (several classes per record, "
                         "';'-separated) needs multilabel: true in the card")
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise card.error(f"{path}: column(s) {missing} missing; found {list(table.columns)}")
    table["record"] = [r.removesuffix(".hea").removesuffix(".npz") for r in table["record"]]
    twice = table["record"][table["record"].duplicated()].tolist()
    if twice:
        raise card.error(f"{path}: record {twice[0]} is labelled twice")
    empty = table[(table[list(LABEL_COLUMNS)] == "").any(axis=1)]
    if len(empty):
        raise card.error(f"{path}: record {empty['record'].iloc[0] or '(no name)'} has an "
                         "empty record, label or group")
    absent = [r for r in table["record"] if r not in on_disk]
    if absent:
        raise card.error(f"record {absent[0]} of {path.name} is not on disk under {root} "
                         f"({len(absent)} such record(s))")
    if "split" in table.columns:
        odd = table[~table["split"].isin(SPLITS)]
        if len(odd):
            raise card.error(f"{path}: record {odd['record'].iloc[0]} has split "
                             f"'{odd['split'].iloc[0]}'; splits are {list(SPLITS)}")
    unlabelled = len(set(on_disk) - set(table["record"]))
    if unlabelled:
        warnings.warn(f"card {card.path}: {unlabelled} record(s) on disk have no label in "
                      f"{path.name} and are left out", DataWarning, stacklevel=3)
    return table


def label_sets(card, path: Path, table: pd.DataFrame) -> list[tuple[str, ...]]:
    """Each row's classes: its label cell split at ``;`` (a multi-label card)."""
    sets = []
    for record, cell in zip(table["record"], table["label"]):
        found = tuple(dict.fromkeys(c.strip() for c in cell.split(";") if c.strip()))
        if not found:
            raise card.error(f"{path}: record {record} has no class in '{cell}'")
        sets.append(found)
    return sets


def multilabel_order(card, path: Path, table: pd.DataFrame, sets) -> tuple[str, ...]:
    """The card's ``classes`` (every class of a cell must be one of them), else the sorted
    classes of all cells."""
    if not card.classes:
        return tuple(sorted({c for found in sets for c in found}))
    classes = tuple(str(c) for c in card.classes)
    for record, found in zip(table["record"], sets):
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise card.error(f"{path}: record {record} has class '{unknown[0]}', which is not "
                             f"among classes {list(classes)}")
    return classes


def class_order(card, labels) -> tuple[str, ...]:
    """The card's ``classes`` (every label must be one of them), else the sorted labels."""
    found = sorted(set(labels))
    if not card.classes:
        return tuple(found)
    unknown = [c for c in found if c not in card.classes]
    if unknown:
        raise card.error(f"label(s) {unknown} are not among classes {list(card.classes)}")
    return tuple(str(c) for c in card.classes)


# --------------------------------------------------------------------------- one record
def record_rate(card, name: str, path: Path) -> float:
    """The sampling rate the file states, else the card's ``fs``; a stated rate must be > 0."""
    if path.suffix == ".hea":
        fields = _header_record_line(card, name, path)
        text = fields[2].split("/")[0].split("(")[0] if len(fields) > 2 else None
    else:
        with _npz(card, name, path) as archive:
            text = _npz_array(card, name, path, archive, "fs") if "fs" in archive.files else None
    try:
        stated = None if text is None else float(np.asarray(text, dtype=float).item())
    except (TypeError, ValueError):
        raise card.error(f"record {name}: unparsable sampling rate {text!r} in {path.name}") \
            from None
    if stated is not None and not (np.isfinite(stated) and stated > 0):
        raise card.error(f"record {name}: sampling rate {stated:g} Hz in {path.name}; a rate "
                         "must be a number > 0")
    if stated is None and card.fs is None:
        raise card.error(f"record {name}: the file states no sampling rate; set fs in the card")
    return stated if stated is not None else float(card.fs)


def _header_record_line(card, name: str, path: Path) -> list[str]:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and ln[0] != "#"]
    except (OSError, UnicodeDecodeError) as exc:
        raise card.error(f"record {name}: unreadable header ({exc})") from None
    return lines[0].split() if lines else []


@contextlib.contextmanager
def _npz(card, name: str, path: Path):
    """``path`` opened as an npz archive (a zip of arrays); anything else is a DataError."""
    try:
        archive = np.load(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise card.error(f"record {name}: {path.name} is not an npz archive (a zip of arrays "
                         "written by numpy.savez)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise card.error(f"record {name}: {path.name} is a single .npy array, not an npz "
                         "archive; write numpy.savez(path, signal=..., fs=...)")
    with archive:
        yield archive


def _npz_array(card, name: str, path: Path, archive, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError:
        raise card.error(f"record {name}: array '{key}' of {path.name} holds Python objects "
                         "(pickled), which are not loaded; save it as numbers") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip member raises many types
        raise card.error(f"record {name}: array '{key}' of {path.name} is unreadable "
                         f"({type(exc).__name__}: {exc})") from None


def check_rates(card, rates: dict[str, float]) -> None:
    """Without ``fs`` in the card, every record is at one rate (two rates in one folder are often
    two exports mixed); with it, each record is resampled from its own."""
    distinct = sorted(set(rates.values()))
    if card.fs is None and len(distinct) > 1:
        first = {rate: next(n for n, r in rates.items() if r == rate) for rate in distinct[:2]}
        raise card.error(f"mixed sampling rates: record {first[distinct[0]]} at "
                         f"{distinct[0]:g} Hz, record {first[distinct[1]]} at {distinct[1]:g} Hz; "
                         "keep one rate, or set fs in the card to resample each from its own")


def read_leads(card, name: str, path: Path, leads) -> tuple[np.ndarray, list[str]]:
    """The ``leads`` of a record (names, case-insensitive, or indices; ``("all",)``: every
    lead), float64 ``[C, T]``, and their names (the file's, else their indices)."""
    if path.suffix == ".hea":
        signal, names = _read_wfdb(card, name, path, leads)
    else:
        with _npz(card, name, path) as archive:
            if "signal" not in archive.files:
                raise card.error(f"record {name}: {path.name} has no 'signal' array "
                                 f"(arrays: {archive.files})")
            signal = np.asarray(_npz_array(card, name, path, archive, "signal"))
            names = ([str(v) for v in _npz_array(card, name, path, archive, "leads")]
                     if "leads" in archive.files else [])
        if signal.ndim not in (1, 2) or not np.issubdtype(signal.dtype, np.number):
            raise card.error(f"record {name}: 'signal' of {path.name} is {signal.dtype} of shape "
                             f"{signal.shape}; expected numbers [T] or [T, C]")
        signal = (signal[:, None] if signal.ndim == 1 else signal).astype(np.float64).T
        index = _lead_indices(card, name, names, leads, len(signal))
        signal, names = signal[index], _names(names, index)
    if signal.shape[-1] == 0:
        raise card.error(f"record {name}: no samples (a zero-length record)")
    bad = ~np.isfinite(signal)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise card.error(f"record {name}: lead {names[row]} has {np.count_nonzero(bad[row])} "
                         "NaN/inf samples")
    return signal, names


def _read_wfdb(card, name: str, path: Path, leads) -> tuple[np.ndarray, list[str]]:
    try:
        header = wfdb.rdheader(str(path.with_suffix("")))
        names = list(header.sig_name or [])
        index = _lead_indices(card, name, names, leads, len(names))
        if not header.sig_len:
            raise card.error(f"record {name}: no samples (a zero-length record)")
        signal = wfdb.rdrecord(str(path.with_suffix("")), channels=index).p_signal
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - wfdb raises many types for corrupt files
        raise card.error(f"record {name}: unreadable WFDB record ({type(exc).__name__}: "
                         f"{exc})") from None
    return np.asarray(signal, dtype=np.float64).T, _names(names, index)


def _names(names: list[str], index: list[int]) -> list[str]:
    return [names[i] if names else str(i) for i in index]


def is_all(leads) -> bool:
    """Whether ``leads`` is ``("all",)``: every lead of each record."""
    return [str(c).casefold() for c in leads] == ["all"]


def _lead_indices(card, name: str, names: list[str], leads, n_leads: int) -> list[int]:
    if is_all(leads):
        return list(range(n_leads))
    return [_lead_index(card, name, names, lead, n_leads) for lead in leads]


def _lead_index(card, name: str, names: list[str], lead, n_leads: int) -> int:
    if isinstance(lead, int) and not isinstance(lead, bool):
        if 0 <= lead < n_leads:
            return lead
    else:
        folded = [n.casefold() for n in names]
        if str(lead).casefold() in folded:
            return folded.index(str(lead).casefold())
    raise card.error(f"record {name}: unknown lead {lead!r} (leads: {names or n_leads})")


def check_lead_names(card, first: tuple[str, list[str]], name: str, names: list[str]) -> None:
    """Every record of a multi-lead card gives its leads in one order: the first record's."""
    if [n.casefold() for n in names] != [n.casefold() for n in first[1]]:
        raise card.error(f"record {name} has leads {names} where record {first[0]} has "
                         f"{first[1]}: channels {list(card.leads)} need the same leads, in one "
                         "order, in every record")


def cut(card, signal: np.ndarray, fs_in: float, fs: float) -> list[np.ndarray]:
    """``signal`` ``[T]`` (or ``[C, T]``, each lead alike) at ``fs`` Hz cut to ``window_s`` by
    the length policy (none: dropped)."""
    if signal.ndim == 2:
        return [np.stack(parts) for parts in zip(*(cut(card, lead, fs_in, fs)
                                                   for lead in signal))]
    x = signals.resample(signal, fs_in, fs)
    n = round(card.window_s * fs)
    if abs(len(x) - n) <= 1:
        return [signals.resample_to_length(x, n)]
    if len(x) < n:
        if card.short == "drop":
            return []
        before = (n - len(x)) // 2
        return [np.pad(x, (before, n - len(x) - before), mode="edge")]
    if card.long == "windows":
        return [x[i:i + n] for i in range(0, len(x) - n + 1, n)]
    start = 0 if card.long == "crop_start" else (len(x) - n) // 2
    return [x[start:start + n]]


def read_windows(card, named: list[tuple[str, Path]], rates: dict[str, float], fs: float):
    """The windows ``[N, C, T]`` of the records ``named`` ((name, file) pairs) in order, the
    position in ``named`` of each window's record ``[N]``, and the lead names of a card's
    ``channels`` (those of the first record; every record must have them alike), else ()."""
    xs, rows, dropped, first = [], [], 0, None
    for i, (name, path) in enumerate(named):
        signal, names = read_leads(card, name, path, card.leads)
        first = first or (name, names)
        if card.channels is not None:
            check_lead_names(card, first, name, names)
        parts = cut(card, signal, rates[name], fs)
        dropped += not parts
        xs += [part.astype(np.float32) for part in parts]  # half the memory of 12 leads
        rows += [i] * len(parts)
    if dropped:
        warnings.warn(f"card {card.path}: {dropped} record(s) shorter than window_s "
                      f"{card.window_s:g} s dropped (short: drop)", DataWarning, stacklevel=4)
    if not xs:
        raise card.error("no record left to make a window of")
    leads = tuple(first[1]) if card.channels is not None else ()
    return np.stack(xs), np.asarray(rows, dtype=np.int64), leads


def indicator(sets, classes: tuple[str, ...]) -> np.ndarray:
    """int8 ``[N, K]``: 1 where row ``i``'s class set holds ``classes[k]``."""
    out = np.zeros((len(sets), len(classes)), dtype=np.int8)
    for i, found in enumerate(sets):
        out[i, [classes.index(c) for c in found]] = 1
    return out


# --------------------------------------------------------------------------- a card's data
def load_labelled(card, root: Path, fs: float) -> tuple[Windows, dict[str, np.ndarray] | None]:
    """The windows of a labelled wfdb/npz card and the splits its ``split`` column gives."""
    on_disk = find_records(card, root)
    table = read_labels(card, root, on_disk)
    rates = {r: record_rate(card, r, on_disk[r]) for r in table["record"]}
    check_rates(card, rates)
    if card.multilabel:
        sets = label_sets(card, root / card.labels, table)
        classes = multilabel_order(card, root / card.labels, table, sets)
    else:
        classes = class_order(card, table["label"])
    x, rows, leads = read_windows(card, [(r, on_disk[r]) for r in table["record"]], rates, fs)
    kept = table.iloc[rows]
    y = (indicator([sets[i] for i in rows], classes) if card.multilabel else
         np.array([classes.index(v) for v in kept["label"]], dtype=np.int64))
    windows = Windows(x=x, y=y, groups=kept["group"].to_numpy(str),
                      domains=np.full(len(x), "ECG"), fs=float(fs), classes=classes, leads=leads)
    if "split" not in kept.columns:
        return windows, None
    return windows, {s: np.flatnonzero(kept["split"].to_numpy() == s) for s in SPLITS}


def load_unlabelled(card, root: Path, fs: float, fraction: float, seed: int) -> Windows:
    """Windows of every record of a corpus card (``window_s`` every ``stride_s``), each channel
    its own row, z-scored per window; a seeded ``fraction`` of each record's windows."""
    on_disk = find_records(card, root)
    rates = {r: record_rate(card, r, p) for r, p in on_disk.items()}
    check_rates(card, rates)
    n, rng = round(card.window_s * fs), np.random.default_rng(seed)
    stride = max(1, round((card.stride_s or card.window_s) * fs))
    xs, groups, domains = [], [], []
    for name, path in on_disk.items():
        signal, names = read_leads(card, name, path, card.leads)
        leads = [signals.resample(lead, rates[name], fs) for lead in signal]
        starts = signals.sliding_windows(min(len(x) for x in leads), n, stride)
        if fraction < 1.0 and len(starts):
            starts = starts[stratified_share(np.zeros(len(starts)), fraction, rng)]
        labels = names if is_all(card.leads) else [str(c) for c in card.leads]
        for channel, x in zip(labels, leads):
            xs.append(x[starts[:, None] + np.arange(n)] if len(starts) else np.zeros((0, n)))
            groups += [name] * len(starts)
            domains += [channel] * len(starts)
    if not groups:
        raise card.error(f"no record is {card.window_s:g} s long: no window")
    x = signals.zscore(np.concatenate(xs)).astype(np.float32)[:, None, :]
    return Windows(x=x, y=np.full(len(x), -1, dtype=np.int64), groups=np.asarray(groups),
                   domains=np.asarray(domains), fs=float(fs), classes=())
