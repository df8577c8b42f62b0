"""``make gpu-check`` (``python -m ecgnb.bench gpu-check``): the checks to run the day a GPU is here.

Without CUDA it prints one line and exits 0. With CUDA, at smoke size (tiny networks, synthetic
windows, seconds each):

1. **One step, GPU against CPU.** Per backbone, with dropout off, float32 (no autocast, no TF32)
   and the same draws (a CPU generator for both sides), the loss and gradients of one batch from
   the same weights: the computation is then the same function on both devices and only the
   order of floating-point sums differs. Tolerance: loss within ``STEP_RTOL`` (1e-4) relative,
   gradient cosine above ``GRADIENT_COSINE`` (0.9999).
2. **Every stage on the GPU.** Pretraining of each backbone (2 epochs, its own device generator,
   so its draws differ from the CPU's), in float32 and in bf16, a continuation (1 epoch), an LP
   and an FT cell and a supervised baseline. A GPU fit draws other crops and masks than a CPU fit
   of the same seed, so curves agree only statistically: each loss curve within
   ``CURVE_RTOL`` (0.15) relative of the CPU's, and the embeddings of the two fitted encoders
   (linear CKA on the same windows) above ``FIT_CKA`` (0.9); the frozen encoder's embeddings on the
   two devices (same weights, eval mode) above ``ENCODE_CKA`` (0.9999). Cells must finish with
   finite losses.
3. **Soft-DTW.** The fused CUDA kernel against the numba CPU kernel on a batch of 64 x 720
   (1e-9 relative), and both timed.
4. **Rates and the paper grid.** Training samples/s per backbone at the study's sizes (batch 64,
   720 samples, default configs) and seconds per fine-tuning epoch of one cell, projected onto the
   paper grid (:data:`PAPER_GRID`) in GPU hours.

Exit status 1 when a check fails.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

STEP_RTOL, GRADIENT_COSINE = 1e-4, 0.9999
CURVE_RTOL, FIT_CKA, ENCODE_CKA = 0.15, 0.9, 0.9999
SMOKE = {"ts2vec": dict(hidden_dims=16, output_dims=32, depth=3, dropout=0.0),
         "tstcc": dict(final_out_channels=32, mid_channels=(16, 32), tc_hidden_dim=32,
                       tc_n_layers=1, tc_n_heads=2, tc_mlp_dim=32, timesteps=6, dropout=0.0,
                       tc_dropout=0.0),
         "series2vec": dict(emb_size=8, rep_size=32, n_heads=2, dim_ff=32, dropout=0.0)}


@dataclasses.dataclass(frozen=True)
class PaperGrid:
    """What the paper's runs train (the assumptions the projection prints)."""

    pretrain_epochs: int = 600
    corpora: tuple = (("ECG", 105_000), ("All", 5 * 21_000), ("no-ECG", 4 * 21_000))
    n_backbones: int = 3
    continuation_epochs: int = 600  # each pretrained encoder continued on the target fragments
    continuation_windows: int = 845  # the Fragment DB's training split at paper size
    n_cells: int = 108
    n_seeds: int = 5
    cell_epochs: int = 300


PAPER_GRID = PaperGrid()


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


def project_gpu_hours(pretrain_samples_per_s: dict[str, float],
                      cell_epoch_s: dict[str, float], grid: PaperGrid = PAPER_GRID) -> dict:
    """GPU hours of the paper grid from measured rates: pretraining (every backbone on every
    corpus), continuations, and downstream cells (each cell at the mean epoch time of the
    backbones' cells). Returns hours per part and the total."""
    pretrain = sum(grid.pretrain_epochs * n_windows / rate
                   for rate in pretrain_samples_per_s.values() for _, n_windows in grid.corpora)
    continuation = sum(len(grid.corpora) * grid.continuation_epochs * grid.continuation_windows
                       / rate for rate in pretrain_samples_per_s.values())
    mean_epoch_s = float(np.mean(list(cell_epoch_s.values())))
    cells = grid.n_cells * grid.n_seeds * grid.cell_epochs * mean_epoch_s
    hours = {"pretraining": pretrain / 3600, "continuations": continuation / 3600,
             "cells": cells / 3600}
    return {**hours, "total": sum(hours.values())}


def no_cuda_line() -> str | None:
    """The one line to print where there is no CUDA device (None where there is)."""
    if torch.cuda.is_available():
        return None
    build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    return (f"gpu-check: no CUDA device (torch {torch.__version__}, {build}); nothing to check "
            "here, run it on a machine with a GPU")
