"""Series2Vec (Foumani et al., DMKD 2024): similarity-based SSL, no augmentations.

A *time encoder* reads the raw window and a *frequency encoder* reads its magnitude spectrum;
each ends in ``rep_size`` channels and is average-pooled over its axis into a representation.
Pretraining regresses, for every pair of samples of a batch, the distance between their
representations onto a distance between their inputs, both min-max normalised over the batch:
- time branch: Euclidean distance of the representations after the *order-invariant attention*
  (a transformer layer whose tokens are the batch's samples) vs soft-DTW (gamma 0.1) of the raw
  inputs (:func:`ecgnb.models.softdtw.pairwise_soft_dtw`);
- frequency branch: Euclidean distance of the representations vs Euclidean distance of the
  *filtered spectra* of the inputs.
Loss = smooth-L1(time) + smooth-L1(frequency), over the upper triangle of the pairs (i < j).
The attention exists only in pretraining: ``encode`` = time GAP ++ frequency GAP (2 x 320).

Layouts: windows ``x [B, 1, T]``; spectrum ``[B, 1, F]`` with ``F = T // 2 + 1``; time features
``[B, R, T - 9]``, frequency features ``[B, R, F - 9]`` (kernels 8 then 1 then 3, no padding);
pair vectors ``[B * (B - 1) / 2]`` in row-major upper-triangle order (``torch.pdist``'s).

Where this follows the official code (github.com/Navidfoumani/Series2Vec) and where not:
- Same encoders (conv k=8 -> BN -> GELU, the 1x1 "spatial" conv -> BN -> GELU, conv k=3 ->
  BN -> GELU, Xavier init of the first two convs), the same post-LN attention block (attention
  + residual + LayerNorm, ReLU feed-forward + residual + LayerNorm) applied to the time branch
  only, the same distances (Euclidean on representations), normalisation, pairs and loss.
- The official attention reads its input as ``[1, B, D]`` with ``batch_first=False``, i.e. B
  sequences of length 1: no sample ever attends to another. Ours mixes the batch, as the paper
  describes. Its dropout masks come from the run's generator.
- The official frequency encoder reads ``torch.fft.fft(x).float()`` (the real part of the full
  spectrum); ours reads the magnitude of ``rfft`` (orthonormal scaling), as specified for ecgnb.
- The official "soft-DTW" receives ``[B, 1, T]`` windows as (batch, length, dims): for
  univariate series that is a 1-step sequence of T-dim points, i.e. the squared Euclidean
  distance. Ours is the real soft-DTW over the T samples (optionally on a decimated copy).
- The official filter runs a 6th-order Butterworth ``lfilter`` *along the FFT bins* with a
  hard-coded fs = 128 Hz, picking low-pass (40 Hz) or high-pass (0.5 Hz) at random per batch.
  Ours weights the magnitude spectrum by the filter's gain ``|H(f)|``, designed in Hz at the
  data's ``fs``: the spectrum of the filtered signal. ``spectrum_filter="random"`` keeps the
  per-batch low/high-pass draw (from the run's generator); "lowpass", "highpass" and
  "bandpass" fix it.
Switches for the published behaviour (docs/deviations.md): ``time_target="squared_euclidean"``
(what the official "soft-DTW" computed on univariate windows) and ``mix_batch=False`` (each
sample attends only to itself, as the official length-1 sequences). The real-part spectrum
filtered along the FFT bins at 128 Hz has no switch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal as sps
from torch import nn

from ecgnb.models.base import Encoder, Network
from ecgnb.models.softdtw import pairwise_soft_dtw

SPECTRUM_FILTERS = ("random", "lowpass", "highpass", "bandpass")
TIME_TARGETS = ("softdtw", "squared_euclidean")
TIME_KERNEL, REP_KERNEL = 8, 3  # official DisjoinEncoder kernels
MIN_TIMESTEPS = 2 * (TIME_KERNEL + REP_KERNEL - 1)  # the spectrum must outlast both kernels

__all__ = ["Series2Vec", "Series2VecConfig", "Series2VecNetwork", "OrderInvariantAttention",
           "pairwise_soft_dtw", "spectral_filter_gain", "filtered_spectra", "min_max"]


@dataclass
class Series2VecConfig:
    """The study's Series2Vec defaults (its ``SSL_series2vec.json``: the official defaults).

    ``emb_size`` is each encoder's inner conv width, ``rep_size`` each branch's representation;
    ``n_heads``, ``dim_ff``, ``dropout`` shape the pretraining-only attention. ``gamma`` is the
    soft-DTW smoothing; ``softdtw_decimate > 1`` computes soft-DTW on a block-averaged copy
    (cost / decimate**2). ``fs`` (Hz) is the inputs' sampling rate: the spectrum filter's
    cut-offs ``lowpass_hz``/``highpass_hz`` (order ``filter_order``) are in Hz at this rate.
    The training settings (rate, gradient clipping at 4, batch, epochs, numerics) are
    :class:`Series2Vec`'s ``FIT_DEFAULTS``; ``cudnn_benchmark`` is on there (every batch has the
    same shapes).
    """

    emb_size: int = 16
    rep_size: int = 320
    n_heads: int = 8
    dim_ff: int = 256
    dropout: float = 0.01
    gamma: float = 0.1
    softdtw_decimate: int = 1
    fs: float = 360.0
    spectrum_filter: str = "random"
    time_target: str = "softdtw"  # "squared_euclidean": the published code's effective target
    mix_batch: bool = True  # False: the published attention (sequences of length 1, no mixing)
    lowpass_hz: float = 40.0
    highpass_hz: float = 0.5
    filter_order: int = 6

    def __post_init__(self):
        if self.rep_size % self.n_heads:
            raise ValueError(f"rep_size {self.rep_size} is not divisible by n_heads {self.n_heads}")
        if self.spectrum_filter not in SPECTRUM_FILTERS:
            raise ValueError(f"spectrum_filter must be one of {SPECTRUM_FILTERS}, "
                             f"got {self.spectrum_filter!r}")
        if not 0 < self.highpass_hz < self.lowpass_hz < self.fs / 2:
            raise ValueError(f"need 0 < highpass_hz < lowpass_hz < fs/2, got {self.highpass_hz}, "
                             f"{self.lowpass_hz}, fs={self.fs}")
        if self.time_target not in TIME_TARGETS:
            raise ValueError(f"time_target must be one of {TIME_TARGETS}, got {self.time_target!r}")
        if self.gamma <= 0 or self.softdtw_decimate < 1:
            raise ValueError("gamma must be > 0 and softdtw_decimate >= 1")


# --------------------------------------------------------------------------- targets
def spectral_filter_gain(n_timesteps: int, fs: float, kind: str, lowpass_hz: float = 40.0,
                         highpass_hz: float = 0.5, order: int = 6) -> np.ndarray:
    """Gain ``|H(f)|`` ``[T // 2 + 1]`` of a Butterworth filter at the ``rfft`` frequencies (Hz)."""
    bands = {"lowpass": lowpass_hz, "highpass": highpass_hz,
             "bandpass": [highpass_hz, lowpass_hz]}
    if kind not in bands:
        raise ValueError(f"kind must be one of {sorted(bands)}, got {kind!r}")
    sos = sps.butter(order, bands[kind], btype=kind, fs=fs, output="sos")
    freqs = np.fft.rfftfreq(n_timesteps, d=1.0 / fs)
    _, response = sps.freqz_sos(sos, worN=freqs, fs=fs)
    return np.abs(response)


def magnitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``|rfft(x)|`` along the last axis with orthonormal scaling (float32): ``[..., T//2 + 1]``."""
    return torch.fft.rfft(x.float(), norm="ortho").abs()


def filtered_spectra(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Magnitude spectra of the filtered windows: ``x [B, T]``, ``gain [F]`` -> ``[B, F]``."""
    return magnitude_spectrum(x) * gain.to(x.device)


def min_max(distance: torch.Tensor) -> torch.Tensor:
    """Rescale a vector of distances to [0, 1] (all zeros when they are all equal)."""
    low = distance.min()
    return (distance - low) / (distance.max() - low).clamp_min(1e-12)


def upper_triangle(square: torch.Tensor) -> torch.Tensor:
    """Entries ``i < j`` of ``[B, B]`` in row-major order (the order of ``torch.pdist``)."""
    rows, cols = torch.triu_indices(len(square), len(square), offset=1, device=square.device)
    return square[rows, cols]


def similarity_loss(representations: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """smooth-L1 between min-max-normalised pair distances of ``[B, D]`` and ``target`` [P]."""
    predicted = torch.pdist(representations.float())
    return F.smooth_l1_loss(min_max(predicted), min_max(target.float()))


# --------------------------------------------------------------------------- networks
class ConvEncoder(nn.Module):
    """The official ``DisjoinEncoder`` for one channel: ``[B, 1, L] -> [B, rep_size, L - 9]``."""

    def __init__(self, emb_size: int, rep_size: int):
        super().__init__()
        self.temporal = nn.Sequential(nn.Conv1d(1, emb_size, TIME_KERNEL),
                                      nn.BatchNorm1d(emb_size), nn.GELU())
        self.spatial = nn.Sequential(nn.Conv1d(emb_size, emb_size, 1),
                                     nn.BatchNorm1d(emb_size), nn.GELU())
        self.rep = nn.Sequential(nn.Conv1d(emb_size, rep_size, REP_KERNEL),
                                 nn.BatchNorm1d(rep_size), nn.GELU())
        for conv in (self.temporal[0], self.spatial[0]):  # official init (its Conv2d layers)
            nn.init.xavier_uniform_(conv.weight, gain=nn.init.calculate_gain("relu"))
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rep(self.spatial(self.temporal(x)))


class Series2VecNetwork(Network):
    """Time and frequency encoders. ``embed(x) = [time GAP, frequency GAP]`` ``[B, 2R]``.

    ``forward(x)`` gives time-resolved features for FCN heads, ``[B, 2R, T - 9]``: the time
    features, and the frequency features linearly interpolated from their ``F - 9`` spectral
    steps onto the ``T - 9`` time steps, then shifted so that each channel keeps its mean.
    The frequency half is thus a resampled spectral profile, not a function of time; with
    ``pool`` = mean over the last axis, ``pool(forward(x)) == embed(x)`` (up to rounding).
    """

    def __init__(self, emb_size: int = 16, rep_size: int = 320):
        super().__init__()
        self.time_encoder = ConvEncoder(emb_size, rep_size)
        self.frequency_encoder = ConvEncoder(emb_size, rep_size)
        self.embedding_dim = self.feature_dim = 2 * rep_size

    def time_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.time_encoder(x)

    def frequency_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.frequency_encoder(magnitude_spectrum(x))

    def representations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-branch GAP representations ``([B, R], [B, R])`` of ``x [B, 1, T]``."""
        return self.time_features(x).mean(-1), self.frequency_features(x).mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time = self.time_features(x)
        frequency = self.frequency_features(x).to(time.dtype)
        stretched = F.interpolate(frequency, size=time.shape[-1], mode="linear",
                                  align_corners=True)
        stretched = stretched - stretched.mean(-1, keepdim=True) + frequency.mean(-1, keepdim=True)
        return torch.cat([time, stretched], dim=1)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.representations(x), dim=1)


class OrderInvariantAttention(nn.Module):
    """Post-LN transformer layer whose tokens are the samples of a batch: ``[B, D] -> [B, D]``.

    No positions: permuting the batch permutes the output. Dropout (on the attention weights
    and in the feed-forward, as ``nn.MultiheadAttention`` + the official block) draws its
    masks from the generator passed to ``forward``.
    """

    def __init__(self, dim: int, n_heads: int, dim_ff: int, dropout: float,
                 mix_batch: bool = True):
        super().__init__()
        self.n_heads, self.p, self.mix_batch = n_heads, dropout, mix_batch
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_attention = nn.LayerNorm(dim, eps=1e-5)
        self.ff_in = nn.Linear(dim, dim_ff)
        self.ff_out = nn.Linear(dim_ff, dim)
        self.norm_ff = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n_batch, dim = z.shape
        q, k, v = self.qkv(z).reshape(n_batch, 3, self.n_heads, -1).permute(1, 2, 0, 3)
        if self.mix_batch:
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        else:  # every sample its own length-1 sequence: it attends to itself only
            weights = torch.eye(n_batch, device=z.device, dtype=q.dtype).expand(q.shape[0], -1, -1)
        mixed = self._dropout(weights, generator) @ v  # [H, B, D/H]
        h = self.norm_attention(z + self.out(mixed.transpose(0, 1).reshape(n_batch, dim)))
        ff = self._dropout(torch.relu(self.ff_in(h)), generator)
        return self.norm_ff(h + self._dropout(self.ff_out(ff), generator))

    def _dropout(self, h: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.training or self.p == 0:
            return h
        if generator is None:
            raise ValueError("dropout in training mode needs a generator")
        keep = torch.rand(h.shape, generator=generator, device=generator.device) >= self.p
        return h * keep.to(h.device, h.dtype) / (1 - self.p)


# --------------------------------------------------------------------------- the backbone
class Series2Vec(Encoder):
    """Series2Vec with the study's defaults; RAdam, gradient clipping at 4.

    ``modules_``: ``network`` (:class:`Series2VecNetwork`, used by ``encode``) and
    ``attention`` (:class:`OrderInvariantAttention`, pretraining only).
    """

    name = "series2vec"
    Config = Series2VecConfig
    FIT_DEFAULTS = {"lr": 1e-3, "grad_clip": 4.0, "cudnn_benchmark": True}

    def _build(self, n_timesteps: int) -> None:
        if n_timesteps < MIN_TIMESTEPS:
            raise ValueError(f"Series2Vec needs windows of >= {MIN_TIMESTEPS} samples, "
                             f"got {n_timesteps}")
        cfg = self.config
        self.network_ = Series2VecNetwork(cfg.emb_size, cfg.rep_size)
        self.modules_["network"] = self.network_
        self.modules_["attention"] = OrderInvariantAttention(cfg.rep_size, cfg.n_heads,
                                                             cfg.dim_ff, cfg.dropout,
                                                             cfg.mix_batch)

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.RAdam(params, lr=lr)

    def _loss(self, xb: torch.Tensor, generator: torch.Generator,
              device_generator: torch.Generator) -> torch.Tensor:
        """Dropout masks from ``device_generator``; the spectrum filter's draw from ``generator``."""
        z_time, z_frequency = self.network_.representations(xb)
        z_time = self.modules_["attention"](z_time, device_generator)
        target_time, target_frequency = self.targets(xb, generator)
        return (similarity_loss(z_time, target_time)
                + similarity_loss(z_frequency, target_frequency))

    @torch.no_grad()
    def targets(self, xb: torch.Tensor, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input-space pair distances ``([P], [P])`` of ``xb [B, 1, T]``: soft-DTW, spectra."""
        cfg = self.config
        x = xb[:, 0, :].float()
        with torch.autocast(x.device.type, enabled=False):  # full precision, AMP or not
            if cfg.time_target == "softdtw":
                soft_dtw = pairwise_soft_dtw(x, gamma=cfg.gamma, decimate=cfg.softdtw_decimate)
            else:  # the official code on [B, 1, T]: one T-dim point per series
                soft_dtw = torch.cdist(x, x) ** 2
            spectra = filtered_spectra(x, self.filter_gain(x.shape[-1], generator, x.device))
            return (upper_triangle(soft_dtw).to(x.device, torch.float32), torch.pdist(spectra))

    def filter_gain(self, n_timesteps: int, generator: torch.Generator,
                    device: torch.device | str = "cpu") -> torch.Tensor:
        """This batch's spectral gain ``[T // 2 + 1]`` (float32, on ``device``); "random" draws
        low/high-pass (p=0.5). Each gain is computed and placed once per length, filter and device
        and kept: a training step copies nothing from the host."""
        cfg = self.config
        kind = cfg.spectrum_filter
        if kind == "random":
            kind = "lowpass" if torch.rand((), generator=generator) < 0.5 else "highpass"
        gains = self.__dict__.setdefault("_gains", {})
        key = (n_timesteps, kind, cfg.fs, cfg.lowpass_hz, cfg.highpass_hz, cfg.filter_order,
               str(device))
        if key not in gains:  # both kinds of a random filter at once: no copy in a later step
            both = ("lowpass", "highpass") if cfg.spectrum_filter == "random" else (kind,)
            for each in both:
                gain = spectral_filter_gain(n_timesteps, cfg.fs, each, cfg.lowpass_hz,
                                            cfg.highpass_hz, cfg.filter_order)
                gains[(n_timesteps, each, *key[2:])] = torch.from_numpy(gain).float().to(device)
        return gains[key]
