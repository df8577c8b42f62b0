"""Folders of recordings named by a dataset card (:mod:`ecgnb.data.cards`): WFDB records
(``*.hea`` with their signal files) or NumPy archives (``*.npz`` with ``signal`` ``[T]`` or
``[T, C]``, optional ``fs`` and ``leads``), anywhere under the card's root.

A record's name is its path under the root without the suffix (``p01/rec3``). Its sampling rate is
what the file says, else the card's ``fs``; without ``fs`` in the card every record must be at
one rate. One lead is read, resampled to the common ``fs`` and cut to ``window_s`` by the card's
length policy (``long``: crop_center, crop_start or windows; ``short``: pad or drop).
"""
from __future__ import annotations

import warnings
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
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
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
    """The sampling rate the file states, else the card's ``fs``."""
    if path.suffix == ".hea":
        fields = _header_record_line(card, name, path)
        stated = float(fields[2].split("/")[0].split("(")[0]) if len(fields) > 2 else None
    else:
        with np.load(path) as archive:
            stated = float(archive["fs"]) if "fs" in archive.files else None
    if stated is None and card.fs is None:
        raise card.error(f"record {name}: the file states no sampling rate; set fs in the card")
    return stated if stated is not None else float(card.fs)


def _header_record_line(card, name: str, path: Path) -> list[str]:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and ln[0] != "#"]
    except (OSError, UnicodeDecodeError) as exc:
        raise card.error(f"record {name}: unreadable header ({exc})") from None
    return lines[0].split() if lines else []


def check_rates(card, rates: dict[str, float]) -> None:
    """Without ``fs`` in the card, every record is at one rate (two rates in one folder are often
    two exports mixed); with it, each record is resampled from its own."""
    distinct = sorted(set(rates.values()))
    if card.fs is None and len(distinct) > 1:
        first = {rate: next(n for n, r in rates.items() if r == rate) for rate in distinct[:2]}
        raise card.error(f"mixed sampling rates: record {first[distinct[0]]} at "
                         f"{distinct[0]:g} Hz, record {first[distinct[1]]} at {distinct[1]:g} Hz; "
                         "keep one rate, or set fs in the card to resample each from its own")


def read_lead(card, name: str, path: Path, lead) -> np.ndarray:
    """One lead (a name, case-insensitive, or an index) of a record, float64 ``[T]``."""
    if path.suffix == ".hea":
        try:
            header = wfdb.rdheader(str(path.with_suffix("")))
            names = list(header.sig_name or [])
            index = _lead_index(card, name, names, lead)
            signal = wfdb.rdrecord(str(path.with_suffix("")), channels=[index]).p_signal[:, 0]
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - wfdb raises many types for corrupt files
            raise card.error(f"record {name}: unreadable WFDB record ({type(exc).__name__}: "
                             f"{exc})") from None
    else:
        with np.load(path) as archive:
            if "signal" not in archive.files:
                raise card.error(f"record {name}: {path.name} has no 'signal' array "
                                 f"(arrays: {archive.files})")
            signal = np.asarray(archive["signal"], dtype=np.float64)
            signal = signal[:, None] if signal.ndim == 1 else signal
            names = [str(v) for v in archive["leads"]] if "leads" in archive.files else []
            signal = signal[:, _lead_index(card, name, names, lead, signal.shape[1])]
    if not np.isfinite(signal).all():
        raise card.error(f"record {name}: lead {lead} has "
                         f"{np.count_nonzero(~np.isfinite(signal))} NaN/inf samples")
    return signal.astype(np.float64)


def _lead_index(card, name: str, names: list[str], lead, n_leads: int | None = None) -> int:
    n_leads = len(names) if n_leads is None else n_leads
    if isinstance(lead, int) and not isinstance(lead, bool):
        if 0 <= lead < n_leads:
            return lead
    else:
        folded = [n.casefold() for n in names]
        if str(lead).casefold() in folded:
            return folded.index(str(lead).casefold())
    raise card.error(f"record {name}: unknown lead {lead!r} (leads: {names or n_leads})")


def cut(card, signal: np.ndarray, fs_in: float, fs: float) -> list[np.ndarray]:
    """``signal`` at ``fs`` Hz cut to ``window_s`` by the length policy (none: dropped)."""
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


# --------------------------------------------------------------------------- a card's data
def load_labelled(card, root: Path, fs: float) -> tuple[Windows, dict[str, np.ndarray] | None]:
    """The windows of a labelled wfdb/npz card and the splits its ``split`` column gives."""
    on_disk = find_records(card, root)
    table = read_labels(card, root, on_disk)
    rates = {r: record_rate(card, r, on_disk[r]) for r in table["record"]}
    check_rates(card, rates)
    classes = class_order(card, table["label"])
    xs, rows, dropped = [], [], 0
    for i, row in enumerate(table.itertuples(index=False)):
        parts = cut(card, read_lead(card, row.record, on_disk[row.record], card.channel),
                    rates[row.record], fs)
        dropped += not parts
        xs += parts
        rows += [i] * len(parts)
    if dropped:
        warnings.warn(f"card {card.path}: {dropped} record(s) shorter than window_s "
                      f"{card.window_s:g} s dropped (short: drop)", DataWarning, stacklevel=3)
    if not xs:
        raise card.error("no record left to make a window of")
    kept = table.iloc[rows]
    windows = Windows(x=np.stack(xs).astype(np.float32)[:, None, :],
                      y=np.array([classes.index(v) for v in kept["label"]], dtype=np.int64),
                      groups=kept["group"].to_numpy(str), domains=np.full(len(xs), "ECG"),
                      fs=float(fs), classes=classes)
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
        leads = [signals.resample(read_lead(card, name, path, c), rates[name], fs)
                 for c in card.channels]
        starts = signals.sliding_windows(min(len(x) for x in leads), n, stride)
        if fraction < 1.0 and len(starts):
            starts = starts[stratified_share(np.zeros(len(starts)), fraction, rng)]
        for channel, x in zip(card.channels, leads):
            xs.append(x[starts[:, None] + np.arange(n)] if len(starts) else np.zeros((0, n)))
            groups += [name] * len(starts)
            domains += [str(channel)] * len(starts)
    if not groups:
        raise card.error(f"no record is {card.window_s:g} s long: no window")
    x = signals.zscore(np.concatenate(xs)).astype(np.float32)[:, None, :]
    return Windows(x=x, y=np.full(len(x), -1, dtype=np.int64), groups=np.asarray(groups),
                   domains=np.asarray(domains), fs=float(fs), classes=())
