"""Numeric settings of a training or encoding run: denormal flushing and autocast precision.

Both are *scoped*: :func:`numerics` sets them for the ``with`` block and restores the previous
state afterwards (also when the block raises), so importing or calling ecgnb never changes a
process-wide setting behind a user's back.

- ``flush_denormal``: on x86 CPUs, ``torch.set_flush_denormal(True)`` makes subnormal floats
  (|x| < 1.2e-38) read and write as zero. Softmax gradients of contrastive losses underflow into
  that range, and the CPU processes such operands about 25x slower (TS2Vec's loss backward on
  [64, 720, 320]: 92.6 s -> 3.8 s). Results change only below 1.2e-38.
- ``precision``: ``"fp32"`` (no autocast on CPU; CUDA keeps its float16 mixed precision when the
  config's ``use_amp`` is on) or ``"bf16"`` (``torch.autocast`` with bfloat16 on CPU or CUDA; no
  gradient scaler needed). Losses and softmaxes run in float32 inside the backbones either way.
- ``cudnn_benchmark``, ``allow_tf32`` and ``cudnn_deterministic``: cuDNN's autotuner
  (``torch.backends.cudnn.benchmark``: it times the convolution algorithms for every new input
  shape and keeps the fastest, so it pays where shapes repeat), TensorFloat-32 in cuDNN
  convolutions (``torch.backends.cudnn.allow_tf32``: 10-bit mantissas in float32 products) and
  cuDNN's deterministic algorithms (``torch.backends.cudnn.deterministic``). Matrix products stay
  in full float32 (``torch.backends.cuda.matmul.allow_tf32`` off, PyTorch's default). Set for the
  block on every device (they change nothing on a CPU); the autotuner and TF32 are recorded by
  :func:`numerics_record`.

PyTorch's own defaults, which the study ran with: TF32 in cuDNN convolutions on, the autotuner
off, matrix products in float32. ecgnb's backbones and heads turn TF32 off (float32 results then
do not depend on the GPU generation) and the autotuner on where every batch has one shape; the
recipes hold both (:mod:`ecgnb.recipes`).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


@contextlib.contextmanager
def flush_denormal(enabled: bool = True) -> Iterator[bool]:
    """Flush subnormal floats to zero inside the block; yields whether flushing is active.

    The previous setting is read back (``set_flush_denormal`` returns whether the CPU supports
    it) and restored on exit. A CPU without support leaves the setting untouched.
    """
    previous = _flush_denormal_state()
    active = bool(torch.set_flush_denormal(enabled)) and enabled
    try:
        yield active
    finally:
        torch.set_flush_denormal(previous)


def _flush_denormal_state() -> bool:
    """Whether denormals are flushed now: a subnormal float32 reads back as zero."""
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    return bool((tiny * 1.0 == 0).item())


def autocast(device: torch.device, precision: str, use_amp: bool = False):
    """The autocast context of one training/encoding step.

    ``bf16``: bfloat16 autocast on ``device`` (CPU or CUDA); ``fp32``: float16 mixed precision on
    CUDA when ``use_amp``, otherwise none.
    """
    if check_precision(precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=use_amp and device.type == "cuda")


@contextlib.contextmanager
def backend_flags(cudnn_benchmark: bool = False, allow_tf32: bool = False,
                  deterministic: bool = False) -> Iterator[None]:
    """cuDNN's autotuner, TF32 in its convolutions and its deterministic algorithms as given for
    the block, matrix products in float32; the previous values restored after."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    previous = (cudnn.benchmark, cudnn.allow_tf32, cudnn.deterministic, matmul.allow_tf32)
    cudnn.benchmark, cudnn.allow_tf32 = bool(cudnn_benchmark), bool(allow_tf32)
    cudnn.deterministic, matmul.allow_tf32 = bool(deterministic), False
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32, cudnn.deterministic, matmul.allow_tf32 = previous


@contextlib.contextmanager
def numerics(device: torch.device, settings) -> Iterator[None]:
    """The training settings' ``cudnn_benchmark``, ``allow_tf32`` and ``cudnn_deterministic``
    and, on the CPU, their denormal flushing for the block (a backbone's
    :class:`~ecgnb.models.base.FitSettings` or a downstream cell's settings); on a GPU the CPU's
    flushing is left alone."""
    with backend_flags(settings.cudnn_benchmark, settings.allow_tf32,
                       settings.cudnn_deterministic):
        if device.type != "cpu":
            yield
            return
        with flush_denormal(settings.flush_denormal):
            yield


def autocast_dtype(device: torch.device, precision: str, use_amp: bool = False) -> str | None:
    """What :func:`autocast` computes in on ``device``: "bf16", "fp16" or None (float32)."""
    if check_precision(precision) == "bf16":
        return "bf16"
    return "fp16" if use_amp and device.type == "cuda" else None


def numerics_record(device: torch.device, settings, use_amp: bool = False) -> dict:
    """The numerics a fit on ``device`` trains with (its :class:`FitSettings`), for its record."""
    return {"device": device.type,
            "autocast": autocast_dtype(device, settings.precision, use_amp),
            "cudnn_benchmark": bool(settings.cudnn_benchmark),
            "allow_tf32": bool(settings.allow_tf32),
            "flush_denormal": bool(settings.flush_denormal) and device.type == "cpu"}
