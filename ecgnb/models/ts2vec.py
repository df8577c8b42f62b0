"""TS2Vec (Yue et al., AAAI 2022): hierarchical contrastive learning of timestamp representations.

A :class:`TSEncoder` maps every timestamp of a window to a 320-d representation: a linear input
projection, a binomial *timestamp mask* (training only), a stack of residual blocks of dilated
convolutions and a dropout. Training draws two *overlapping random crops* of each window, encodes
both (each with its own mask) and applies the :func:`hierarchical_contrastive_loss` to the
representations of their overlap: instance-wise and temporal contrast at every level of a max-pool
pyramid over time. Inference uses a weight-averaged copy of the network (SWA), as published.

Every random draw (crop extents, per-instance offsets, masks, dropout, long-series windows) comes
from the generator that ``fit`` passes to :meth:`TS2Vec._loss`.

Layouts: windows ``x [B, 1, T]``; network features ``[B, D, T]`` (channels first, same ``T`` as the
input, ``D = output_dims = 320``); loss inputs ``z [B, T, C]`` (time second, as in the paper);
timestamp masks ``[B, T]`` (True = keep).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ecgnb.models.base import Encoder, Network, check_continuation, check_windows
from ecgnb.models.precision import check_precision

MASK_MODES = ("binomial", "continuous", "all_true", "all_false", "mask_last")


@dataclass
class TS2VecConfig:
    """The study's TS2Vec defaults (published code; batch 64 and 600 epochs as in the study).

    ``depth`` counts the hidden residual blocks; a final block maps to ``output_dims``, so the
    stack has ``depth + 1`` blocks with dilations ``1, 2, ..., 2**depth``. ``weight_decay`` is
    AdamW's default, which the published code used implicitly. ``max_train_length``: longer
    training series are split into ``T // max_train_length`` equal sections, and a random window of
    that length is taken per batch (published behaviour; the study's 720-sample windows need none).
    ``precision`` (``fp32`` | ``bf16``) and ``flush_denormal`` (on by default): the run's numerics,
    see :mod:`ecgnb.models.precision`. ``recompute_blocks``: the residual blocks keep only their inputs
    for the backward pass (see :class:`ConvBlock`); same results, less memory, a little compute.
    """

    input_dims: int = 1
    hidden_dims: int = 64
    output_dims: int = 320
    depth: int = 10
    kernel_size: int = 3
    mask_mode: str = "binomial"
    mask_p: float = 0.5
    dropout: float = 0.1
    alpha: float = 0.5
    temporal_unit: int = 0
    max_train_length: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    n_epochs: int = 600
    grad_clip: float | None = None
    use_swa: bool = True
    use_amp: bool = True
    precision: str = "fp32"
    flush_denormal: bool = True
    recompute_blocks: bool = True

    def __post_init__(self):
        check_precision(self.precision)
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode '{self.mask_mode}' not in {MASK_MODES}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.depth < 0 or self.temporal_unit < 0:
            raise ValueError("depth and temporal_unit must be >= 0")
        if self.max_train_length is not None and self.max_train_length < 2 ** (self.temporal_unit + 1):
            raise ValueError(f"max_train_length must be >= 2**(temporal_unit + 1), "
                             f"got {self.max_train_length}")


# --------------------------------------------------------------------------- the loss
def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                                  temporal_unit: int = 0) -> torch.Tensor:
    """TS2Vec's loss between the representations ``z1, z2 [B, T, C]`` of the two crops' overlap.

    At every level (while ``T > 1``): ``alpha * instance + (1 - alpha) * temporal`` contrast (the
    temporal term only from level ``temporal_unit`` on), then max-pool by 2 along time (an odd last
    step is dropped). When the pyramid ends at ``T == 1`` the instance term is added once more. The
    sum is divided by the number of levels. Similarities are raw dot products (no temperature).
    """
    if z1.ndim != 3 or z1.shape != z2.shape:
        raise ValueError(f"expected two [B, T, C] tensors of one shape, got {z1.shape}, {z2.shape}")
    if z1.shape[1] == 0:
        raise ValueError("the representations have no timesteps")
    terms = functools.partial(_pyramid_mean, alpha=alpha, temporal_unit=temporal_unit)
    return _ContrastWithGradient.apply(z1, z2, terms)


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """At every timestep, each instance's other view against the 2B - 2 other series' views.

    ``z1, z2 [B, T, C]``; zero when ``B == 1`` (no negatives).
    """
    terms = functools.partial(_level_terms, w_instance=1.0, w_temporal=0.0)
    return _ContrastWithGradient.apply(z1, z2, terms)


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Within each series, each timestamp's other view against the 2T - 2 other timestamps.

    ``z1, z2 [B, T, C]``; zero when ``T == 1`` (no negatives).
    """
    terms = functools.partial(_level_terms, w_instance=0.0, w_temporal=1.0)
    return _ContrastWithGradient.apply(z1, z2, terms)


CHUNK_ELEMENTS = 2 ** 22  # similarities per block of the loss (16 MB in float32; two such buffers at once)
_LOG_TINY = -87.33  # log of float32's smallest normal number: softmax weights below are zeroed


class _ContrastWithGradient(torch.autograd.Function):
    """``terms(z1, z2, with_grad) -> (loss, (dloss/dz1, dloss/dz2) | None)`` as an autograd op.

    The contrastive terms compute their gradient in the forward pass, while each chunk of
    similarities is at hand (:func:`_log_normaliser_chunks`); the backward pass only scales the
    saved gradients, so no similarity matrix, pooling index or pyramid level outlives the
    forward pass: the saved state is two tensors of ``z1``'s size.
    """

    @staticmethod
    def forward(ctx, z1, z2, terms):
        value, grads = terms(z1.detach(), z2.detach(), with_grad=any(ctx.needs_input_grad[:2]))
        if grads is not None:
            ctx.save_for_backward(*grads)
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        if getattr(ctx, "is_spent", False):  # the saved gradients were scaled in place
            raise RuntimeError("the TS2Vec loss supports one backward pass per forward pass")
        ctx.is_spent = True
        grad1, grad2 = ctx.saved_tensors
        return grad1.mul_(grad_output), grad2.mul_(grad_output), None


def _pyramid_mean(z1, z2, alpha: float, temporal_unit: int, with_grad: bool):
    """The hierarchical loss and its gradient (see :func:`hierarchical_contrastive_loss`)."""
    value, n_levels, grads = _pyramid_terms(z1, z2, alpha, temporal_unit, with_grad, level=0)
    if grads is not None:
        grads = tuple(g.div_(n_levels) for g in grads)
    return value / n_levels, grads


def _pyramid_terms(z1, z2, alpha: float, temporal_unit: int, with_grad: bool, level: int):
    """``(sum of the level losses from ``level`` on, their count, gradient)``: the coarser
    levels first, their gradient routed back through the max-pooling to this level's steps."""
    if z1.shape[1] == 1:  # the top of the pyramid: the instance term once more
        value, grads = _level_terms(z1, z2, alpha, 0.0, with_grad)
        return value, 1, grads
    coarse_value, n_coarse, coarse_grads = _pyramid_terms(
        _halve_time(z1), _halve_time(z2), alpha, temporal_unit, with_grad, level + 1)
    w_temporal = 1 - alpha if level >= temporal_unit else 0.0
    value, grads = _level_terms(z1, z2, alpha, w_temporal, with_grad)
    if grads is not None:
        for grad, z, coarse in zip(grads, (z1, z2), coarse_grads):
            _add_unpooled(grad, z, coarse)
    return value + coarse_value, n_coarse + 1, grads


def _add_unpooled(grad: torch.Tensor, z: torch.Tensor, coarse: torch.Tensor) -> None:
    """Add ``coarse [B, T // 2, C]``, the gradient at ``_halve_time(z)``, to ``grad [B, T, C]``
    at the step of each pair that won the max (the first one on a tie, as ``max_pool1d``)."""
    n_pairs = coarse.shape[1]
    first, second = z[:, 0:2 * n_pairs:2], z[:, 1:2 * n_pairs:2]
    first_wins = (first >= second) | torch.isnan(first)
    grad[:, 0:2 * n_pairs:2].add_(torch.where(first_wins, coarse, 0.0))
    grad[:, 1:2 * n_pairs:2].add_(torch.where(first_wins, 0.0, coarse))


def _level_terms(z1, z2, w_instance: float, w_temporal: float, with_grad: bool):
    """``w_instance * instance + w_temporal * temporal`` contrast of ``z1, z2 [B, T, C]`` and
    its gradient ``(dz1, dz2)`` when ``with_grad`` (else ``None``).

    Instance contrast groups the ``2B`` views of one timestep, temporal contrast the ``2T``
    timesteps of one series. Each anchor is scored by a softmax over the other items of its
    group (self excluded) of raw dot products; a term is the mean row log-sum-exp minus the mean
    positive similarity ``<z1[b, t], z2[b, t]>`` (the same for both anchors of a pair). The
    published code takes the full log-softmax of the whole ``[G, 2N, 2N]`` similarity matrix and
    averages the two views' anchors separately (equal counts, so the same mean).
    """
    n_batch, n_timesteps, _ = z1.shape
    grads = (torch.zeros_like(z1), torch.zeros_like(z2)) if with_grad else None
    value = z1.new_zeros(())
    if w_instance and n_batch > 1:
        value = value + w_instance * _paired_term(z1, z2, grads, w_instance, group_dim=1)
    if w_temporal and n_timesteps > 1:
        value = value + w_temporal * _paired_term(z1, z2, grads, w_temporal, group_dim=0)
    return value, grads


def _paired_term(z1, z2, grads, weight: float, group_dim: int) -> torch.Tensor:
    """One contrast term of ``z1, z2 [B, T, C]``, groups along ``group_dim`` (1: timesteps,
    instance contrast; 0: series, temporal contrast), taken a block of groups at a time.

    Each block's two views are stacked into ``[g, 2N, C]`` (items ``i`` and ``N + i`` are a
    pair); ``weight`` times the term's gradient is added to ``grads = (dz1, dz2)`` when given.
    """
    n_groups, n_pairs = z1.shape[group_dim], z1.shape[1 - group_dim]
    n_items = 2 * n_pairs
    n_anchors = n_groups * n_items
    # whole [g, 2N, 2N] similarity matrices when one fits in CHUNK_ELEMENTS, else rows of them
    is_whole = n_items * n_items <= CHUNK_ELEMENTS
    log_normaliser = _log_normaliser_whole if is_whole else _log_normaliser_chunks
    per_group = n_items * max(n_items, z1.shape[-1]) if is_whole else n_items * z1.shape[-1]
    block = max(1, CHUNK_ELEMENTS // per_group)  # groups per block: its similarities and its z
    total = z1.new_zeros(())
    for start in range(0, n_groups, block):
        part1, part2 = (z.narrow(group_dim, start, min(block, n_groups - start)) for z in (z1, z2))
        z = torch.cat([part1, part2], dim=1 - group_dim)
        z = (z.transpose(0, 1) if group_dim == 1 else z).contiguous()  # [g, 2N, C]
        block_total, grad = log_normaliser(z, with_grad=grads is not None)
        total = total + block_total
        if grads is not None:
            if group_dim == 1:
                grad = grad.transpose(0, 1)  # [2N, g, C]
            grad1, grad2 = grad.split(n_pairs, dim=1 - group_dim)
            scale = weight / n_anchors
            # d(mean positive)/dz1 = z2 / (B T): both anchors of a pair share the positive
            grads[0].narrow(group_dim, start, part1.shape[group_dim]).add_(
                grad1.sub_(part2, alpha=2.0), alpha=scale)
            grads[1].narrow(group_dim, start, part2.shape[group_dim]).add_(
                grad2.sub_(part1, alpha=2.0), alpha=scale)
    positive = (z1 * z2).sum(dim=-1).mean()
    return total / n_anchors - positive


def _log_normaliser_whole(z: torch.Tensor, with_grad: bool
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_log_normaliser_chunks` with each group's whole similarity matrix at hand: the
    gradient ``(P + P^T) z`` is one matrix product instead of two (same values)."""
    sim = torch.matmul(z, z.transpose(1, 2))  # [G, M, M]
    sim.diagonal(dim1=1, dim2=2).fill_(float("-inf"))  # self-similarity out of every softmax
    log_normaliser = torch.logsumexp(sim, dim=-1, keepdim=True)  # [G, M, 1]
    if not with_grad:
        return log_normaliser.sum(), None
    weights = sim.sub_(log_normaliser)
    weights.masked_fill_(weights < _LOG_TINY, float("-inf")).exp_()  # row softmax P
    return log_normaliser.sum(), torch.bmm(weights + weights.transpose(1, 2), z)


def _log_normaliser_chunks(z: torch.Tensor, with_grad: bool
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sum of the row log-sum-exps of ``z z^T`` (diagonal excluded) over ``z [G, M, C]``, and
    its gradient ``(P + P^T) z`` when ``with_grad`` (``P``: the row softmax; ``z z^T`` is
    symmetric); ``CHUNK_ELEMENTS`` similarities at a time. Softmax weights below float32's
    smallest normal number (1.2e-38) are set to zero instead of passing subnormal operands to
    the matrix products: the result of flushing denormals, at full speed whether or not the CPU
    flushes them.
    """
    n_groups, n_items, _ = z.shape
    n_rows = max(1, CHUNK_ELEMENTS // (n_groups * n_items))
    total = z.new_zeros(())
    grad = torch.zeros_like(z) if with_grad else None
    for start in range(0, n_items, n_rows):
        stop = min(start + n_rows, n_items)
        rows = z[:, start:stop]  # [G, c, C]
        sim = torch.matmul(rows, z.transpose(1, 2))  # [G, c, M]
        own = torch.arange(start, stop, device=z.device)
        sim[:, own - start, own] = float("-inf")  # self-similarity out of every softmax
        log_normaliser = torch.logsumexp(sim, dim=-1, keepdim=True)  # [G, c, 1]
        total = total + log_normaliser.sum()
        if with_grad:
            weights = sim.sub_(log_normaliser)
            weights.masked_fill_(weights < _LOG_TINY, float("-inf")).exp_()  # row softmax P
            grad[:, start:stop].baddbmm_(weights, z)  # P z
            grad.baddbmm_(weights.transpose(1, 2), rows)  # P^T z
    return total, grad


def _halve_time(z: torch.Tensor) -> torch.Tensor:
    """Max-pool ``z [B, T, C]`` by 2 along time -> ``[B, T // 2, C]``."""
    return F.max_pool1d(z.transpose(1, 2), kernel_size=2).transpose(1, 2)


# --------------------------------------------------------------------------- random views
def draw_timestamp_mask(mode: str, n_batch: int, n_timesteps: int, generator: torch.Generator,
                        p: float = 0.5) -> torch.Tensor:
    """A ``[B, T]`` boolean mask (True = keep) of the published mask modes.

    ``binomial``: each timestamp kept with probability ``p``; ``continuous``: 5 masked runs of
    10 % of ``T`` per series; ``all_true``, ``all_false``; ``mask_last``: only the last step masked.
    """
    shape = (n_batch, n_timesteps)
    if mode == "binomial":
        return torch.rand(shape, generator=generator) < p
    if mode == "continuous":
        return _continuous_mask(n_batch, n_timesteps, generator)
    if mode == "all_true":
        return torch.ones(shape, dtype=torch.bool)
    if mode == "all_false":
        return torch.zeros(shape, dtype=torch.bool)
    if mode == "mask_last":
        mask = torch.ones(shape, dtype=torch.bool)
        mask[:, -1] = False
        return mask
    raise ValueError(f"mask mode '{mode}' not in {MASK_MODES}")


def _continuous_mask(n_batch: int, n_timesteps: int, generator: torch.Generator,
                     n_runs: int = 5, run_share: float = 0.1) -> torch.Tensor:
    n_runs = max(min(n_runs, n_timesteps // 2), 1)
    run_length = max(int(run_share * n_timesteps), 1)
    starts = torch.randint(0, n_timesteps - run_length + 1, (n_batch, n_runs, 1), generator=generator)
    t = torch.arange(n_timesteps)
    masked = ((t >= starts) & (t < starts + run_length)).any(dim=1)
    return ~masked


def draw_overlapping_crops(x: torch.Tensor, min_overlap: int, generator: torch.Generator
                           ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The published two-crop sampling of ``x [B, C, T]``.

    An overlap length ``crop_l`` in ``[min_overlap, T]`` and its position are drawn per batch, then
    extents ``[eleft, right)`` and ``[left, eright)`` around it, then one shift per series. Returns
    ``(view1 [B, C, right - eleft], view2 [B, C, eright - left], crop_l)``: the overlap is the last
    ``crop_l`` steps of ``view1`` and the first ``crop_l`` steps of ``view2``.
    """
    n_timesteps = x.shape[-1]
    if n_timesteps < min_overlap:
        raise ValueError(f"series of {n_timesteps} steps are shorter than the minimum crop "
                         f"{min_overlap} (2 ** (temporal_unit + 1))")

    def draw(low: int, high: int, size: tuple = ()) -> torch.Tensor:  # uniform in [low, high)
        return torch.randint(low, high, size, generator=generator)

    crop_l = int(draw(min_overlap, n_timesteps + 1))
    left = int(draw(0, n_timesteps - crop_l + 1))
    right = left + crop_l
    eleft = int(draw(0, left + 1))
    eright = int(draw(right, n_timesteps + 1))
    shift = draw(-eleft, n_timesteps - eright + 1, (x.shape[0],))
    view1 = take_per_row(x, shift + eleft, right - eleft)
    view2 = take_per_row(x, shift + left, eright - left)
    return view1, view2, crop_l


def take_per_row(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """``x [B, C, T]``, ``starts [B]`` -> ``[B, C, length]``: series b from ``starts[b]`` on."""
    idx = (starts[:, None] + torch.arange(length)).to(x.device)  # [B, length]
    return torch.gather(x, 2, idx[:, None, :].expand(-1, x.shape[1], -1))


def split_long_series(x: np.ndarray, max_train_length: int | None) -> np.ndarray:
    """``x [N, C, T] -> [N * S, C, T // S]`` with ``S = T // max_train_length`` when ``S >= 2``.

    The published code splits into nearly equal sections padded with NaN; windows here are NaN-free
    by contract, so the sections are equal and the last ``T % S`` (< S) samples are dropped.
    """
    if max_train_length is None or x.shape[-1] // max_train_length < 2:
        return x
    n_sections = x.shape[-1] // max_train_length
    length = x.shape[-1] // n_sections
    parts = x[..., :n_sections * length].reshape(*x.shape[:2], n_sections, length)
    return np.ascontiguousarray(parts.transpose(0, 2, 1, 3).reshape(-1, x.shape[1], length))


# --------------------------------------------------------------------------- the network
class SamePadConv(nn.Module):
    """Dilated 1-d convolution whose output has the input's length: ``[B, Ci, 1, T] -> [B, Co, 1, T]``
    (the layout of :class:`DilatedConvEncoder`; the weights are a ``Conv1d``'s)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        receptive_field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size,
                              padding=receptive_field // 2, dilation=dilation)
        self.n_trim = 1 if receptive_field % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        return _conv(x, c.weight, c.bias, c.padding[0], c.dilation[0], self.n_trim)


class ConvBlock(nn.Module):
    """Residual block: GELU -> dilated conv -> GELU -> dilated conv, plus the (projected) input.

    ``recompute``: the GELU -> conv -> GELU -> conv body runs as :class:`_RecomputedBody`, which
    keeps only the block input for the backward pass (recomputing the GELUs and the first
    convolution there): the same values and gradients, a quarter of the activation memory.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 final: bool = False, recompute: bool = False):
        super().__init__()
        self.conv1 = SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = SamePadConv(out_channels, out_channels, kernel_size, dilation)
        needs_projection = in_channels != out_channels or final
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if needs_projection else None
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.projector
        residual = x if p is None else _conv(x, p.weight, p.bias, 0, 1, 0)
        if self.recompute and torch.is_grad_enabled():
            c1, c2 = self.conv1, self.conv2
            x = _RecomputedBody.apply(x, c1.conv.weight, c1.conv.bias, c2.conv.weight,
                                      c2.conv.bias, c1.conv.padding[0], c1.conv.dilation[0],
                                      c1.n_trim)
        else:
            x = self.conv2(F.gelu(self.conv1(F.gelu(x))))
        return x + residual


class _RecomputedBody(torch.autograd.Function):
    """``conv2(gelu(conv1(gelu(x))))`` (same padding, dilation and trim for both, stride 1)
    that saves only ``x``. Under autocast its inputs are cast to the autocast dtype, as
    ``F.conv1d`` would cast them."""

    @staticmethod
    def forward(ctx, x, weight1, bias1, weight2, bias2, padding: int, dilation: int, n_trim: int):
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        params = [None if p is None else p.to(dtype) for p in (weight1, bias1, weight2, bias2)]
        x_c = x.to(dtype)
        ctx.save_for_backward(x_c, *params)
        ctx.setup = (padding, dilation, n_trim, x.dtype, weight1.dtype)
        with torch.autocast(device, enabled=False):
            hidden = _conv(F.gelu(x_c), params[0], params[1], padding, dilation, n_trim)
            return _conv(F.gelu(hidden), params[2], params[3], padding, dilation, n_trim)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x_c, weight1, bias1, weight2, bias2 = ctx.saved_tensors
        padding, dilation, n_trim, x_dtype, param_dtype = ctx.setup
        gelu_x = F.gelu(x_c)
        hidden = _conv(gelu_x, weight1, bias1, padding, dilation, n_trim)
        grad_hidden, grad_w2, grad_b2 = _conv_backward(
            grad_out.to(x_c.dtype), F.gelu(hidden), weight2, bias2, padding, dilation, n_trim)
        grad_hidden = torch.ops.aten.gelu_backward(grad_hidden, hidden)
        del hidden
        grad_gelu_x, grad_w1, grad_b1 = _conv_backward(grad_hidden, gelu_x, weight1, bias1,
                                                       padding, dilation, n_trim)
        grad_x = torch.ops.aten.gelu_backward(grad_gelu_x, x_c).to(x_dtype)
        grads = [None if g is None else g.to(param_dtype)
                 for g in (grad_w1, grad_b1, grad_w2, grad_b2)]
        return (grad_x, *grads, None, None, None)


def _conv(x, weight, bias, padding: int, dilation: int, n_trim: int) -> torch.Tensor:
    """``Conv1d`` weights ``[Co, Ci, K]`` over ``x [B, Ci, 1, T]`` as a 2-d convolution, which
    keeps ``x``'s channels-last layout (faster on CPU than the 1-d layout)."""
    out = F.conv2d(x, weight.unsqueeze(2), bias, padding=(0, padding), dilation=(1, dilation))
    return out[..., :-n_trim] if n_trim else out


def _conv_backward(grad_out, x, weight, bias, padding: int, dilation: int, n_trim: int):
    """Gradients ``(input, weight [Co, Ci, K], bias)`` of :func:`_conv` for ``grad_out``."""
    if n_trim:
        grad_out = F.pad(grad_out, (0, n_trim))
    grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
        grad_out.contiguous(memory_format=torch.channels_last), x, weight.unsqueeze(2),
        None if bias is None else [bias.shape[0]], [1, 1], [0, padding], [1, dilation], False,
        [0, 0], 1, [True, True, bias is not None])
    return grad_x, grad_w.squeeze(2), grad_b


class DilatedConvEncoder(nn.Module):
    """Residual blocks with dilation ``2**i``: ``[B, in_channels, T] -> [B, channels[-1], T]``.

    Inside, features are ``[B, C, 1, T]`` tensors in channels-last memory (each timestep's
    channels side by side), which the CPU's convolutions run fastest on; the output keeps that
    memory order (``[B, D, T]`` with strides ``(T D, 1, D)``: its ``[B, T, D]`` view is contiguous).
    """

    def __init__(self, in_channels: int, channels: list[int], kernel_size: int,
                 recompute: bool = False):
        super().__init__()
        widths = [in_channels] + list(channels)
        self.net = nn.Sequential(*[
            ConvBlock(widths[i], widths[i + 1], kernel_size, dilation=2 ** i,
                      final=(i == len(channels) - 1), recompute=recompute)
            for i in range(len(channels))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(2).contiguous(memory_format=torch.channels_last)).squeeze(2)


class TSEncoder(Network):
    """TS2Vec's encoder: ``forward(x [B, C, T], mask [B, T] | None) -> features [B, D, T]``.

    Timestamps with a NaN in any channel are zeroed at the input and masked after the projection,
    like the published code; ``mask`` (True = keep) is applied on top. The network draws no mask
    itself unless ``train_mask`` is set (fine-tuning, :meth:`TS2Vec.use_finetune_mask`): then, in
    training mode and when no mask is passed, it draws ``(mode, p, generator)``'s mask.
    ``pool`` (inherited) is the max over time -> ``[B, D]``.
    ``recompute``: see :class:`ConvBlock` (training memory only; the weights are the same).
    """

    def __init__(self, input_dims: int = 1, output_dims: int = 320, hidden_dims: int = 64,
                 depth: int = 10, kernel_size: int = 3, dropout: float = 0.1,
                 recompute: bool = False):
        super().__init__()
        self.embedding_dim = self.feature_dim = output_dims
        self.input_fc = nn.Linear(input_dims, hidden_dims)
        self.feature_extractor = DilatedConvEncoder(
            hidden_dims, [hidden_dims] * depth + [output_dims], kernel_size, recompute)
        self.repr_dropout = nn.Dropout(p=dropout)
        self.train_mask: tuple[str, float, torch.Generator] | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``generator`` (on ``x``'s device) drives the dropout in training mode when given."""
        observed = ~torch.isnan(x).any(dim=1)  # [B, T]
        x = x.masked_fill(~observed[:, None, :], 0.0)
        if mask is None and self.training and self.train_mask is not None:
            mode, p, mask_generator = self.train_mask
            mask = draw_timestamp_mask(mode, x.shape[0], x.shape[-1], mask_generator, p)
        h = self.input_fc(x.transpose(1, 2))  # [B, T, H]
        keep = observed if mask is None else mask.to(x.device) & observed
        h = h.masked_fill(~keep[..., None], 0.0).transpose(1, 2)  # [B, H, T]
        return self._dropout(self.feature_extractor(h), generator)

    def _dropout(self, h: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        p = self.repr_dropout.p
        if generator is None or not self.training or p == 0:
            return self.repr_dropout(h)
        keep = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype) >= p
        return h * keep / (1 - p)


# --------------------------------------------------------------------------- the backbone
class TS2Vec(Encoder):
    """TS2Vec with the study's defaults; ``encode`` uses the weight-averaged network (``use_swa``).

    Modules: ``network`` (trained by the optimiser) and ``averaged`` (an ``AveragedModel``,
    updated after every optimiser step, never stepped). Both are saved and strictly reloaded; a
    further ``fit`` continues both. ``trainable_network()`` is an independent copy of the averaged
    network for fine-tuning.
    """

    name = "ts2vec"
    Config = TS2VecConfig

    def _build(self, n_timesteps: int) -> None:
        c = self.config
        self.network_ = TSEncoder(c.input_dims, c.output_dims, c.hidden_dims, c.depth,
                                  c.kernel_size, c.dropout, c.recompute_blocks)
        self.modules_["network"] = self.network_
        if c.use_swa:
            self.averaged_ = AveragedModel(self.network_)
            self.averaged_.requires_grad_(False)
            self.averaged_.update_parameters(self.network_)
            self.modules_["averaged"] = self.averaged_

    def fit(self, x: np.ndarray, n_epochs: int | None = None, batch_size: int | None = None,
            lr: float | None = None, x_val: np.ndarray | None = None, seed: int | None = None,
            verbose: bool | None = None, callback=None) -> "TS2Vec":
        """:meth:`Encoder.fit` on ``x [N, 1, T]``, long series split by ``max_train_length``."""
        x = split_long_series(check_windows(x), self.config.max_train_length)
        return super().fit(x, n_epochs=n_epochs, batch_size=batch_size, lr=lr, x_val=x_val,
                           seed=seed, verbose=verbose, callback=callback)

    def _optimizer(self, params) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _loss(self, xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Hierarchical contrastive loss of two overlapping crops of ``xb [B, 1, T]``."""
        c = self.config
        xb = self._random_window(xb, generator)
        view1, view2, crop_l = draw_overlapping_crops(xb, 2 ** (c.temporal_unit + 1), generator)
        dropout_gen = _device_generator(generator, xb.device)
        z1 = self._encode_view(view1, generator, dropout_gen)[..., -crop_l:]
        z2 = self._encode_view(view2, generator, dropout_gen)[..., :crop_l]
        with torch.autocast(xb.device.type, enabled=False):  # raw dot products: keep float32
            return hierarchical_contrastive_loss(z1.float().transpose(1, 2),
                                                 z2.float().transpose(1, 2), c.alpha, c.temporal_unit)

    def _encode_view(self, view: torch.Tensor, generator: torch.Generator,
                     dropout_gen: torch.Generator) -> torch.Tensor:
        mask = draw_timestamp_mask(self.config.mask_mode, view.shape[0], view.shape[-1],
                                   generator, self.config.mask_p)
        network = getattr(self, "_loss_network", self.network_)
        return network(view, mask.to(view.device), dropout_gen)

    def _random_window(self, xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        max_length = self.config.max_train_length
        if max_length is None or xb.shape[-1] <= max_length:
            return xb
        offset = int(torch.randint(0, xb.shape[-1] - max_length + 1, (), generator=generator))
        return xb[..., offset:offset + max_length]

    def _after_step(self) -> None:
        if self.config.use_swa:
            self.averaged_.update_parameters(self.network_)

    def _inference_network(self) -> Network:
        return self.averaged_.module if self.config.use_swa else self.network_

    def trainable_network(self) -> Network:
        """An independent, fully trainable copy of the averaged network (for fine-tuning)."""
        return super().trainable_network().requires_grad_(True)

    def use_finetune_mask(self, network: Network, mode: str, generator: torch.Generator) -> None:
        """``"binomial"``: the fine-tuned ``network`` masks timestamps in training mode with the
        pretraining probability ``mask_p``, as the study's fine-tuning did; ``"none"``: no mask."""
        network.train_mask = None if mode == "none" else (mode, self.config.mask_p, generator)

    def evaluate_loss(self, x: np.ndarray, batch_size: int | None = None, seed: int = 0) -> float:
        """:meth:`Encoder.evaluate_loss` computed with the inference (averaged) network, the one
        used downstream (the held-out loss that selects a checkpoint)."""
        self._loss_network = self._inference_network()
        try:
            return super().evaluate_loss(x, batch_size, seed)
        finally:
            self._loss_network = self.network_

    def begin_continuation(self, mode: str = "genuine") -> str:
        """Prepare a continuation; returns what it starts from.

        ``"genuine"`` (ours): the averaged weights (the encoder used downstream) are copied into
        the training network and the average restarts from there. ``"study"``: as the study's
        code, the parent lives only in the averaged network, whose step count ``n_averaged``
        carries over, while the training network starts from fresh weights; a short
        continuation then moves the averaged weights by about steps / ``n_averaged``.
        """
        if check_continuation(mode) == "study" and self.config.use_swa:
            with torch.random.fork_rng(devices=[]):  # fresh weights from the seed, RNG untouched
                torch.manual_seed(self.seed)
                fresh = TSEncoder(self.config.input_dims, self.config.output_dims,
                                  self.config.hidden_dims, self.config.depth,
                                  self.config.kernel_size, self.config.dropout)
            self.network_.load_state_dict(fresh.state_dict())
            return (f"the study's: parent in the averaged network only (n_averaged "
                    f"{int(self.averaged_.n_averaged)} carried over), training network fresh")
        if not self.config.use_swa:
            return "training weights"
        self.network_.load_state_dict(self.averaged_.module.state_dict())
        self.restart_average()
        return "averaged weights; average restarted"

    def restart_average(self) -> "TS2Vec":
        """Restart the weight average from the current training weights.

        By default a continued ``fit`` keeps averaging over the whole history, so a short
        continuation barely moves the averaged network; call this before ``fit`` to average over
        the continuation only (record it in the lineage).
        """
        if self.config.use_swa:
            self.averaged_.n_averaged.zero_()
            self.averaged_.update_parameters(self.network_)
        return self


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``generator`` (for draws made on the device)."""
    seed = int(torch.randint(0, 2 ** 62, (), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)
