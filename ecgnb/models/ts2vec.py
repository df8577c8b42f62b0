"""TS2Vec (Yue et al., AAAI 2022): hierarchical contrastive learning of timestamp representations.

A :class:`TSEncoder` maps every timestamp of a window to a 320-d representation: a linear input
projection, a binomial *timestamp mask* (training only), a stack of residual blocks of dilated
convolutions and a dropout. Training draws two *overlapping random crops* of each window, encodes
both (each with its own mask) and applies the hierarchical contrastive loss
(:mod:`ecgnb.models.ts2vec_loss`) to the representations of their overlap: instance-wise and
temporal contrast at every level of a max-pool pyramid over time. Inference uses a weight-averaged
copy of the network (SWA), as published.

Every random draw comes from the generators that ``fit`` passes to :meth:`TS2Vec._loss`: crop
extents and long-series windows (values the host needs) from the host generator, per-instance
offsets and masks from the device generator, dropout from a device generator seeded per batch from
the host generator (:mod:`ecgnb.models.device`).

Layouts: windows ``x [B, 1, T]``; network features ``[B, D, T]`` (channels first, same ``T`` as the
input, ``D = output_dims = 320``); loss inputs ``z [B, T, C]`` (time second, as in the paper);
timestamp masks ``[B, T]`` (True = keep).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ecgnb.models.base import Encoder, Network, check_continuation, check_windows
from ecgnb.models.ts2vec_loss import LOSS_IMPLS, hierarchical_contrastive_loss

MASK_MODES = ("binomial", "continuous", "all_true", "all_false", "mask_last")


@dataclass
class TS2VecConfig:
    """The study's TS2Vec defaults (published code; batch 64 and 600 epochs as in the study).

    ``depth`` counts the hidden residual blocks; a final block maps to ``output_dims``, so the
    stack has ``depth + 1`` blocks with dilations ``1, 2, ..., 2**depth``. ``weight_decay`` is
    AdamW's default, which the published code used implicitly. ``max_train_length``: longer
    training series are split into ``T // max_train_length`` equal sections, and a random window of
    that length is taken per batch (published behaviour; the study's 720-sample windows need none).
    The training settings (rate, batch, epochs, numerics) are :class:`TS2Vec`'s ``FIT_DEFAULTS``:
    ``cudnn_benchmark`` is off there, as every batch draws a new crop length and the autotuner
    would time the convolutions again for each. ``recompute_blocks``: the residual blocks keep only their inputs
    for the backward pass (see :class:`ConvBlock`); same results, less memory, a little compute.
    ``loss_impl``: ``"fast"`` (a hand-derived gradient) or ``"autograd"`` (the readable form to
    change), see :mod:`ecgnb.models.ts2vec_loss`; the same values.
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
    weight_decay: float = 1e-2
    use_swa: bool = True
    recompute_blocks: bool = True
    loss_impl: str = "fast"

    def __post_init__(self):
        if self.loss_impl not in LOSS_IMPLS:
            raise ValueError(f"loss_impl '{self.loss_impl}' not in {LOSS_IMPLS}: 'fast' (the "
                             "hand-derived gradient) or 'autograd' (the readable form)")
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode '{self.mask_mode}' not in {MASK_MODES}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.depth < 0 or self.temporal_unit < 0:
            raise ValueError("depth and temporal_unit must be >= 0")
        if self.max_train_length is not None and self.max_train_length < 2 ** (self.temporal_unit + 1):
            raise ValueError(f"max_train_length must be >= 2**(temporal_unit + 1), "
                             f"got {self.max_train_length}")


# --------------------------------------------------------------------------- random views
def draw_timestamp_mask(mode: str, n_batch: int, n_timesteps: int, generator: torch.Generator,
                        p: float = 0.5) -> torch.Tensor:
    """A ``[B, T]`` boolean mask (True = keep) of the published mask modes.

    ``binomial``: each timestamp kept with probability ``p``; ``continuous``: 5 masked runs of
    10 % of ``T`` per series; ``all_true``, ``all_false``; ``mask_last``: only the last step masked.
    """
    shape, device = (n_batch, n_timesteps), generator.device
    if mode == "binomial":
        return torch.rand(shape, generator=generator, device=device) < p
    if mode == "continuous":
        return _continuous_mask(n_batch, n_timesteps, generator)
    if mode == "all_true":
        return torch.ones(shape, dtype=torch.bool, device=device)
    if mode == "all_false":
        return torch.zeros(shape, dtype=torch.bool, device=device)
    if mode == "mask_last":
        mask = torch.ones(shape, dtype=torch.bool, device=device)
        mask[:, -1] = False
        return mask
    raise ValueError(f"mask mode '{mode}' not in {MASK_MODES}")


def _continuous_mask(n_batch: int, n_timesteps: int, generator: torch.Generator,
                     n_runs: int = 5, run_share: float = 0.1) -> torch.Tensor:
    n_runs = max(min(n_runs, n_timesteps // 2), 1)
    run_length = max(int(run_share * n_timesteps), 1)
    starts = torch.randint(0, n_timesteps - run_length + 1, (n_batch, n_runs, 1),
                           generator=generator, device=generator.device)
    t = torch.arange(n_timesteps, device=generator.device)
    masked = ((t >= starts) & (t < starts + run_length)).any(dim=1)
    return ~masked


def draw_overlapping_crops(x: torch.Tensor, min_overlap: int, generator: torch.Generator,
                           device_generator: torch.Generator | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The published two-crop sampling of ``x [B, C, T]``.

    An overlap length ``crop_l`` in ``[min_overlap, T]`` and its position are drawn per batch, then
    extents ``[eleft, right)`` and ``[left, eright)`` around it (from ``generator``: the host
    needs them), then one shift per series (from ``device_generator``, default ``generator``). Returns
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
    shifts = generator if device_generator is None else device_generator
    shift = torch.randint(-eleft, n_timesteps - eright + 1, (x.shape[0],), generator=shifts,
                          device=shifts.device)
    view1 = take_per_row(x, shift + eleft, right - eleft)
    view2 = take_per_row(x, shift + left, eright - left)
    return view1, view2, crop_l


def take_per_row(x: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """``x [B, C, T]``, ``starts [B]`` -> ``[B, C, length]``: series b from ``starts[b]`` on."""
    idx = (starts[:, None] + torch.arange(length, device=starts.device)).to(x.device)  # [B, length]
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

    reads_any_length = True  # convolutions and max pooling over time

    name = "ts2vec"
    Config = TS2VecConfig
    FIT_DEFAULTS = {"lr": 1e-3, "grad_clip": None, "cudnn_benchmark": False}

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

    def fit(self, x: np.ndarray, **kwargs) -> "TS2Vec":
        """:meth:`Encoder.fit` on ``x [N, 1, T]``, long series split by ``max_train_length``."""
        return super().fit(split_long_series(check_windows(x), self.config.max_train_length),
                           **kwargs)

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=self.config.weight_decay)

    def _loss(self, xb: torch.Tensor, generator: torch.Generator,
              device_generator: torch.Generator) -> torch.Tensor:
        """Hierarchical contrastive loss of two overlapping crops of ``xb [B, 1, T]``: crop
        extents from ``generator``, shifts and masks from ``device_generator``, the dropout
        from a generator on ``xb``'s device seeded per batch from ``generator``."""
        c = self.config
        xb = self._random_window(xb, generator)
        view1, view2, crop_l = draw_overlapping_crops(xb, 2 ** (c.temporal_unit + 1), generator,
                                                      device_generator)
        dropout_gen = _device_generator(generator, xb.device)
        z1 = self._encode_view(view1, device_generator, dropout_gen)[..., -crop_l:]
        z2 = self._encode_view(view2, device_generator, dropout_gen)[..., :crop_l]
        with torch.autocast(xb.device.type, enabled=False):  # raw dot products: keep float32
            return hierarchical_contrastive_loss(z1.float().transpose(1, 2),
                                                 z2.float().transpose(1, 2), c.alpha,
                                                 c.temporal_unit, c.loss_impl)

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
            average_step(self.averaged_, self.network_)

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


@torch.no_grad()
def average_step(averaged: AveragedModel, model: nn.Module) -> None:
    """``AveragedModel.update_parameters`` for an average already started (``n_averaged >= 1``),
    without reading the count on the host (``update_parameters`` does, a device sync per step):
    ``avg += (p - avg) / (n + 1)`` per parameter, the same arithmetic as torch's own per-parameter
    update; buffers are copied (``use_buffers=False``); ``n += 1``."""
    n_averaged = averaged.n_averaged
    for p_averaged, p_model in zip(averaged.module.parameters(), model.parameters()):
        p_model = p_model.detach().to(p_averaged.device)
        p_averaged.detach().copy_(p_averaged + (p_model - p_averaged) / (n_averaged + 1))
    for b_averaged, b_model in zip(averaged.module.buffers(), model.buffers()):
        b_averaged.detach().copy_(b_model.detach().to(b_averaged.device))
    n_averaged += 1


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from ``generator`` (for draws made on the device)."""
    seed = int(torch.randint(0, 2 ** 62, (), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)
