"""Supervised references trained from scratch: H-InceptionTime and raw-signal MLP / FCN.

H-Inception (Ismail-Fawaz et al., 2022) is an InceptionTime network (Ismail Fawaz et al., 2020)
whose first Inception module also concatenates the outputs of 17 frozen hand-crafted filters:
increasing- and decreasing-trend detectors of lengths 2..64 and peak detectors of nominal
lengths 6..96 (k + k/2 taps).
H-InceptionTime is an ensemble of 5 such networks, each initialised and trained independently;
its prediction is the mean of the members' softmax probabilities.

Every model here is a :class:`~ecgnb.models.heads.Classifier` (a :class:`Network` + a head), so the
fine-tuning loop of :mod:`ecgnb.evaluation.train` trains them unchanged:

- ``hinception``: :class:`HInceptionNetwork` (features ``[B, 128, T]``, embedding = GAP) + linear.
- ``mlp``: :class:`RawSignal` (identity; embedding = the flattened series ``[B, C*T]``) + MLP head.
- ``fcn``: :class:`RawSignal` (features = the raw series ``[B, C, T]``) + FCN head.

Layouts: input ``x [B, C, T]`` (C = 1 here); logits ``[B, K]``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgnb.models.heads import Classifier, SameConv1d, build_head, pad_same
from ecgnb.models.base import Network

TREND_LENGTHS = (2, 4, 8, 16, 32, 64)
PEAK_LENGTHS = (6, 12, 24, 48, 96)


# --------------------------------------------------------------------------- hand-crafted filters
def increasing_filter(length: int) -> np.ndarray:
    """Increasing-trend detector ``[length]``: -1, +1, -1, +1, ... (responds to rising slopes)."""
    if length < 2 or length % 2:
        raise ValueError(f"trend filters need an even length >= 2, got {length}")
    return np.where(np.arange(length) % 2 == 0, -1.0, 1.0)


def decreasing_filter(length: int) -> np.ndarray:
    """Decreasing-trend detector ``[length]``: +1, -1, +1, -1, ..."""
    return -increasing_filter(length)


def peak_filter(length: int) -> np.ndarray:
    """Peak detector of nominal ``length`` k, ``k + k // 2`` taps as in H-InceptionTime's
    reference: a negative lobe, a positive lobe of twice the height and a negative lobe, each
    ``k / 2`` long and shaped by a squared ramp up then down (breakpoints at multiples of k/4)."""
    if length < 6 or length % 6:
        raise ValueError(f"peak filters need a length that is a multiple of 6, got {length}")
    ramp = np.linspace(0, 1, length // 4 + 1)[1:] ** 2
    cuts = [0, length // 4, length // 2, 3 * length // 4, length, 5 * length // 4,
            length + length // 2]
    pieces = (-ramp, -ramp[::-1], 2 * ramp, 2 * ramp[::-1], -ramp, -ramp[::-1])
    out = np.zeros(length + length // 2)
    for (start, stop), piece in zip(zip(cuts, cuts[1:]), pieces):
        out[start:stop] = piece if len(piece) == stop - start else piece[-1]
    return out


class HybridFilters(nn.Module):
    """The 17 frozen filters: ``x [B, C, T] -> ReLU(responses) [B, 17, T]`` ("same" padding).

    Filters are buffers (saved with the weights, never seen by an optimiser), each of shape
    ``[1, C, L]``: the same values on every input channel, summed over channels.
    """

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.names: list[str] = []
        specs = ([("increase", n, increasing_filter(n)) for n in TREND_LENGTHS]
                 + [("decrease", n, decreasing_filter(n)) for n in TREND_LENGTHS]
                 + [("peak", n, peak_filter(n)) for n in PEAK_LENGTHS])
        for kind, n, values in specs:
            weight = torch.tensor(values, dtype=torch.float32).repeat(1, in_channels, 1)
            self.register_buffer(f"{kind}_{n}", weight)
            self.names.append(f"{kind}_{n}")

    @property
    def n_filters(self) -> int:
        return len(self.names)

    def filters(self) -> dict[str, torch.Tensor]:
        """Name -> filter ``[1, C, L]``."""
        return {name: getattr(self, name) for name in self.names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [F.conv1d(pad_same(x, w.shape[-1]), w.to(x.dtype)) for w in self.filters().values()]
        return torch.relu(torch.cat(outs, dim=1))


# --------------------------------------------------------------------------- Inception
class InceptionModule(nn.Module):
    """``[B, C_in, T] -> [B, 4*n_filters (+17), T]``.

    Bottleneck 1x1 conv (when ``in_channels > 1``), three convs (kernels 40/20/10, "same"), a
    max-pool(3, stride 1) + 1x1 conv branch, optionally the hybrid filters; concat, BN, ReLU.
    """

    def __init__(self, in_channels: int, n_filters: int = 32, bottleneck_size: int = 32,
                 kernel_sizes: Sequence[int] = (40, 20, 10), use_hybrid: bool = False):
        super().__init__()
        use_bottleneck = in_channels > 1
        self.bottleneck = (nn.Conv1d(in_channels, bottleneck_size, 1, bias=False)
                           if use_bottleneck else nn.Identity())
        conv_in = bottleneck_size if use_bottleneck else in_channels
        self.convs = nn.ModuleList(SameConv1d(conv_in, n_filters, k, bias=False)
                                   for k in kernel_sizes)
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1),
                                         nn.Conv1d(in_channels, n_filters, 1, bias=False))
        self.hybrid = HybridFilters(in_channels) if use_hybrid else None
        self.out_channels = n_filters * (len(kernel_sizes) + 1)
        self.out_channels += self.hybrid.n_filters if use_hybrid else 0
        self.norm = nn.BatchNorm1d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        branches = [conv(z) for conv in self.convs] + [self.pool_branch(x)]
        if self.hybrid is not None:
            branches.append(self.hybrid(x))
        return torch.relu(self.norm(torch.cat(branches, dim=1)))


class InceptionShortcut(nn.Module):
    """Residual connection of InceptionTime's reference: ``ReLU(BN(conv1x1(residual)) + out)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.project = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, bias=False),
                                     nn.BatchNorm1d(out_channels))

    def forward(self, residual: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.project(residual) + out)


class IdentityShortcut(nn.Module):
    """Residual connection of the study's code: ``out + residual``, the residual broadcast over
    the channels when it has one (the univariate input). No parameters, no batch norm, no ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if in_channels not in (1, out_channels):
            raise ValueError(f"an identity shortcut adds {in_channels} channels to "
                             f"{out_channels}: it needs 1 or {out_channels} (shortcut 'conv' "
                             "projects any number)")

    def forward(self, residual: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out + residual


SHORTCUTS: dict[str, type[nn.Module]] = {"conv": InceptionShortcut, "identity": IdentityShortcut}


class HInceptionNetwork(Network):
    """H-Inception feature extractor: ``x [B, C, T] -> features [B, 128, T]``; embedding = GAP.

    ``depth`` Inception modules (the first with the hybrid filters when ``use_hybrid``) and a
    residual shortcut after every third module, from the previous shortcut's output (the input,
    for the first): ``shortcut`` "conv" (:class:`InceptionShortcut`) or "identity"
    (:class:`IdentityShortcut`).
    """

    def __init__(self, in_channels: int = 1, n_filters: int = 32, depth: int = 6,
                 kernel_sizes: Sequence[int] = (40, 20, 10), use_hybrid: bool = True,
                 use_residual: bool = True, shortcut: str = "conv"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {list(SHORTCUTS)}, got '{shortcut}'")
        self.inception = nn.ModuleList()
        self.shortcuts = nn.ModuleDict()
        channels, residual_channels = in_channels, in_channels
        for d in range(depth):
            module = InceptionModule(channels, n_filters, n_filters, kernel_sizes,
                                     use_hybrid=use_hybrid and d == 0)
            self.inception.append(module)
            channels = module.out_channels
            if use_residual and d % 3 == 2:
                self.shortcuts[str(d)] = SHORTCUTS[shortcut](residual_channels, channels)
                residual_channels = channels
        self.feature_dim = channels
        self.embedding_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        for d, module in enumerate(self.inception):
            x = module(x)
            if str(d) in self.shortcuts:
                x = self.shortcuts[str(d)](residual, x)
                residual = x
        return x

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=-1)


class RawSignal(Network):
    """The identity "encoder" of the raw-signal baselines: features = ``x [B, C, T]``,
    embedding = the flattened series ``[B, C*T]``. No parameters."""

    def __init__(self, n_timesteps: int, in_channels: int = 1):
        super().__init__()
        self.feature_dim = in_channels
        self.embedding_dim = in_channels * n_timesteps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.flatten(start_dim=1)


# --------------------------------------------------------------------------- models and ensemble
def h_inception(n_classes: int, n_timesteps: int, in_channels: int = 1, **kwargs) -> Classifier:
    """One H-Inception network: :class:`HInceptionNetwork` (``kwargs``, e.g. ``shortcut``) +
    linear layer on the GAP embedding."""
    network = HInceptionNetwork(in_channels, **kwargs)
    return Classifier(network, build_head("linear", network, n_classes))


def raw_mlp(n_classes: int, n_timesteps: int, in_channels: int = 1, **kwargs) -> Classifier:
    """Raw-signal MLP: flattened series -> 500 -> logits."""
    network = RawSignal(n_timesteps, in_channels)
    return Classifier(network, build_head("mlp", network, n_classes, **kwargs))


def raw_fcn(n_classes: int, n_timesteps: int, in_channels: int = 1, **kwargs) -> Classifier:
    """Raw-signal FCN: the FCN head applied to ``x [B, C, T]``."""
    network = RawSignal(n_timesteps, in_channels)
    return Classifier(network, build_head("fcn", network, n_classes, **kwargs))


BASELINES: dict[str, Callable[..., Classifier]] = {"hinception": h_inception, "mlp": raw_mlp,
                                                   "fcn": raw_fcn}
ENSEMBLE_BASELINES = frozenset({"hinception"})  # H-InceptionTime: an ensemble of H-Inceptions


def build_baseline(name: str, n_classes: int, n_timesteps: int, seed: int,
                   in_channels: int = 1, **kwargs) -> Classifier:
    """A fresh baseline ``name``; its initial weights are drawn after ``torch.manual_seed(seed)``.

    ``n_timesteps`` sizes the raw MLP's input (the convolutional models take any length)."""
    if name not in BASELINES:
        raise KeyError(f"unknown baseline '{name}'; known: {sorted(BASELINES)}")
    torch.manual_seed(seed)
    return BASELINES[name](n_classes, n_timesteps, in_channels, **kwargs)


def member_seeds(seed: int, n_members: int) -> list[int]:
    """Independent seeds for the ensemble members of run ``seed`` (numpy ``SeedSequence`` spawn)."""
    children = np.random.SeedSequence(seed).spawn(n_members)
    return [int(child.generate_state(1)[0]) for child in children]


class HInceptionTime(nn.Module):
    """An ensemble of independently trained classifiers (H-InceptionTime: 5 H-Inceptions).

    ``forward(x [B, C, T]) -> log(mean_m softmax(member_m(x))) [B, K]``: the log of the averaged
    probabilities, so that ``softmax(forward(x))`` is exactly the ensemble's probability.
    Multi-label (``is_multilabel``): the logit of the averaged per-class sigmoid probabilities,
    so that ``sigmoid(forward(x))`` is the ensemble's.
    """

    def __init__(self, members: Sequence[nn.Module], is_multilabel: bool = False):
        super().__init__()
        if len({id(m) for m in members}) != len(members):
            raise ValueError("ensemble members must be distinct model objects")
        self.members = nn.ModuleList(members)
        self.is_multilabel = is_multilabel

    @classmethod
    def from_seeds(cls, n_classes: int, n_timesteps: int, seeds: Sequence[int],
                   in_channels: int = 1, **kwargs) -> "HInceptionTime":
        """Untrained ensemble: one fresh H-Inception per seed."""
        return cls([build_baseline("hinception", n_classes, n_timesteps, s, in_channels, **kwargs)
                    for s in seeds])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_multilabel:  # log(mean p) - log(mean (1 - p)), each by logsumexp
            logits = torch.stack([m(x).float() for m in self.members])
            return (torch.logsumexp(F.logsigmoid(logits), dim=0)
                    - torch.logsumexp(F.logsigmoid(-logits), dim=0))
        log_probs = torch.stack([F.log_softmax(m(x).float(), dim=-1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - np.log(len(self.members))
