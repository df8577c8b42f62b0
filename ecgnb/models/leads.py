"""Encoders over leads, channel-independent: each of a record's C leads is encoded as its own
univariate series by the same network, and the per-lead outputs are joined by concatenation
(``"concat"``: embeddings ``[B, C*D]``, time-resolved features stacked as channels
``[B, C*D', T']``) or by their mean over leads (``"mean"``: ``[B, D]``, ``[B, D', T']``).

:func:`join_leads` joins outputs computed on ``[B*C, 1, T]`` (the cached features of linear
probing); :func:`encode_leads` gives a univariate encoder's joined embeddings of ``[N, C, T]``;
:class:`LeadWise` wraps a network so that it reads ``[B, C, T]`` (fine-tuning).
"""
from __future__ import annotations

import torch
from torch import nn

LEAD_POOLINGS = ("concat", "mean")


def split_leads(x):
    """``[B, C, T] -> [B*C, 1, T]`` (numpy array or tensor): one univariate series per lead."""
    return x.reshape(x.shape[0] * x.shape[1], 1, x.shape[2])


def join_leads(z, n_leads: int, pooling: str):
    """Per-lead outputs ``[B*C, D, ...]`` (numpy array or tensor) -> ``[B, C*D, ...]``
    (``"concat"``) or ``[B, D, ...]`` (``"mean"``)."""
    if pooling not in LEAD_POOLINGS:
        raise ValueError(f"lead_pooling must be one of {list(LEAD_POOLINGS)}, got '{pooling}'")
    per_lead = z.reshape(z.shape[0] // n_leads, n_leads, *z.shape[1:])
    if pooling == "mean":
        return per_lead.mean(1)
    return per_lead.reshape(per_lead.shape[0], n_leads * z.shape[1], *z.shape[2:])


def encode_leads(encoder, x, pooling: str = "concat", batch_size: int = 256):
    """Embeddings of windows ``x [N, C, T]`` by a univariate ``encoder`` (``encode``): each lead
    encoded on its own and joined by ``pooling``; one lead: the encoder's own ``[N, D]``."""
    if x.shape[1] == 1:
        return encoder.encode(x, batch_size=batch_size)
    return join_leads(encoder.encode(split_leads(x), batch_size=batch_size), x.shape[1], pooling)


def joined_dim(dim: int, n_leads: int, pooling: str) -> int:
    return dim * n_leads if pooling == "concat" else dim


class LeadWise(nn.Module):
    """A network (``embed``, ``forward``, ``embedding_dim``, ``feature_dim``) applied to each
    of ``n_leads`` leads and joined by ``pooling``; it has the same interface over ``[B, C, T]``."""

    def __init__(self, network: nn.Module, n_leads: int, pooling: str = "concat"):
        super().__init__()
        if pooling not in LEAD_POOLINGS:
            raise ValueError(f"lead_pooling must be one of {list(LEAD_POOLINGS)}, got '{pooling}'")
        self.network, self.n_leads, self.pooling = network, n_leads, pooling
        self.embedding_dim = joined_dim(network.embedding_dim, n_leads, pooling)
        self.feature_dim = joined_dim(network.feature_dim, n_leads, pooling)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.n_leads:
            raise ValueError(f"expected [B, {self.n_leads}, T], got {tuple(x.shape)}")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return join_leads(self.network.embed(split_leads(x)), self.n_leads, self.pooling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return join_leads(self.network(split_leads(x)), self.n_leads, self.pooling)
