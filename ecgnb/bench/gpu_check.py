"""``make gpu-check`` (``python -m ecgnb.bench gpu-check``): the checks to run when a GPU is lent.

Without CUDA it prints one line and exits 0. With CUDA it prints the machine, then one line per
check: ``PASS``, ``FAIL`` or ``SKIP``, what it measured, its bound and its seconds; a check that
raises is a FAIL naming the error, and the run goes on. Exit status 1 when a check failed. It
sets ``ECGNB_STRICT_GPU=1`` (:mod:`ecgnb.models.softdtw`) for itself and its children: any
soft-DTW that would leave the fused kernel raises instead of falling back.

1. **Per backbone, at smoke size** (tiny networks, 96 windows of 128 samples;
   :mod:`ecgnb.bench.gpu_stages`): one batch's loss and gradients from the same weights and draws
   on the GPU and the CPU (dropout off, float32: loss within ``STEP_RTOL`` relative, gradient
   cosine above ``GRADIENT_COSINE``); 2-epoch fits on both devices (other draws: loss curves within
   ``CURVE_RTOL``, fitted embeddings' linear CKA above ``FIT_CKA``; one set of weights encoded on
   both above ``ENCODE_CKA``); bf16 and fp16-AMP fits against fp32 (``CURVE_RTOL``); a
   continuation; a fit interrupted after an epoch and resumed from its checkpoint against an
   uninterrupted one (the same weights up to the spread of two uninterrupted fits); the host
   synchronisations a training step makes (CUDA's own detector: none in fp32, the gradient
   scaler's one under fp16 AMP).
2. **Cells**: an LP and an FT cell per backbone and a supervised baseline, finite losses.
3. **Soft-DTW**: each fused kernel (Triton, numba.cuda) against the numba CPU kernel on 64 x 720
   (1e-9 relative), timed beside the torch sweep; the strict ``auto`` path.
4. **Devices**: ``cuda:1`` and two jobs pinned by ``--devices``' mechanism where there are two
   GPUs; notebook 02 through papermill where papermill is installed (else a SKIP line each).
5. **Rates** (:mod:`ecgnb.bench.gpu_rates`): steady-state training samples/s and steps/s per
   backbone at the study's sizes with the settings of ``params/grids/paper.yaml`` (recipe study:
   fp32) and ``paper-ecgnb.yaml`` (recipe ecgnb: fp32, TF32 convolutions), fp16 AMP and bf16
   beside them; where a step's time goes; seconds per cell epoch; then each grid's GPU hours
   (:mod:`ecgnb.bench.projection`).
"""
from __future__ import annotations

import contextlib
import time
import traceback

import numpy as np
import torch

STEP_RTOL, GRADIENT_COSINE = 1e-4, 0.9999
# A resumed fit against an uninterrupted one: GPU kernels that sum with atomics differ from run
# to run, and training amplifies the difference by a varying factor, so the bound is 10 x the
# spread of two uninterrupted fits with a floor; a resume that lost a generator's state or the
# optimiser's moments differs by orders of magnitude more (other crops, masks, steps).
RESUME_FLOOR = 1e-3
CURVE_RTOL, FIT_CKA, ENCODE_CKA = 0.15, 0.9, 0.9999
SOFTDTW_RTOL = 1e-9
SMOKE = {"ts2vec": dict(hidden_dims=16, output_dims=32, depth=3, dropout=0.0),
         "tstcc": dict(final_out_channels=32, mid_channels=(16, 32), tc_hidden_dim=32,
                       tc_n_layers=1, tc_n_heads=2, tc_mlp_dim=32, timesteps=6, dropout=0.0,
                       tc_dropout=0.0),
         "series2vec": dict(emb_size=8, rep_size=32, n_heads=2, dim_ff=32, dropout=0.0)}


class Report:
    """The lines of a gpu-check: one per check, and the failures."""

    def __init__(self):
        self.failures: list[str] = []
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
        self._start = time.perf_counter()

    def line(self, verdict: str, what: str, detail: str = "") -> None:
        self.counts[verdict] += 1
        if verdict == "FAIL":
            self.failures.append(what)
        print(f"{verdict} {what}" + (f": {detail}" if detail else ""), flush=True)

    def check(self, what: str, value: float, ok: bool, bound: str, seconds: float | None = None):
        took = "" if seconds is None else f" [{seconds:.1f} s]"
        self.line("PASS" if ok else "FAIL", what, f"{value:.4g} ({bound}){took}")

    def skip(self, what: str, why: str) -> None:
        self.line("SKIP", what, why)

    @contextlib.contextmanager
    def guard(self, what: str):
        """A check's block: an exception is this check's FAIL line, and the run goes on."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - every problem in one run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.line("FAIL", what, f"{type(exc).__name__}: {exc} ({where.filename.split('/')[-1]}"
                                    f":{where.lineno})")

    def summary(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        verdict = "all checks passed" if not self.failures else "FAILED: " + "; ".join(
            self.failures)
        return f"gpu-check: {verdict} ({counts}; {time.perf_counter() - self._start:.0f} s)"


def relative_curve_difference(curve, reference) -> float:
    """Largest ``|a - b| / |b|`` over two loss curves of the same length."""
    curve, reference = np.asarray(curve, float), np.asarray(reference, float)
    if curve.shape != reference.shape:
        raise ValueError(f"curves of different lengths: {curve.shape} vs {reference.shape}")
    return float(np.max(np.abs(curve - reference) / np.maximum(np.abs(reference), 1e-12)))


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment of two embeddings ``[N, D1]``, ``[N, D2]`` of the same
    windows: 1 for embeddings equal up to rotation and scale."""
    x = np.asarray(x, float) - np.mean(x, axis=0)
    y = np.asarray(y, float) - np.mean(y, axis=0)
    cross = np.linalg.norm(x.T @ y) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def weights_difference(a: dict, b: dict) -> float:
    """Largest ``|a - b|`` over the floating-point tensors of two encoders' ``state_dict()``s,
    relative to the largest ``|b|``."""
    diff = scale = 0.0
    for name, modules in b.items():
        for key, value in modules.items():
            if value.is_floating_point():
                other = a[name][key].detach().cpu().double()
                value = value.detach().cpu().double()
                diff = max(diff, float((other - value).abs().max()))
                scale = max(scale, float(value.abs().max()))
    return diff / max(scale, 1e-30)


def no_cuda_line() -> str | None:
    """The one line to print where there is no CUDA device (None where there is)."""
    if torch.cuda.is_available():
        return None
    build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    return (f"gpu-check: no CUDA device (torch {torch.__version__}, {build}); nothing to check "
            "here, run it on a machine with a GPU")
