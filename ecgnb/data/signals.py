"""Pure signal-processing helpers (scipy does the work). Arrays are ``[..., T]`` along the last axis."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis from ``fs_in`` to ``fs_out`` Hz."""
    if fs_in <= 0 or fs_out <= 0:
        raise ValueError(f"sampling rates must be positive, got {fs_in} -> {fs_out}")
    if fs_in == fs_out:
        return np.asarray(x, dtype=np.float64)
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def resample_to_length(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Resample windows ``[..., T]`` to exactly ``n_samples`` (Fourier method, windows are short)."""
    if x.shape[-1] == n_samples:
        return np.asarray(x, dtype=np.float64)
    return signal.resample(x, n_samples, axis=-1)


def decimate(x: np.ndarray, factor: int) -> np.ndarray:
    """Anti-aliased, zero-phase integer decimation along the last axis."""
    if factor == 1:
        return np.asarray(x, dtype=np.float64)
    return signal.decimate(x, factor, ftype="fir", zero_phase=True, axis=-1)


def zscore(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Standardise every series along the last axis; constant series become zeros."""
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / np.maximum(std, eps)


def sliding_windows(n_samples: int, window: int, stride: int) -> np.ndarray:
    """Start indices of every full window of ``window`` samples, ``stride`` apart."""
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, stride, dtype=np.int64)


def modal_labels(labels: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Most frequent label of each window (ties -> smallest label), in O(len(labels))."""
    values = np.unique(labels)
    counts = np.empty((len(values), len(starts)), dtype=np.int64)
    for i, value in enumerate(values):
        cum = np.concatenate([[0], np.cumsum(labels == value)])
        counts[i] = cum[starts + window] - cum[starts]
    return values[counts.argmax(axis=0)]


def power_spectrum(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density of ``[..., T]``: returns (frequencies in Hz, power)."""
    nperseg = min(x.shape[-1], 256)
    return signal.welch(x, fs=fs, nperseg=nperseg, axis=-1)
