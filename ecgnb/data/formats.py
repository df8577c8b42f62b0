"""Real-format readers: each returns :class:`~ecgnb.data.windows.Windows`.

- ``load_fragment``: the PhysioNet ECG Fragment DB (six class folders, WFDB records in ``frag/``).
- ``load_wesad``: the WESAD subject pickles (Python-2 pickles, chest signals at 700 Hz).
Every bad input raises :class:`~ecgnb.data.windows.DataError` naming the file and the problem (an
empty class folder, a flat-line channel, a non-ASCII record name, chest signals whose duration
disagrees with the wrist's); data that load but deserve a look raise a
:class:`~ecgnb.config.DataWarning`.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import wfdb

from ecgnb import provenance
from ecgnb.config import DataWarning
from ecgnb.data import signals
from ecgnb.data.splits import stratified_share
from ecgnb.data.windows import DataError, Windows

FRAGMENT_CLASSES = ("1_Dangerous_VFL_VF", "2_Special_Form_VTTdP", "3_Threatening_VT",
                    "4_Potential_Dangerous", "5_Supraventricular", "6_Sinus_rhythm")
WESAD_CLASSES = ("baseline", "stress", "amusement", "meditation")  # labels 1..4 -> y 0..3
WESAD_CHANNELS = ("ECG", "EMG", "EDA", "Temp", "Resp")
WESAD_FS = 700.0
WRIST_FS = {"ACC": 32.0, "BVP": 64.0, "EDA": 4.0, "TEMP": 4.0}  # Empatica E4 rates
DURATION_TOLERANCE = 0.1  # chest vs wrist recording length, relative
FRAGMENT_SECONDS = 2.0
RECORD_NAME = re.compile(r"^(?P<source>\d+)_")


# --------------------------------------------------------------------------- Fragment DB
def load_fragment(root, fs: float = 360.0) -> Windows:
    """Read the ECG Fragment DB folder as published; resample every record to ``fs``.

    Returns ``x`` ``[N, 1, 2*fs]``, ``y`` in the fixed class order, ``groups`` = source record
    (the number that starts the record name, e.g. ``418`` of ``418_C_VF_277s_frag``).
    """
    root = _existing_dir(root, "Fragment DB root")
    provenance.note_read(root)
    xs, ys, groups = [], [], []
    for label, name in enumerate(FRAGMENT_CLASSES):
        frag = root / name / "frag"
        if not frag.is_dir():
            raise DataError(f"{frag}: class folder missing (expected the six folders "
                            f"{', '.join(FRAGMENT_CLASSES)}, each with frag/)")
        headers = sorted(frag.glob("*.hea"))
        if not headers:
            raise DataError(f"{frag}: class folder has no WFDB records (*.hea); every class needs "
                            "records (an absent class would count as zero in macro-F1)")
        for header in headers:
            xs.append(_read_fragment(header, fs))
            ys.append(label)
            groups.append(_source_record(header))
    x = np.stack(xs).astype(np.float32)[:, None, :]
    return Windows(x=x, y=np.asarray(ys, dtype=np.int64), groups=np.asarray(groups),
                   domains=np.full(len(x), "ECG"), fs=float(fs), classes=FRAGMENT_CLASSES)


def _read_fragment(header: Path, fs: float) -> np.ndarray:
    fs_header = _header_fs(header)
    _check_signal_files(header)
    try:
        record = wfdb.rdrecord(str(header.with_suffix("")))
    except Exception as exc:  # noqa: BLE001 - wfdb raises many types for corrupt files
        raise DataError(f"{header}: unreadable WFDB record ({type(exc).__name__}: {exc})") from exc
    sig = record.p_signal
    if sig is None or sig.size == 0:
        raise DataError(f"{header}: record has no samples")
    lead = record.sig_name.index("MLII") if "MLII" in (record.sig_name or []) else 0
    sig = sig[:, lead].astype(np.float64)
    expected = round(FRAGMENT_SECONDS * fs_header)
    if abs(len(sig) - expected) > 1:
        raise DataError(f"{header}: wrong length: {len(sig)} samples at {fs_header:g} Hz, "
                        f"expected {expected} ({FRAGMENT_SECONDS:g} s)")
    if not np.isfinite(sig).all():
        raise DataError(f"{header}: {np.count_nonzero(~np.isfinite(sig))} NaN/inf samples")
    if len(sig) and np.ptp(sig) == 0:
        raise DataError(f"{header}: lead {(record.sig_name or ['0'])[lead]} is a flat line (every "
                        f"sample {sig[0]:g}): a disconnected lead or an empty recording")
    out = signals.resample(sig, fs_header, fs)
    return signals.resample_to_length(out, round(FRAGMENT_SECONDS * fs))


def _header_lines(header: Path) -> list[str]:
    try:
        return [ln for ln in header.read_text(errors="strict").splitlines()
                if ln.strip() and not ln.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{header}: unreadable header ({exc})") from exc


def _check_signal_files(header: Path) -> None:
    """The record's name and signal files are ASCII and present (wfdb drops non-ASCII letters
    and would report another, non-existent file as missing)."""
    names = [header.stem] + [ln.split()[0] for ln in _header_lines(header)[1:]]
    odd = [n for n in names if not n.isascii()]
    if odd:
        raise DataError(f"{header}: non-ASCII record or signal file name {odd[0]!r}, which wfdb "
                        "cannot read; rename the .hea/.dat files (and the names inside the "
                        "header) to ASCII")
    for name in dict.fromkeys(names[1:]):
        if not (header.parent / name).is_file():
            raise DataError(f"{header}: signal file {header.parent / name} is missing")


def _header_fs(header: Path) -> float:
    """Sampling rate from the header's record line; wfdb would silently default to 250 Hz."""
    lines = _header_lines(header)
    fields = lines[0].split() if lines else []
    if len(fields) < 3:
        raise DataError(f"{header}: header has no sampling rate (record line: {lines[:1]})")
    try:
        fs = float(fields[2].split("/")[0].split("(")[0])
    except ValueError as exc:
        raise DataError(f"{header}: unparsable sampling rate '{fields[2]}'") from exc
    if not 50.0 <= fs <= 10_000.0:
        raise DataError(f"{header}: implausible sampling rate {fs:g} Hz for an ECG fragment")
    return fs


def _source_record(header: Path) -> str:
    match = RECORD_NAME.match(header.stem)
    if match is None:
        warnings.warn(f"{header.name}: name does not start with a source-record number; "
                      "using the whole record name as its group", stacklevel=3)
        return header.stem
    return match["source"]


# --------------------------------------------------------------------------- WESAD
def load_wesad(root, channels: Sequence[str] = ("ECG",), fs: float = 360.0,
               window_s: float = 2.0, stride: float = 0.2, subjects: Sequence[str] | None = None,
               fraction: float = 1.0, seed: int = 0) -> Windows:
    """WESAD chest signals with the study's recipe (docs/deviations.md, "Data").

    700 Hz -> decimate to 350 Hz -> ``window_s`` windows every ``stride * window_s`` -> keep
    windows whose modal label is 1..4 -> z-score each window -> resample to ``fs``. Each channel
    of a window becomes its own univariate row: ``x`` ``[N, 1, window_s*fs]``, ``domains`` =
    channel, ``groups`` = subject, ``y`` = condition (0 baseline .. 3 meditation).
    ``fraction`` < 1 keeps a seeded share of each subject's windows, stratified by label (the
    study's 20 % subsets of "All" and "no-ECG"); every channel keeps the same windows.
    """
    paths = wesad_paths(root, subjects)
    parts = [p for p in wesad_windows(paths, channels, fs, window_s, stride, fraction, seed)
             if len(p)]
    if not parts:
        raise DataError(f"{root}: no window with a modal label in 1..4 in subjects "
                        f"{[p.parent.name for p in paths]}")
    return Windows.concat(parts)


def wesad_paths(root, subjects: Sequence[str] | None = None) -> list[Path]:
    """The subject pickles ``load_wesad`` reads, in its order (``subjects`` or every S<id>/)."""
    return _wesad_paths(_existing_dir(root, "WESAD root"), subjects)


def wesad_windows(paths: Sequence[Path], channels: Sequence[str] = ("ECG",), fs: float = 360.0,
                  window_s: float = 2.0, stride: float = 0.2, fraction: float = 1.0,
                  seed: int = 0) -> Iterator[Windows]:
    """``load_wesad``'s windows one subject at a time (one pickle in memory at once)."""
    unknown = sorted(set(channels) - set(WESAD_CHANNELS))
    if unknown or not channels:
        raise DataError(f"unknown WESAD chest channel(s) {unknown or list(channels)}; "
                        f"known: {list(WESAD_CHANNELS)}")
    rng = np.random.default_rng(seed)
    for path in paths:
        yield _wesad_subject(path, channels, fs, window_s, stride, fraction, rng)


def _wesad_paths(root: Path, subjects: Sequence[str] | None) -> list[Path]:
    if subjects is None:
        found = [p.name for p in root.iterdir() if re.fullmatch(r"S\d+", p.name) and p.is_dir()]
        subjects = sorted(found, key=lambda s: int(s[1:]))
    if not subjects:
        raise DataError(f"{root}: no subject folders S<id>/ found")
    paths = [root / s / f"{s}.pkl" for s in subjects]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: subject pickle missing")
        provenance.note_read(path)
    return paths


# What a WESAD pickle holds besides builtin containers and strings: NumPy arrays and scalars
# (and, in a pickle re-saved by Python 3, the bytes of their buffers). Anything else a pickle
# asks for (a function to call, a class to build) is refused unloaded.
PICKLE_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                  for name in ("_reconstruct", "scalar")} | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _DataOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds data (:data:`PICKLE_GLOBALS`) and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which is no data type "
                                         "of a WESAD pickle; refused without running it")
        return super().find_class(module, name)


def read_wesad_pickle(path: Path) -> dict:
    """Load one (Python-2) WESAD pickle with :class:`_DataOnlyUnpickler` (a tampered file cannot
    run code); keys normalised to ``str``; structure checked."""
    try:
        with open(path, "rb") as f:
            raw = _DataOnlyUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt pickles raise many types
        raise DataError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from exc
    data = _str_keys(raw)
    if not isinstance(data, dict) or "signal" not in data or "label" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: expected keys 'signal' and 'label', found {keys}")
    if not isinstance(data["signal"], dict) or "chest" not in data["signal"]:
        raise DataError(f"{path}: 'signal' has no 'chest' entry")
    return data


def _str_keys(obj):
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _str_keys(v)
                for k, v in obj.items()}
    return obj


def _wesad_subject(path, channels, fs, window_s, stride, fraction, rng) -> Windows:
    data = read_wesad_pickle(path)
    chest, labels = data["signal"]["chest"], np.asarray(data["label"]).ravel()
    _check_chest_rate(path, data["signal"].get("wrist"), len(labels))
    half = labels[::2]  # label stream at 350 Hz, aligned with the decimated signals
    window = round(window_s * WESAD_FS / 2)
    starts = signals.sliding_windows(len(half), window, max(1, round(stride * window)))
    modal = signals.modal_labels(half, starts, window) if len(starts) else starts
    keep = starts[(modal >= 1) & (modal <= 4)]
    y = modal[(modal >= 1) & (modal <= 4)] - 1
    if not len(keep):
        present = sorted(int(v) for v in np.unique(labels))
        warnings.warn(f"{path}: subject {path.parent.name} left out: no {window_s:g}-s window has "
                      f"a modal label in 1..4 (labels present: {present})", DataWarning,
                      stacklevel=3)
        fraction = 1.0
    if fraction < 1.0:
        chosen = stratified_share(y, fraction, rng)
        keep, y = keep[chosen], y[chosen]
    xs = [_wesad_channel(path, chest, name, len(labels), keep, window, fs, window_s)
          for name in channels]
    n = len(keep)
    subject = path.parent.name
    return Windows(x=np.concatenate(xs)[:, None, :].astype(np.float32),
                   y=np.tile(y.astype(np.int64), len(channels)),
                   groups=np.full(n * len(channels), subject),
                   domains=np.repeat(np.asarray(channels), n), fs=float(fs),
                   classes=WESAD_CLASSES)


def _check_chest_rate(path: Path, wrist, n_labels: int) -> None:
    """The chest recording (700 Hz) lasts as long as the wrist recording: a chest stream at
    another rate (e.g. a 350 Hz copy) would otherwise load with every window twice as long."""
    present = [(k, v) for k, v in (wrist or {}).items() if k in WRIST_FS and np.size(v)]
    if not present:
        return  # no wrist signals to compare with
    name, values = present[0]
    wrist_s, chest_s = len(np.asarray(values)) / WRIST_FS[name], n_labels / WESAD_FS
    if abs(chest_s / wrist_s - 1.0) > DURATION_TOLERANCE:
        raise DataError(f"{path}: the chest signals and labels last {chest_s:.0f} s at "
                        f"{WESAD_FS:g} Hz but wrist {name} lasts {wrist_s:.0f} s at "
                        f"{WRIST_FS[name]:g} Hz: the chest signals are probably at "
                        f"{WESAD_FS * chest_s / wrist_s:.0f} Hz; use the original 700 Hz pickle")


def _wesad_channel(path, chest, name, n_labels, starts, window, fs, window_s) -> np.ndarray:
    if name not in chest:
        raise DataError(f"{path}: chest channel '{name}' missing; present: {sorted(chest)}")
    sig = np.asarray(chest[name], dtype=np.float64)
    if sig.ndim != 2 or sig.shape[1] != 1:
        sig = sig.reshape(len(sig), -1)
        if sig.shape[1] != 1:
            raise DataError(f"{path}: chest '{name}' has shape {sig.shape}, expected (N, 1)")
    sig = sig[:, 0]
    if len(sig) != n_labels:
        raise DataError(f"{path}: chest '{name}' has {len(sig)} samples but the 700 Hz label "
                        f"stream has {n_labels}: wrong sampling rate or truncated file")
    if not np.isfinite(sig).all():
        raise DataError(f"{path}: chest '{name}' has {np.count_nonzero(~np.isfinite(sig))} "
                        "NaN/inf samples")
    if len(sig) and np.ptp(sig) == 0:
        raise DataError(f"{path}: chest '{name}' is a flat line (every sample {sig[0]:g}): a "
                        "disconnected sensor; leave the channel or the subject out")
    half = signals.decimate(sig, 2)
    if not len(starts):
        return np.zeros((0, round(window_s * fs)))
    windows = half[starts[:, None] + np.arange(window)]
    return signals.resample_to_length(signals.zscore(windows), round(window_s * fs))


def _existing_dir(root, what: str) -> Path:
    if root is None:
        raise DataError(f"{what} not set")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: {what} does not exist or is not a folder")
    return root
