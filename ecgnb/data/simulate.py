"""The embedded default data: a Fragment-DB-like WFDB tree and WESAD-like pickles, made from a seed.

Both trees use the real on-disk formats so that the loaders that read the real datasets read
these too. ``embedded_data`` generates them once under ``cache_dir`` and reuses them afterwards.
Arrhythmia waveforms live in ``ecgnb.data.rhythms``; the WESAD physiology is built on neurokit2's
simulators (ECGSYN beat, respiration, EDA, EMG).
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import neurokit2 as nk
import numpy as np
import wfdb
from scipy import signal as sps
from tqdm.auto import tqdm

from ecgnb import provenance
from ecgnb.files import atomic_folder
from ecgnb.data.rhythms import (CLASS_FOLDERS, FRAGMENT_S, band_noise, fragment_name, plan_episodes,
                                render_waves, simulate_episode)

GENERATOR_VERSION = "1"  # the folder layout; the generator's code is in the folder name too
GENERATOR_FILES = ("data/simulate.py", "data/rhythms.py", "data/signals.py")

ADC_GAIN = 200.0  # adu per mV, as in the MIT-BIH Malignant Ventricular Ectopy Database
FS_CHEST = 700
ECG_R_INDEX = 245  # R-peak sample of the 1-s ECG beat template
COMPLETE_MARKER = ".complete"


# ----------------------------------------------------------------------------------------------
# Fragment DB

def make_fragment_db(root, seed: int = 0, n_records: int = 40, n_fragments: int = 600,
                     fs: float = 250.0, min_records: int | None = None) -> Path:
    """Write a Fragment-DB-like tree: root/<class folder>/frag/<name>.hea/.dat and full/<name>.csv.

    Each record is one 2-s single-lead fragment (signal 'MLII', mV, fmt 212) cut from a longer
    simulated episode of one of n_records source records; every class comes from at least
    ``min_records`` records (None: 3 from 20 records on, else 2). Returns root.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    if min_records is None:
        min_records = 3 if n_records >= 20 else 2
    # Every class gets at least ~1/20 of the fragments (capped at 8) from at least min_records.
    episodes = plan_episodes(n_records, n_fragments, rng, min_records=min_records,
                             min_per_class=int(np.clip(n_fragments // 20, 1, 8)))
    for folder in CLASS_FOLDERS:
        (root / folder / "frag").mkdir(parents=True, exist_ok=True)
        (root / folder / "full").mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence([seed, 1]).spawn(len(episodes))
    for episode, child in zip(tqdm(episodes, desc="fragment db", leave=False), seeds):
        x = simulate_episode(episode.patient, episode.code, episode.duration_s, fs,
                             np.random.default_rng(child))
        for offset in episode.fragment_s:
            start = int(round(offset * fs))
            name = fragment_name(episode.patient.source_id, episode.code, episode.start_s + offset)
            _write_fragment(root / CLASS_FOLDERS[episode.label], name,
                            x[start:start + int(round(FRAGMENT_S * fs))], fs)
    return root


def _write_fragment(class_dir: Path, name: str, x_mv: np.ndarray, fs: float) -> None:
    """Write x_mv (n_samples,) as WFDB frag/<name> and its CSV copy full/<name>.csv."""
    digital = np.clip(np.round(x_mv * ADC_GAIN), -2047, 2047).astype(np.int32)
    wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["MLII"], d_signal=digital[:, None],
                fmt=["212"], adc_gain=[ADC_GAIN], baseline=[0], write_dir=str(class_dir / "frag"))
    np.savetxt(class_dir / "full" / f"{name}.csv", digital / ADC_GAIN, fmt="%.3f")


# ----------------------------------------------------------------------------------------------
# WESAD

@dataclass(frozen=True)
class Physiology:
    """State of one subject during one protocol segment."""

    hr_bpm: float
    breath_bpm: float
    breath_depth: float     # relative respiration amplitude
    scr_per_min: float      # skin-conductance responses per minute
    eda_us: float           # tonic skin conductance, microsiemens
    temp_c: float           # chest skin temperature
    emg_per_min: float      # EMG bursts per minute
    movement_g: float       # accelerometer movement noise, g


def _subject_baseline(rng: np.random.Generator) -> Physiology:
    return Physiology(hr_bpm=rng.uniform(60, 80), breath_bpm=rng.uniform(12, 17), breath_depth=1.0,
                      scr_per_min=rng.uniform(0.5, 2.0), eda_us=rng.uniform(1.0, 8.0),
                      temp_c=rng.uniform(33.0, 35.0), emg_per_min=rng.uniform(0.2, 1.0),
                      movement_g=rng.uniform(0.005, 0.015))


def _condition(base: Physiology, label: int, rng: np.random.Generator) -> Physiology:
    """Physiology of a condition: 0 transient, 1 baseline, 2 stress, 3 amusement, 4 meditation."""
    u = rng.uniform
    if label == 2:
        return replace(base, hr_bpm=base.hr_bpm + u(10, 25), breath_bpm=base.breath_bpm + u(3, 6),
                       breath_depth=u(0.6, 0.9), scr_per_min=3 * base.scr_per_min + u(1, 3),
                       eda_us=base.eda_us + u(1, 3), temp_c=base.temp_c - u(0.2, 0.6),
                       emg_per_min=base.emg_per_min + u(4, 8), movement_g=2 * base.movement_g)
    if label == 3:
        return replace(base, hr_bpm=base.hr_bpm + u(0, 5), breath_bpm=base.breath_bpm + u(0, 2),
                       scr_per_min=1.5 * base.scr_per_min, eda_us=base.eda_us + u(0, 0.5),
                       emg_per_min=base.emg_per_min + u(1, 3))
    if label == 4:
        return replace(base, hr_bpm=base.hr_bpm - u(3, 8), breath_bpm=u(6, 9),
                       breath_depth=u(1.3, 1.8),
                       scr_per_min=0.5 * base.scr_per_min, eda_us=base.eda_us - u(0, 0.5),
                       temp_c=base.temp_c + u(0.1, 0.3), emg_per_min=0.5 * base.emg_per_min,
                       movement_g=0.7 * base.movement_g)
    if label == 0:
        return replace(base, hr_bpm=base.hr_bpm + u(2, 8), breath_bpm=base.breath_bpm + u(0, 2),
                       emg_per_min=base.emg_per_min + u(2, 5), movement_g=u(0.03, 0.08))
    return base


def _protocol(block_s: float, rng: np.random.Generator,
              total_s: float | None = None) -> list[tuple[int, float]]:
    """(label, duration_s) segments: baseline, stress/amusement in either order, two meditations.

    Conditions are separated by label-0 transients; the last transient holds a few s of label 7.
    ``total_s`` longer than the protocol lengthens every label-0 transient by the same amount so
    that the recording lasts ``total_s`` (the real recordings are mostly unlabelled time).
    Durations are multiples of 0.25 s so that every sampling rate gets whole samples.
    """
    middle = [2, 4, 3, 4] if rng.random() < 0.5 else [3, 4, 2, 4]
    blocks = [(1, block_s)] + [(c, block_s / 2 if c == 4 else block_s) for c in middle]
    segments = []
    for label, duration in blocks:
        segments += [(0, max(4.0, rng.uniform(0.08, 0.15) * block_s)), (label, duration)]
    segments += [(7, rng.uniform(2.0, 4.0)), (0, max(4.0, 0.05 * block_s))]
    n_transients = sum(label == 0 for label, _ in segments)
    extra = max(0.0, (total_s or 0.0) - sum(d for _, d in segments)) / n_transients
    return [(label, float(np.round((d + (extra if label == 0 else 0.0)) * 4) / 4))
            for label, d in segments]


def _segment_channels(state: Physiology, n: int, rng: np.random.Generator) -> dict:
    """Stochastic chest channels of one segment at 700 Hz, each (n,): Resp, EMG, phasic EDA."""
    def seed() -> int:  # neurokit2 simulators take integer seeds
        return int(rng.integers(2**31 - 1))
    fs, duration_s = FS_CHEST, n / FS_CHEST
    n_bursts = int(rng.poisson(state.emg_per_min * duration_s / 60))
    n_scr = int(rng.poisson(state.scr_per_min * duration_s / 60))
    common = {"duration": duration_s, "length": n, "sampling_rate": fs}
    long = {"duration": max(duration_s, 30.0), "length": max(n, 30 * fs), "sampling_rate": fs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resp = nk.rsp_simulate(**long, respiratory_rate=state.breath_bpm, noise=0,
                               random_state=seed())
        emg = nk.emg_simulate(**common, burst_number=n_bursts, noise=0.01, random_state=seed(),
                              burst_duration=min(1.0, 0.5 * duration_s / max(n_bursts, 1)))
        scr = nk.eda_simulate(**common, scr_number=n_scr, drift=0, noise=0, random_state=seed())
    return {"Resp": state.breath_depth * np.asarray(resp)[:n], "EMG": np.asarray(emg)[:n] - 0.08,
            "EDA": np.asarray(scr)[:n] - 1.0}


def _crossfade(parts: list[np.ndarray], starts: list[int], n_total: int, pad: int) -> np.ndarray:
    """Blend segments simulated with `pad` extra samples on each side; linear ramps over 2*pad."""
    out, weight = np.zeros(n_total), np.zeros(n_total)
    for part, start in zip(parts, starts):
        k = np.arange(part.size)
        ramp = np.minimum(1.0, (np.minimum(k, part.size - 1 - k) + 1) / (2 * pad))
        lo, hi = start - pad, start - pad + part.size
        cut = slice(max(0, -lo), part.size - max(0, hi - n_total))
        out[max(lo, 0):min(hi, n_total)] += ramp[cut] * part[cut]
        weight[max(lo, 0):min(hi, n_total)] += ramp[cut]
    return out / weight


def _tonic(values: list[float], lengths: list[int], tau_s: float) -> np.ndarray:
    """Per-segment targets followed with a first-order lag of tau_s; (sum(lengths),) at 700 Hz."""
    step = FS_CHEST // 4  # the lag runs at 4 Hz
    target = np.repeat(values, [-(-n // step) for n in lengths])
    alpha = 1.0 - np.exp(-1.0 / (4 * tau_s))
    level, _ = sps.lfilter([alpha], [1.0, alpha - 1.0], target, zi=[(1.0 - alpha) * target[0]])
    return np.interp(np.arange(sum(lengths)), np.arange(target.size) * step, level)


def _ecg_template(rng: np.random.Generator) -> np.ndarray:
    """One subject-specific ECGSYN beat at 60 bpm, 700 Hz, R at sample 245; shape (700,), mV.

    The edges are detrended to zero so that beats can be overlapped and added.
    """
    shape = {"ai": (rng.uniform(0.8, 2.0), -5, 30, -rng.uniform(4, 10), rng.uniform(0.4, 1.2))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = np.asarray(nk.ecg_simulate(duration=8, sampling_rate=FS_CHEST, heart_rate=60,
                                       heart_rate_std=0, noise=0,
                                       random_state=int(rng.integers(2**31 - 1)), **shape))
    r = 3 * FS_CHEST + int(np.argmax(x[3 * FS_CHEST:4 * FS_CHEST]))
    beat = x[r - ECG_R_INDEX:r - ECG_R_INDEX + FS_CHEST]
    return beat - np.linspace(beat[0], beat[-1], beat.size)


def _beat_times(hr_bpm: np.ndarray, resp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """R times (s) driven by a heart-rate curve hr_bpm (N,) at 700 Hz, with respiratory sinus
    arrhythmia (RR lengthens on expiration of resp (N,)), a 0.1 Hz Mayer wave and jitter."""
    resp_z = (resp - resp.mean()) / (resp.std() + 1e-12)
    rsa, mayer, phase = rng.uniform(0.02, 0.05), rng.uniform(0.01, 0.03), rng.uniform(0, 6.3)
    times, t, end = [], rng.uniform(0.2, 1.0), hr_bpm.size / FS_CHEST
    while t < end:
        i = int(t * FS_CHEST)
        rr = 60.0 / hr_bpm[i] * (1.0 - rsa * resp_z[i] + mayer * np.sin(0.2 * np.pi * t + phase)
                                 + 0.01 * rng.standard_normal())
        times.append(t)
        t += rr
    return np.array(times)


def _place_beats(n: int, template: np.ndarray, beat_s: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Add template (700,) at R times beat_s (B,) scaled by amp (B,); QT shortens with sqrt(RR)."""
    rr = np.clip(np.diff(beat_s, prepend=beat_s[0] - 1.0), 0.3, 1.5)
    offs = np.arange(-ECG_R_INDEX, int(1.1 * (FS_CHEST - ECG_R_INDEX)))
    idx = np.round(beat_s * FS_CHEST).astype(int)[:, None] + offs
    tau = idx / FS_CHEST - beat_s[:, None]
    late = tau > 0.06
    tau[late] = 0.06 + (tau - 0.06)[late] / np.broadcast_to(np.sqrt(rr)[:, None], tau.shape)[late]
    grid = (np.arange(template.size) - ECG_R_INDEX) / FS_CHEST
    val = amp[:, None] * np.interp(tau, grid, template, left=0.0, right=0.0)
    inside = (idx >= 0) & (idx < n)
    return np.bincount(idx[inside], weights=val[inside], minlength=n)


def _chest_ecg(hr_bpm: np.ndarray, resp: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """ECG (N,) in mV at 700 Hz following hr_bpm (N,), modulated by resp (N,); also its R times (s).

    Breathing modulates RR (sinus arrhythmia), the beat amplitude (+-5 %) and the baseline.
    """
    beat_s = _beat_times(hr_bpm, resp, rng)
    resp_z = (resp - resp.mean()) / (resp.std() + 1e-12)
    amp = rng.uniform(0.7, 1.5) * (1.0 + 0.05 * resp_z[(beat_s * FS_CHEST).astype(int)])
    ecg = _place_beats(resp.size, _ecg_template(rng), beat_s, amp)
    return ecg + 0.05 * resp_z + 0.01 * rng.standard_normal(resp.size), beat_s


def _subject_signals(rng: np.random.Generator, block_s: float,
                     total_s: float | None = None) -> tuple[dict, dict, np.ndarray]:
    """Chest channels (N,) or (N, 3) at 700 Hz, wrist channels at their own rates, labels (N,)."""
    base = _subject_baseline(rng)
    segments = _protocol(block_s, rng, total_s)
    states = [_condition(base, label if label < 5 else 0, rng) for label, _ in segments]
    lengths = [int(round(d * FS_CHEST)) for _, d in segments]
    starts, n_total, pad = list(np.cumsum([0] + lengths[:-1])), sum(lengths), FS_CHEST // 2
    parts = [_segment_channels(s, n + 2 * pad, rng) for s, n in zip(states, lengths)]
    chest = {k: _crossfade([p[k] for p in parts], starts, n_total, pad) for k in parts[0]}
    hr_bpm = _tonic([s.hr_bpm for s in states], lengths, 8.0)
    chest["ECG"], beat_s = _chest_ecg(hr_bpm, chest["Resp"], rng)
    chest["Resp"] = rng.uniform(2.0, 5.0) * chest["Resp"]
    chest["EMG"] = rng.uniform(0.02, 0.06) * chest["EMG"]
    chest["EDA"] = chest["EDA"] + _tonic([s.eda_us for s in states], lengths, 30.0)
    chest["Temp"] = _tonic([s.temp_c for s in states], lengths, 90.0) \
        + 0.005 * rng.standard_normal(n_total)
    movement = _tonic([s.movement_g for s in states], lengths, 2.0)
    chest["ACC"] = _acc(n_total, FS_CHEST, movement, rng)
    label = np.repeat([lab for lab, _ in segments], lengths).astype(np.int32)
    return chest, _wrist(chest, beat_s, movement, rng), label


def _acc(n: int, fs: float, movement_g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Three-axis accelerometer (n, 3) in g: a posture gravity vector plus 0.1-3 Hz movement."""
    gravity = np.array([0.9, -0.1, -0.35]) + rng.normal(0, 0.1, 3)
    gravity /= np.linalg.norm(gravity)
    level = movement_g[np.linspace(0, movement_g.size - 1, n).astype(int), None]
    wiggle = np.stack([band_noise(n, fs, (0.1, 3.0), rng) for _ in range(3)], axis=1)
    return gravity + level * wiggle


def _wrist(chest: dict, beat_s: np.ndarray, movement_g: np.ndarray,
           rng: np.random.Generator) -> dict:
    """Empatica-like wrist channels: ACC (1/64 g, 32 Hz), BVP (64 Hz), EDA and TEMP (4 Hz).

    BVP pulses follow the ECG beats after a pulse transit time: a systolic and a diastolic Gaussian.
    """
    n_chest = chest["EDA"].size
    n_bvp, n_acc = n_chest * 64 // FS_CHEST, n_chest * 32 // FS_CHEST
    arrival = beat_s + rng.uniform(0.2, 0.3)
    pulse = np.array([[1.0, 0.1, 0.06], [0.35, 0.38, 0.09]])  # amp, delay s, width s
    bvp = render_waves(n_bvp, 64, arrival[:, None] + pulse[:, 1], pulse[:, 0], pulse[:, 2])
    bvp += 0.05 * rng.standard_normal(n_bvp)
    return {
        "ACC": np.round(64 * _acc(n_acc, 32, 3 * movement_g, rng)),
        "BVP": rng.uniform(30, 80) * (bvp - bvp.mean())[:, None],
        "EDA": rng.uniform(0.1, 0.5) * _block_mean(chest["EDA"], 175)[:, None],
        "TEMP": np.round(_block_mean(chest["Temp"], 175) - rng.uniform(1.0, 3.0), 2)[:, None],
    }


def _block_mean(x: np.ndarray, step: int) -> np.ndarray:
    """Mean over consecutive blocks of `step` samples (x.size must be a multiple of step)."""
    return x.reshape(-1, step).mean(axis=1)


def make_wesad(root, seed: int = 0, subjects=("S2", "S3", "S4", "S5"),
               minutes_per_condition: float = 1.5, minutes_per_subject: float | None = None
               ) -> Path:
    """Write root/S{id}/S{id}.pkl per subject, in the layout of the real (Python 2) WESAD files.

    Per subject: {"signal": {"chest": {ACC (N, 3), ECG, EMG, EDA, Temp, Resp (N, 1)} at 700 Hz,
    "wrist": {ACC (M, 3) 32 Hz, BVP 64 Hz, EDA 4 Hz, TEMP 4 Hz}}, "label": (N,) int32, "subject"}.
    ``minutes_per_subject``: the recording's length, the extra time spent in label-0 transients
    (None: the protocol's own length, about 4.6 x ``minutes_per_condition``).
    Each subject's data depend only on (seed, subject id); subjects are simulated and written one
    at a time, so memory holds one subject. Returns root.
    """
    root = Path(root)
    total_s = None if minutes_per_subject is None else 60.0 * minutes_per_subject
    for subject in tqdm(subjects, desc="wesad", leave=False):
        rng = np.random.default_rng([seed, int(subject.lstrip("S"))])
        chest, wrist, label = _subject_signals(rng, minutes_per_condition * 60.0, total_s)
        chest = {k: np.ascontiguousarray(v.reshape(v.shape[0], -1), dtype=np.float64)
                 for k, v in chest.items()}
        wrist = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in wrist.items()}
        (root / subject).mkdir(parents=True, exist_ok=True)
        data = {"signal": {"chest": chest, "wrist": wrist}, "label": label, "subject": subject}
        write_py2_pickle(data, root / subject / f"{subject}.pkl")
        del chest, wrist, label, data
    return root


# ----------------------------------------------------------------------------------------------
# Python-2 style pickles

class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler that writes str and bytes as Python 2 byte strings.

    Loading then gives str with encoding="latin1" and bytes with encoding="bytes", like a pickle
    written by Python 2. NumPy globals are written under their Python-2-era module, numpy.core.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<I", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            self.write(pickle.GLOBAL + f"{module.replace('numpy._core', 'numpy.core')}\n"
                       f"{name or obj.__qualname__}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)



def write_py2_pickle(obj, path) -> None:
    """Pickle obj to path as Python 2 would (protocol 2, byte strings); see _Py2Pickler."""
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


# ----------------------------------------------------------------------------------------------
# Cache

# The sizes of the embedded data. "paper" has the real datasets' sizes: WESAD's 15 subjects
# (S2-S17, S12 absent as in the release), about 100 min each, of which 4 x 11.7 min are labelled
# 1-4 (about 7,000 ECG windows of 2 s every 0.4 s per subject, 105,000 in all); 1,000 fragments
# from 22 source records (the MIT-BIH Malignant Ventricular Ectopy Database's record count; the
# fragment count and class shares are an estimate, see docs/data.md).
SIZES = ("small", "demo", "paper")
PAPER_SUBJECTS = tuple(f"S{i}" for i in range(2, 18) if i != 12)


def embedded_settings(size: str = "demo", scale: float = 1.0) -> dict:
    """Generator settings of one size; ``scale`` < 1 shortens the recordings and thins the
    fragments (every subject and class kept), for tests of the paper size's structure."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got '{size}'")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if size == "small":
        settings = {"fragment": {"n_records": 12, "n_fragments": 120},
                    "wesad": {"subjects": ["S2", "S3", "S4"], "minutes_per_condition": 0.5}}
    elif size == "demo":
        settings = {"fragment": {"n_records": 40, "n_fragments": 600},
                    "wesad": {"subjects": ["S2", "S3", "S4", "S5"], "minutes_per_condition": 1.5}}
    else:
        # 7 records per class at least, so that every grouped split holds every class
        settings = {"fragment": {"n_records": 22, "n_fragments": 1000, "min_records": 7},
                    "wesad": {"subjects": list(PAPER_SUBJECTS), "minutes_per_condition": 11.7,
                              "minutes_per_subject": 100.0}}
    if scale < 1.0:
        wesad = settings["wesad"]
        wesad["minutes_per_condition"] = round(wesad["minutes_per_condition"] * scale, 3)
        if "minutes_per_subject" in wesad:
            wesad["minutes_per_subject"] = round(wesad["minutes_per_subject"] * scale, 3)
        frag = settings["fragment"]
        frag["n_fragments"] = max(60, round(frag["n_fragments"] * scale))
    return settings


def embedded_data(cache_dir="data", seed: int = 0, small: bool = False, size: str | None = None,
                  scale: float = 1.0) -> dict:
    """Generate (once) and return {"fragment": Path, "wesad": Path} of the embedded default data.

    ``size``: "small" (tests: 120 fragments from 12 records, 3 subjects x 0.5 min per condition),
    "demo" (600 fragments from 40 records, 4 subjects) or "paper" (the real sizes, see
    :data:`SIZES`); None: "small" if ``small`` else "demo". ``scale`` < 1 shrinks a size
    (tests). The trees live in cache_dir/embedded-v{GENERATOR_VERSION}-{generator_digest()}-seed{seed}[-size][-xscale]/.
    They are built in a temporary folder and renamed into place, so an interrupted generation
    never looks complete.
    """
    size = size or ("small" if small else "demo")
    suffix = "" if size == "demo" else f"-{size}"
    suffix += "" if scale == 1.0 else f"-x{scale:g}"
    name = f"embedded-v{GENERATOR_VERSION}-{generator_digest()}-seed{seed}{suffix}"
    final = Path(cache_dir) / name
    settings = embedded_settings(size, scale)

    def write(tmp: Path) -> dict:
        make_fragment_db(tmp / "fragment", seed=seed, **settings["fragment"])
        make_wesad(tmp / "wesad", seed=seed, **settings["wesad"])
        return {"generator_version": GENERATOR_VERSION, "seed": seed, "size": size,
                "scale": scale, **settings}
    generate_once(final, write, "embedded data")
    return {"fragment": final / "fragment", "wesad": final / "wesad"}


def generator_digest(files=GENERATOR_FILES) -> str:
    """8 hex digits of the code that generates the embedded data: an edit to it gives another
    folder, so no run reads data that the generator would no longer write."""
    root = Path(__file__).resolve().parents[1]
    return provenance.source_hash({f: provenance.file_digest(root / f) for f in files})[:8]


def generate_once(final: Path, write, what: str) -> Path:
    """Build the folder ``final`` once: ``write(tmp)`` fills a private temporary folder and
    returns its completion record (written last), then the folder is published by one rename
    (:func:`ecgnb.files.atomic_folder`), so an interrupted generation never looks complete. A
    complete folder is returned as it is."""
    if (final / COMPLETE_MARKER).exists():
        return final
    if final.exists():
        warnings.warn(f"removing incomplete {what} at {final}")
        shutil.rmtree(final)
    with atomic_folder(final) as tmp:
        record = write(tmp)
        (tmp / COMPLETE_MARKER).parent.mkdir(parents=True, exist_ok=True)
        (tmp / COMPLETE_MARKER).write_text(json.dumps(record, indent=1))
    return final


def folder_size(path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
