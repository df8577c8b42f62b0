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
- :func:`soft_dtw_cuda` (GPU): one fused numba.cuda kernel, launched once per batch on torch's
  current stream (no synchronisation): one thread block per pair, whose threads sweep the
  anti-diagonals of ``R`` in shared memory (three rolling diagonals of ``T + 2`` float64),
  a barrier between diagonals. Float64, soft-min factored like the CPU kernel, with the
  device's ``exp`` and ``log``. Tests run it under numba's CUDA simulator
  (``NUMBA_ENABLE_CUDASIM=1``, :func:`soft_dtw_cuda_arrays` on numpy arrays).
- :func:`soft_dtw_torch` (any device): all pairs at once, sweeping the anti-diagonals
  ``i + j = s`` of ``R`` (2T sequential steps, each vectorised over pairs and cells): about 15
  kernel launches per diagonal, some 20,000 per batch at T = 720. It runs where the CUDA kernel
  cannot be compiled (no NVVM), and on CPU (tests).

:func:`pairwise_soft_dtw` dispatches: CUDA tensors -> the CUDA kernel (the torch path, with a
warning, when numba cannot compile for the device), everything else -> numba. The first numba
call compiles (tens of seconds); ``cache=True`` keeps the CPU machine code in ``__pycache__`` for
later processes. Threads: :func:`set_cpu_threads`.
"""
from __future__ import annotations

import math
import warnings

import numba
import numpy as np
import torch
from numba import cuda, njit, prange

METHODS = ("auto", "numba", "torch", "cuda")
CUDA_THREADS = 256  # threads per pair: each handles every 256th cell of a diagonal


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


# --------------------------------------------------------------------------- numba.cuda (GPU)
@cuda.jit(device=True)
def _soft_min3_device(r1, r2, r3, gamma):
    """Stable soft-min of three values (+inf allowed, not all three)."""
    r_min = min(r1, min(r2, r3))
    total = (math.exp((r_min - r1) / gamma) + math.exp((r_min - r2) / gamma)
             + math.exp((r_min - r3) / gamma))
    return r_min - gamma * math.log(total)


@cuda.jit
def _soft_dtw_blocks(x, rows, cols, gamma, out):
    """Block ``k`` computes soft-DTW of ``(x[rows[k]], x[cols[k]])`` into ``out`` (both halves).

    Shared memory (dynamic, ``3 * (T + 2)`` float64) holds diagonals ``s % 3``; diagonal ``s``
    keeps ``R[i, s - i]`` at offset ``i``, as in the CPU kernel. Threads stride over the valid
    rows ``lo..hi`` of each diagonal; a barrier separates the diagonals.
    """
    k, tid, n_threads = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    length = x.shape[1]
    width = length + 2
    a, b = rows[k], cols[k]
    diagonals = cuda.shared.array(0, dtype=numba.float64)
    for i in range(tid, 3 * width, n_threads):
        diagonals[i] = math.inf  # V_1 (R[0, 1], R[1, 0]) and the padding: +inf
    cuda.syncthreads()
    if tid == 0:
        diagonals[0] = 0.0  # V_0: R[0, 0] = 0
    cuda.syncthreads()
    for s in range(2, 2 * length + 1):
        current, last, before = (s % 3) * width, ((s - 1) % 3) * width, ((s - 2) % 3) * width
        lo, hi = max(1, s - length), min(length, s - 1)
        for i in range(lo + tid, hi + 1, n_threads):
            diff = x[a, i - 1] - x[b, s - i - 1]
            diagonals[current + i] = diff * diff + _soft_min3_device(
                diagonals[before + i - 1], diagonals[last + i - 1], diagonals[last + i], gamma)
        if tid == 0:  # the neighbours that the next two diagonals read
            diagonals[current + lo - 1] = math.inf
            diagonals[current + hi + 1] = math.inf
        cuda.syncthreads()
    if tid == 0:
        value = diagonals[((2 * length) % 3) * width + length]
        out[a, b] = value
        out[b, a] = value


def soft_dtw_cuda_arrays(x, rows, cols, gamma: float, out, stream=0,
                         n_threads: int | None = None) -> None:
    """Launch :func:`_soft_dtw_blocks` on ``x [B, T]`` float64, the pairs ``(rows, cols)`` and
    ``out [B, B]`` float64 (device arrays, or numpy under the CUDA simulator): one launch.
    ``n_threads`` per block defaults to ``T`` rounded up to a warp, at most :data:`CUDA_THREADS`."""
    length = x.shape[1]
    n_threads = n_threads or min(CUDA_THREADS, 32 * -(-length // 32))
    shared_bytes = 3 * (length + 2) * 8
    _soft_dtw_blocks[len(rows), n_threads, stream, shared_bytes](x, rows, cols, float(gamma), out)


def soft_dtw_cuda(x: torch.Tensor, gamma: float = 0.1) -> torch.Tensor:
    """Pairwise soft-DTW ``[B, B]`` (float64) of a CUDA tensor ``x`` ``[B, T]`` with the fused
    kernel, queued on torch's current stream (the result is ready in stream order, unsynchronised)."""
    x = _as_2d(x).to(torch.float64).contiguous()
    rows, cols = torch.triu_indices(len(x), len(x), device=x.device)
    out = torch.empty(len(x), len(x), dtype=torch.float64, device=x.device)
    stream = cuda.external_stream(torch.cuda.current_stream(x.device).cuda_stream)
    arrays = [cuda.as_cuda_array(t, sync=False) for t in (x, rows, cols, out)]
    soft_dtw_cuda_arrays(*arrays[:3], gamma, arrays[3], stream)
    return out


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
    ``decimate > 1`` computes on :func:`decimate_series` ``(x, decimate)``. ``method``:
    "auto" (the CUDA kernel for CUDA tensors, numba otherwise), "numba", "torch" or "cuda".
    Returns numpy for numpy input, a tensor on ``x``'s device for torch input. No gradients.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    is_torch = isinstance(x, torch.Tensor)
    if method == "cuda" and not (is_torch and x.is_cuda):
        raise ValueError("method 'cuda' needs a CUDA tensor")
    with torch.no_grad():
        x = decimate_series(_as_2d(x.detach() if is_torch else np.asarray(x)), decimate)
        on_gpu = is_torch and x.is_cuda
        if method == "cuda" or (method == "auto" and on_gpu):
            values = _soft_dtw_on_gpu(x, gamma, fall_back=method == "auto")
            if values is not None:
                return values
        if method == "torch" or (method == "auto" and on_gpu):
            values = soft_dtw_torch(torch.as_tensor(x), gamma)
            return values if is_torch else values.numpy()
        values = soft_dtw_numba(x.cpu().numpy() if is_torch else x, gamma)
        return torch.from_numpy(values).to(x.device) if is_torch else values


_CUDA_FAILURE: list[str] = []  # why the CUDA kernel could not run in this process, once known


def _soft_dtw_on_gpu(x, gamma: float, fall_back: bool):
    """The CUDA kernel's result, or None when it cannot run and ``fall_back`` (warned once)."""
    if not _CUDA_FAILURE:
        try:
            return soft_dtw_cuda(x, gamma)
        except Exception as exc:  # noqa: BLE001 - no driver, no NVVM, ...: say so once
            if not fall_back:
                raise
            _CUDA_FAILURE.append(f"{type(exc).__name__}: {exc}")
            warnings.warn(f"soft-DTW: the CUDA kernel cannot run here ({_CUDA_FAILURE[0]}); "
                          "using the torch anti-diagonal sweep", RuntimeWarning, stacklevel=3)
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
