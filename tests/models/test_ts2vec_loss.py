"""TS2Vec's hierarchical loss: both implementations against a slow loop reference and each other
(values and gradients, whole and chunked similarity blocks), and a fit with the readable form."""
import math

import numpy as np
import pytest
import torch

import ecgnb.models.ts2vec_loss as ts2vec_loss
from ecgnb.models import build
from ecgnb.models.ts2vec import TS2VecConfig
from ecgnb.models.ts2vec_loss import (LOSS_IMPLS, hierarchical_contrastive_loss,
                                      hierarchical_loss_autograd)


# --------------------------------------------------------------------------- the slow reference
def slow_nll(views: list, anchor: int, positive: int) -> float:
    """-log softmax of the positive among every view but the anchor (raw dot products)."""
    logits = [float(views[anchor] @ views[j]) for j in range(len(views)) if j != anchor]
    top = max(logits)
    log_normaliser = top + math.log(sum(math.exp(v - top) for v in logits))
    return log_normaliser - float(views[anchor] @ views[positive])


def slow_instance(z1, z2) -> float:
    n_batch, n_timesteps, _ = z1.shape
    if n_batch == 1:
        return 0.0
    terms = []
    for t in range(n_timesteps):
        views = [z1[b, t] for b in range(n_batch)] + [z2[b, t] for b in range(n_batch)]
        terms += [slow_nll(views, a, (a + n_batch) % (2 * n_batch)) for a in range(2 * n_batch)]
    return sum(terms) / len(terms)


def slow_temporal(z1, z2) -> float:
    """The temporal term is the instance term with batch and time swapped."""
    return slow_instance(z1.transpose(0, 1), z2.transpose(0, 1))


def slow_halve(z):
    pairs = [torch.stack([torch.maximum(z[b, 2 * k], z[b, 2 * k + 1])
                          for k in range(z.shape[1] // 2)]) for b in range(z.shape[0])]
    return torch.stack(pairs)


def slow_hierarchical(z1, z2, alpha, temporal_unit) -> float:
    total, level = 0.0, 0
    while z1.shape[1] > 1:
        total += alpha * slow_instance(z1, z2)
        if level >= temporal_unit:
            total += (1 - alpha) * slow_temporal(z1, z2)
        level += 1
        z1, z2 = slow_halve(z1), slow_halve(z2)
    total += alpha * slow_instance(z1, z2)
    return total / (level + 1)


@pytest.mark.parametrize("impl", LOSS_IMPLS)
@pytest.mark.parametrize("n_batch,n_timesteps,alpha,temporal_unit", [
    (3, 5, 0.5, 0), (1, 1, 0.5, 0), (3, 1, 0.5, 0), (1, 6, 0.5, 0), (2, 7, 0.3, 1), (4, 4, 1.0, 0)])
def test_hierarchical_loss_matches_slow_reference(impl, n_batch, n_timesteps, alpha, temporal_unit):
    gen = torch.Generator().manual_seed(n_batch * 10 + n_timesteps)
    z1, z2 = (torch.randn(n_batch, n_timesteps, 4, generator=gen, dtype=torch.float64)
              for _ in range(2))
    value = float(hierarchical_contrastive_loss(z1, z2, alpha, temporal_unit, impl))
    assert value == pytest.approx(slow_hierarchical(z1, z2, alpha, temporal_unit), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("impl", LOSS_IMPLS)
def test_hierarchical_loss_gradient_flows(impl):
    gen = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(3, 8, 4, generator=gen, requires_grad=True) for _ in range(2))
    hierarchical_contrastive_loss(z1, z2, impl=impl).backward()
    for z in (z1, z2):
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


# --------------------------------------------------------------------------- fast == autograd
def fast_and_autograd(z1, z2, alpha, temporal_unit):
    """Both implementations' loss and gradients ``(dz1, dz2)`` at ``z1, z2``."""
    results = []
    for loss in (ts2vec_loss.hierarchical_loss_fast, hierarchical_loss_autograd):
        leaves = [z.clone().requires_grad_() for z in (z1, z2)]
        value = loss(*leaves, alpha, temporal_unit)
        value.backward()
        results.append((value.item(), leaves[0].grad, leaves[1].grad))
    return results


@pytest.mark.parametrize("chunk_elements", [2 ** 22, 40, 1])
@pytest.mark.parametrize("scale", [0.5, 8.0])  # 8: most softmax weights underflow
def test_chunked_loss_and_gradient_equal_the_autograd_reference(monkeypatch, chunk_elements,
                                                                 scale):
    monkeypatch.setattr(ts2vec_loss, "CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(chunk_elements)
    z1, z2 = (scale * torch.randn(3, 13, 5, generator=gen) for _ in range(2))
    (fast, *fast_grads), (slow, *slow_grads) = fast_and_autograd(z1, z2, 0.4, 1)
    assert fast == pytest.approx(slow, rel=1e-5)
    for mine, reference in zip(fast_grads, slow_grads):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the value-only path
        assert float(hierarchical_contrastive_loss(z1, z2, 0.4, 1)) == pytest.approx(slow,
                                                                                     rel=1e-5)


@pytest.mark.parametrize("chunk_elements", [2 ** 22, 7])  # 7: rows of the matrices, a few at a time
@pytest.mark.parametrize("shape,alpha,temporal_unit", [
    ((2, 9, 3), 0.5, 0), ((5, 17, 6), 0.3, 0), ((4, 1, 3), 0.5, 0), ((1, 11, 4), 0.5, 2),
    ((3, 32, 4), 0.0, 0), ((6, 21, 2), 1.0, 1)])
def test_fast_and_autograd_give_the_same_loss_and_gradients(monkeypatch, chunk_elements, shape,
                                                            alpha, temporal_unit):
    monkeypatch.setattr(ts2vec_loss, "CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(sum(shape))
    z1, z2 = (torch.randn(*shape, generator=gen) for _ in range(2))
    (fast, *fast_grads), (slow, *slow_grads) = fast_and_autograd(z1, z2, alpha, temporal_unit)
    assert fast == pytest.approx(slow, rel=1e-5)
    for mine, reference in zip(fast_grads, slow_grads):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)


def test_an_unknown_implementation_is_refused():
    z = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match="loss implementation 'loops' not in"):
        hierarchical_contrastive_loss(z, z, impl="loops")
    with pytest.raises(ValueError, match="loss_impl 'loops' not in .*'autograd' \\(the readable"):
        TS2VecConfig(loss_impl="loops")


# --------------------------------------------------------------------------- training with it
def sine_windows(n: int = 24, n_timesteps: int = 64, seed: int = 0) -> np.ndarray:
    """Noisy sines of random frequency and phase, ``[N, 1, T]`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_timesteps) / n_timesteps
    wave = np.sin(2 * np.pi * rng.uniform(1, 6, (n, 1)) * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    return (wave + 0.1 * rng.standard_normal(wave.shape))[:, None, :].astype(np.float32)


def test_a_fit_with_the_autograd_loss_decreases_it_like_the_fast_one():
    x = sine_windows()
    curves = {}
    for impl in LOSS_IMPLS:
        enc = build("ts2vec", device="cpu", seed=0, verbose=False, depth=2, hidden_dims=8,
                    output_dims=16, loss_impl=impl).build(x.shape[-1])
        before = enc.evaluate_loss(x, seed=123)  # the same crops and masks before and after
        enc.fit(x, n_epochs=3, batch_size=8, lr=1e-2)
        assert enc.evaluate_loss(x, seed=123) < 0.97 * before
        curves[impl] = [record["loss"] for record in enc.history_]
    np.testing.assert_allclose(curves["autograd"], curves["fast"], rtol=1e-5)
