"""Pairwise soft-DTW within a batch: the hot path of Series2Vec's temporal targets.

Soft-DTW (Cuturi & Blondel, ICML 2017) between two univariate series ``a`` (length n) and
``b`` (length m), with the squared-Euclidean cost between scalar samples, is the value
``R[n, m]`` of the recursion

    R[0, 0] = 0,   R[i, 0] = R[0, j] = +inf   (i, j >= 1)
    R[i, j] = (a[i-1] - b[j-1])**2 + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1])
    softmin_gamma(r1, r2, r3) = -gamma * log(sum_k exp(-r_k / gamma))

It is the plain soft-DTW, not the divergence: ``sdtw(a, a)`` is generally negative.

Layouts: ``x`` is ``[B, T]`` (B series of T samples, numpy or torch); results are ``[B, B]``
symmetric matrices, diagonal included, in float64.

Two implementations that agree to ~1e-14 relative (and with tslearn):
- :func:`soft_dtw_numba` (CPU): a numba kernel, one thread per pair of the upper triangle
  (``prange``, symmetric fill), float64 throughout, soft-min computed stably (the minimum is
  factored out before ``exp``). Within a pair it sweeps the anti-diagonals of ``R``, whose
  cells are independent, with branch-free arithmetic that LLVM vectorises; three rolling
  diagonals of ``T + 2`` values stay in L1.
- the fused GPU kernels (:mod:`ecgnb.models.softdtw_gpu`): one launch per batch on the
  tensor's device and torch's current stream, a Triton kernel or, where Triton cannot run, a
  numba.cuda one; both float64, sweeping the anti-diagonals of ``R`` per pair.
- :func:`soft_dtw_torch` (any device): all pairs at once, sweeping the anti-diagonals
  ``i + j = s`` of ``R`` (2T sequential steps, each vectorised over pairs and cells): about 15
  kernel launches per diagonal, some 30,000 per batch at T = 720. It runs where no fused
  kernel can (with a warning), and on CPU (tests).

:func:`pairwise_soft_dtw` dispatches: CUDA tensors -> a fused kernel, everything else -> numba.
Where no fused kernel runs, it warns once and takes the torch sweep; with ``ECGNB_STRICT_GPU=1``
in the environment (``make gpu-check`` sets it) it raises instead, naming the cause. The first
numba call compiles (tens of seconds); ``cache=True`` keeps the CPU machine code in
``__pycache__`` for later processes. Threads: :func:`set_cpu_threads`.
"""
from __future__ import annotations

import math
import os
import warnings

import numba
import numpy as np
import torch
from numba import njit, prange

# "cuda": the first fused kernel that runs; "triton", "numba-cuda": that kernel only
METHODS = ("auto", "numba", "torch", "cuda", "triton", "numba-cuda")
FUSED = ("cuda", "triton", "numba-cuda")
STRICT_VARIABLE = "ECGNB_STRICT_GPU"  # set (not "0"): a CUDA tensor never leaves the fused kernel


# --------------------------------------------------------------------------- numba (CPU)
# The kernel is branch-free arithmetic so that LLVM vectorises each anti-diagonal (AVX2:
# 4 cells per instruction). exp and log are therefore written out as short series instead
# of libm calls (which do not vectorise); both are accurate to ~1e-14 relative, far below the
# 1e-5 the targets need. error_model="numpy" drops numba's ZeroDivisionError checks, whose
# branches would block vectorisation; fastmath stays off (no reassociation, inf kept exact).
_NUMBA = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)


@njit(inline="always", **_NUMBA)
def _exp_neg(z):
    """exp(-z) for z >= 0 (+inf allowed): (exp(-z/256))**256, degree-10 Taylor on [0, 0.157].

    z is capped at 40: exp(-40) < 2**-57 cannot change a sum >= 1. Relative error ~3e-14.
    """
    y = min(z, 40.0) * 0.00390625
    p = 1.0 - y * (1.0 - y * (1.0 / 2 - y * (1.0 / 6 - y * (1.0 / 24 - y * (
        1.0 / 120 - y * (1.0 / 720 - y * (1.0 / 5040 - y * (1.0 / 40320 - y * (
            1.0 / 362880 - y * (1.0 / 3628800))))))))))
    for _ in range(8):
        p = p * p
    return p


@njit(inline="always", **_NUMBA)
def _log_1_to_3(t):
    """log(t) for 1 <= t <= 3: 8 * atanh(u), u = (s - 1) / (s + 1), s = t**0.25 (u <= 0.137)."""
    s = math.sqrt(math.sqrt(t))
    u = (s - 1.0) / (s + 1.0)
    w = u * u
    q = 1.0 + w * (1.0 / 3 + w * (1.0 / 5 + w * (1.0 / 7 + w * (1.0 / 9 + w * (
        1.0 / 11 + w * (1.0 / 13 + w * (1.0 / 15)))))))
    return 8.0 * u * q


@njit(inline="always", **_NUMBA)
def _soft_min3(r1, r2, r3, gamma, inv_gamma):
    """Stable soft-min: m - gamma * log(1 + exp(-(mid - m)/gamma) + exp(-(hi - m)/gamma))."""
    low, high = min(r1, r2), max(r1, r2)
    r_min, r_mid = min(low, r3), max(low, r3)
    total = 1.0 + _exp_neg((high - r_min) * inv_gamma) + _exp_neg((r_mid - r_min) * inv_gamma)
    return r_min - gamma * _log_1_to_3(total)


@njit(**_NUMBA)
def _diagonal_step(r_diag, r_up, r_left, a, b, out, gamma):
    """One anti-diagonal: ``out[k] = (a[k] - b[k])**2 + softmin(r_diag[k], r_up[k], r_left[k])``.

    All arguments are aligned 1-d slices (zero-based, no aliasing), so the loop vectorises.
    """
    inv_gamma = 1.0 / gamma
    for k in range(out.shape[0]):
        diff = a[k] - b[k]
        out[k] = diff * diff + _soft_min3(r_diag[k], r_up[k], r_left[k], gamma, inv_gamma)


@njit(**_NUMBA)
def _soft_dtw_pair(a, b_reversed, gamma, before, last, current):
    """soft-DTW of ``a`` [n] and ``b`` [m] (given reversed); scratch rows are [n + 2].

    ``V_s[i] = R[i, s - i]`` (anti-diagonal s, indexed by row i); only the valid rows
    ``lo..hi`` are written, and their two neighbours are reset to +inf for the next steps.
    """
    n, m = a.shape[0], b_reversed.shape[0]
    before[:] = np.inf
    last[:] = np.inf
    current[:] = np.inf
    before[0] = 0.0  # V_0: R[0, 0] = 0; V_1 (R[0, 1], R[1, 0]) is all +inf
    for s in range(2, n + m + 1):
        lo, hi = max(1, s - m), min(n, s - 1)
        offset = m - s  # b[s - i - 1] == b_reversed[offset + i]
        _diagonal_step(before[lo - 1:hi], last[lo - 1:hi], last[lo:hi + 1], a[lo - 1:hi],
                       b_reversed[offset + lo:offset + hi + 1], current[lo:hi + 1], gamma)
        current[lo - 1] = np.inf
        current[hi + 1] = np.inf
        before, last, current = last, current, before
    return last[n]


@njit(parallel=True, **_NUMBA)
def _soft_dtw_upper(x, gamma, rows, cols):
    """soft-DTW of the pairs ``(x[rows[k]], x[cols[k]])``; ``x`` [B, T] float64 -> [B, B]."""
    n_pairs, length = rows.shape[0], x.shape[1]
    x_reversed = np.ascontiguousarray(x[:, ::-1])
    values = np.empty(n_pairs)
    for k in prange(n_pairs):
        scratch = np.empty((3, length + 2))
        values[k] = _soft_dtw_pair(x[rows[k]], x_reversed[cols[k]], gamma,
                                   scratch[0], scratch[1], scratch[2])
    out = np.empty((x.shape[0], x.shape[0]))
    for k in range(n_pairs):
        out[rows[k], cols[k]] = values[k]
        out[cols[k], rows[k]] = values[k]
    return out


def soft_dtw_numba(x: np.ndarray, gamma: float = 0.1) -> np.ndarray:
    """Pairwise soft-DTW ``[B, B]`` (float64) of ``x`` ``[B, T]`` with the numba CPU kernel."""
    x = np.ascontiguousarray(_as_2d(np.asarray(x)), dtype=np.float64)
    rows, cols = np.triu_indices(len(x))
    return _soft_dtw_upper(x, float(gamma), rows.astype(np.int64), cols.astype(np.int64))


# --------------------------------------------------------------------------- torch (GPU/CPU)
def soft_dtw_torch(x: torch.Tensor, gamma: float = 0.1,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Pairwise soft-DTW ``[B, B]`` of ``x`` ``[B, T]`` on ``x``'s device, by anti-diagonals.

    ``V_s[:, i] = R[i, s - i]`` holds anti-diagonal ``s`` of the padded ``R`` (``[P, T+2]``,
    +inf around the valid cells), for the P pairs of the upper triangle (diagonal included).
    """
    x = torch.as_tensor(x)
    x = _as_2d(x).to(dtype)
    n_series, length = x.shape
    rows, cols = torch.triu_indices(n_series, n_series, device=x.device)
    a, b = x[rows], x[cols]  # [P, T] each
    values = _anti_diagonal_sweep(a, b, float(gamma))
    out = torch.empty(n_series, n_series, dtype=dtype, device=x.device)
    out[rows, cols] = values
    out[cols, rows] = values
    return out


def _anti_diagonal_sweep(a: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R[T, T]`` for each pair ``(a[p], b[p])``, ``a``/``b`` [P, T]; returns [P].

    On diagonal ``s`` the valid rows are ``i = lo..hi``; their costs pair ``a[i-1]`` with
    ``b[s-i-1]``, a contiguous slice of ``a`` and of the reversed ``b``: no gathers.
    """
    n_pairs, length = a.shape
    b_reversed = b.flip(-1)  # b_reversed[:, length - 1 - k] = b[:, k]
    before = torch.full((n_pairs, length + 2), math.inf, dtype=a.dtype, device=a.device)
    last = before.clone()  # V_1: R[0, 1] = R[1, 0] = +inf
    current = before.clone()
    before[:, 0] = 0.0  # V_0: only R[0, 0] = 0
    for s in range(2, 2 * length + 1):
        lo, hi = max(1, s - length), min(length, s - 1)
        cost = (a[:, lo - 1:hi] - b_reversed[:, length - s + lo:length - s + hi + 1]) ** 2
        soft = _softmin3(before[:, lo - 1:hi], last[:, lo - 1:hi], last[:, lo:hi + 1], gamma)
        current[:, lo:hi + 1] = cost + soft
        current[:, lo - 1] = math.inf  # the neighbours that the next two diagonals read
        current[:, hi + 1] = math.inf
        before, last, current = last, current, before
    return last[:, length]


def _softmin3(r1: torch.Tensor, r2: torch.Tensor, r3: torch.Tensor, gamma: float) -> torch.Tensor:
    """Stable ``-gamma * log(sum exp(-r / gamma))`` over three same-shape tensors."""
    stacked = torch.stack((r1, r2, r3))
    return -gamma * torch.logsumexp(-stacked / gamma, dim=0)


# --------------------------------------------------------------------------- front door
def decimate_series(x, factor: int):
    """Block-average ``x`` ``[B, T]`` by ``factor``: ``[B, T // factor]``, same type as ``x``.

    Each output sample is the mean of ``factor`` consecutive inputs (a boxcar anti-alias filter
    followed by keeping one sample in ``factor``); the ``T % factor`` trailing samples are
    dropped. Identical on numpy and torch inputs; ``factor=1`` returns ``x`` unchanged.
    Soft-DTW then costs ``factor**2`` times less.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"decimate must be >= 1, got {factor}")
    if factor == 1:
        return x
    n_out = x.shape[-1] // factor
    if n_out < 1:
        raise ValueError(f"decimate={factor} leaves no sample of a length-{x.shape[-1]} series")
    kept = x[..., :n_out * factor]
    return kept.reshape(*x.shape[:-1], n_out, factor).mean(-1)


def pairwise_soft_dtw(x, gamma: float = 0.1, decimate: int = 1, method: str = "auto"):
    """Pairwise soft-DTW ``[B, B]`` (float64, diagonal included) of ``x`` ``[B, T]``.

    ``x`` may be numpy or torch; a ``[B, 1, T]`` batch of univariate windows is accepted too.
    ``decimate > 1`` computes on :func:`decimate_series` ``(x, decimate)``. ``method``: "auto"
    (a fused kernel for CUDA tensors, numba otherwise), "numba", "torch", or a fused kernel:
    "cuda" (the first that runs), "triton", "numba-cuda".
    Returns numpy for numpy input, a tensor on ``x``'s device for torch input. No gradients.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    is_torch = isinstance(x, torch.Tensor)
    if method in FUSED and not _on_gpu(x):
        raise ValueError(f"method {method!r} needs a CUDA tensor")
    with torch.no_grad():
        x = decimate_series(_as_2d(x.detach() if is_torch else np.asarray(x)), decimate)
        on_gpu = _on_gpu(x)
        if method in FUSED or (method == "auto" and on_gpu):
            values = _fused(x, gamma, method)
            if values is not None:
                return values
        if method == "torch" or (method == "auto" and on_gpu):
            values = soft_dtw_torch(torch.as_tensor(x), gamma)
            return values if is_torch else values.numpy()
        values = soft_dtw_numba(x.cpu().numpy() if is_torch else x, gamma)
        return torch.from_numpy(values).to(x.device) if is_torch else values


def _on_gpu(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_cuda


def is_strict() -> bool:
    """Whether a CUDA tensor must get a fused kernel (``ECGNB_STRICT_GPU`` set, not "0")."""
    return os.environ.get(STRICT_VARIABLE, "0") not in ("", "0")


_WARNED: list[str] = []  # the fallback warning, once per process


def _fused(x: torch.Tensor, gamma: float, method: str):
    """A fused kernel's result; None where none runs and ``method`` is "auto" (warned once),
    except in strict mode, which raises :class:`~ecgnb.models.softdtw_gpu.KernelUnavailable`."""
    from ecgnb.models import softdtw_gpu

    kernels = softdtw_gpu.KERNELS if method in ("auto", "cuda") else (method,)
    try:
        return softdtw_gpu.fused_soft_dtw(x, gamma, kernels)
    except softdtw_gpu.KernelUnavailable as exc:
        if method != "auto" or is_strict():
            raise
        if not _WARNED:
            _WARNED.append(str(exc))
            warnings.warn(f"soft-DTW: {exc}; using the torch anti-diagonal sweep "
                          f"({STRICT_VARIABLE}=1 makes this an error)", RuntimeWarning,
                          stacklevel=3)
    return None


def set_cpu_threads(n_threads: int | None = None) -> int:
    """Threads used by the numba kernel (default: every core numba was started with)."""
    n_threads = numba.config.NUMBA_NUM_THREADS if n_threads is None else int(n_threads)
    numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
    return numba.get_num_threads()


def _as_2d(x):
    """``[B, T]`` view of ``[B, T]`` or ``[B, 1, T]`` input; anything else is an error."""
    if x.ndim == 3 and x.shape[1] == 1:
        x = x[:, 0, :]
    if x.ndim != 2:
        raise ValueError(f"expected series of shape [B, T] or [B, 1, T], got {tuple(x.shape)}")
    if x.shape[-1] < 1 or x.shape[0] < 1:
        raise ValueError(f"empty batch of series: {tuple(x.shape)}")
    return x
