"""TS2Vec's hierarchical contrastive loss (Yue et al., AAAI 2022), in two implementations.

Inputs ``z1, z2 [B, T, C]``: the representations of the two crops' overlap (time second, as in
the paper). At every level of a max-pool-by-2 pyramid over time the loss adds ``alpha`` times the
*instance* contrast (at each timestep, each series' other view against the other series' views)
and ``1 - alpha`` times the *temporal* contrast (within each series, each timestamp's other view
against the other timestamps), and averages over the levels. Similarities are raw dot products.

- ``"autograd"`` (:func:`hierarchical_loss_autograd`): plain torch operations over whole
  similarity matrices, the gradient by autograd (which keeps every level's ``[T, 2B, 2B]`` and
  ``[B, 2T, 2T]`` matrices for the backward pass); the form to read, and to change.
- ``"fast"`` (:func:`hierarchical_loss_fast`, the default): the same values, with a hand-derived
  gradient computed in the forward pass a block of similarities at a time, so no similarity
  matrix is kept for the backward pass (faster, a fraction of the memory).

Both give the same loss and gradients to 1e-5 (``tests/models/test_ts2vec_loss.py``); a changed
loss needs a matching change of the fast form, or ``TS2VecConfig(loss_impl="autograd")``.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

LOSS_IMPLS = ("fast", "autograd")


def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                                  temporal_unit: int = 0, impl: str = "fast") -> torch.Tensor:
    """TS2Vec's loss between the representations ``z1, z2 [B, T, C]`` of the two crops' overlap.

    At every level (while ``T > 1``): ``alpha * instance + (1 - alpha) * temporal`` contrast (the
    temporal term only from level ``temporal_unit`` on), then max-pool by 2 along time (an odd last
    step is dropped). When the pyramid ends at ``T == 1`` the instance term is added once more. The
    sum is divided by the number of levels. Similarities are raw dot products (no temperature).
    ``impl``: one of :data:`LOSS_IMPLS` (the same values).
    """
    if z1.ndim != 3 or z1.shape != z2.shape:
        raise ValueError(f"expected two [B, T, C] tensors of one shape, got {z1.shape}, {z2.shape}")
    if z1.shape[1] == 0:
        raise ValueError("the representations have no timesteps")
    if impl not in LOSS_IMPLS:
        raise ValueError(f"loss implementation '{impl}' not in {LOSS_IMPLS}")
    loss = hierarchical_loss_fast if impl == "fast" else hierarchical_loss_autograd
    return loss(z1, z2, alpha, temporal_unit)


# --------------------------------------------------------------------------- the readable form
def hierarchical_loss_autograd(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                               temporal_unit: int = 0) -> torch.Tensor:
    """:func:`hierarchical_contrastive_loss` in plain torch operations (autograd's gradient)."""
    loss, level = z1.new_zeros(()), 0
    while z1.shape[1] > 1:
        if alpha != 0:
            loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if level >= temporal_unit and 1 - alpha != 0:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        level += 1
        z1, z2 = _halve_time(z1), _halve_time(z2)
    if alpha != 0:  # the top of the pyramid, T == 1: the instance term once more
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
    return loss / (level + 1)


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """At every timestep, each instance's other view against the 2B - 2 other series' views.

    ``z1, z2 [B, T, C]``; zero when ``B == 1`` (no negatives).
    """
    if z1.shape[0] == 1:
        return z1.new_zeros(())
    return _paired_cross_entropy(torch.cat([z1, z2], dim=0).transpose(0, 1))  # [T, 2B, C]


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Within each series, each timestamp's other view against the 2T - 2 other timestamps.

    ``z1, z2 [B, T, C]``; zero when ``T == 1`` (no negatives).
    """
    if z1.shape[1] == 1:
        return z1.new_zeros(())
    return _paired_cross_entropy(torch.cat([z1, z2], dim=1))  # [B, 2T, C]


def _paired_cross_entropy(z: torch.Tensor) -> torch.Tensor:
    """Mean over every group and item of ``z [G, 2N, C]`` of ``-log softmax`` of the item's pair
    (items ``i`` and ``N + i``) among the other ``2N - 1`` items of its group (self excluded)."""
    n_items = z.shape[1]
    sim = torch.matmul(z, z.transpose(1, 2))  # [G, 2N, 2N]
    is_self = torch.eye(n_items, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(is_self, float("-inf"))  # self-similarity out of every softmax
    log_prob = sim - torch.logsumexp(sim, dim=-1, keepdim=True)  # row log-softmax
    anchor = torch.arange(n_items, device=z.device)
    pair = (anchor + n_items // 2) % n_items
    return -log_prob[:, anchor, pair].mean()


def _halve_time(z: torch.Tensor) -> torch.Tensor:
    """Max-pool ``z [B, T, C]`` by 2 along time -> ``[B, T // 2, C]``."""
    return F.max_pool1d(z.transpose(1, 2), kernel_size=2).transpose(1, 2)


# --------------------------------------------------------------------------- the fast form
def hierarchical_loss_fast(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                           temporal_unit: int = 0) -> torch.Tensor:
    """:func:`hierarchical_contrastive_loss` with the gradient derived by hand (same values)."""
    terms = functools.partial(_pyramid_mean, alpha=alpha, temporal_unit=temporal_unit)
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
