"""Classification heads on top of an encoder network, and the :class:`Classifier` that joins them.

Heads (registry :data:`HEADS`), each reading its input size from the encoder, never hand-set:

- ``linear``: embedding ``[B, D]`` -> logits ``[B, K]``.
- ``mlp``: embedding ``[B, D]`` -> 500 -> ReLU -> dropout -> logits ``[B, K]``; with
  ``mlp_head="study"`` the study's variant (:class:`StudyMLPHead`, :data:`MLP_VARIANTS`).
- ``fcn``: time-resolved features ``[B, D', T']`` -> three conv blocks (128/256/128 channels,
  kernels 8/5/3, "same" padding, BN, ReLU) -> global average pool -> logits ``[B, K]``.
  The study ran its FCN over the pooled embedding as if it were a sequence; ours runs over time.

Every head returns raw logits: no softmax, activation or dropout after the last layer.
Each head class states which encoder output it reads in ``input_kind``: ``"embedding"``
(``network.embed(x)``, size ``network.embedding_dim``) or ``"features"`` (``network(x)``,
``network.feature_dim`` channels).
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ecgnb.models.base import Network


class SameConv1d(nn.Conv1d):
    """Stride-1 ``Conv1d`` with "same" padding done explicitly (left ``(k-1)//2``, right the
    rest), as PyTorch's and Keras' "same", without the copy warning for even kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_same(x, self.kernel_size[0]))


def pad_same(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Zero-pad ``x [B, C, T]`` so that a stride-1 convolution of ``kernel_size`` keeps ``T``."""
    left = (kernel_size - 1) // 2
    return F.pad(x, (left, kernel_size - 1 - left))


class LinearHead(nn.Module):
    """``[B, D] -> [B, K]``: one linear layer (the linear-probe head)."""

    input_kind: ClassVar[str] = "embedding"

    def __init__(self, in_dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, n_classes)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear(embedding)


class MLPHead(nn.Module):
    """``[B, D] -> [B, K]``: Linear(D, hidden) -> ReLU -> Dropout -> Linear(hidden, K).

    Dropout sits before the last layer; the logits are returned untouched.
    """

    input_kind: ClassVar[str] = "embedding"

    def __init__(self, in_dim: int, n_classes: int, hidden_dim: int = 500, dropout: float = 0.2):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(),
                                    nn.Dropout(dropout), nn.Linear(hidden_dim, n_classes))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding)


class StudyMLPHead(nn.Module):
    """The study's MLP head without its defect (activation and dropout on the logits):
    Dropout(0.1) -> Linear(D, hidden) -> LeakyReLU -> Dropout(0.2) -> Linear(hidden, hidden) ->
    LeakyReLU -> Dropout(0.2) -> Linear(hidden, K). Its code had two or three hidden layers in
    different versions; which one produced the paper table is not recoverable (two here,
    docs/deviations.md)."""

    input_kind: ClassVar[str] = "embedding"

    def __init__(self, in_dim: int, n_classes: int, hidden_dim: int = 500):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Dropout(0.1), nn.Linear(in_dim, hidden_dim), nn.LeakyReLU(), nn.Dropout(0.2),
            nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(), nn.Dropout(0.2),
            nn.Linear(hidden_dim, n_classes))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.layers(embedding)


class FCNHead(nn.Module):
    """``[B, C, T'] -> [B, K]``: the FCN of Wang et al. (2017) over time-resolved features.

    Conv blocks (``channels`` 128/256/128, ``kernel_sizes`` 8/5/3, "same" padding, BatchNorm,
    ReLU), global average pooling over time, then a linear layer to the logits.
    """

    input_kind: ClassVar[str] = "features"

    def __init__(self, in_channels: int, n_classes: int, channels: Sequence[int] = (128, 256, 128),
                 kernel_sizes: Sequence[int] = (8, 5, 3)):
        super().__init__()
        if len(channels) != len(kernel_sizes):
            raise ValueError(f"FCNHead: {len(channels)} channels but {len(kernel_sizes)} kernels")
        blocks, c_in = [], in_channels
        for c_out, k in zip(channels, kernel_sizes):
            blocks += [SameConv1d(c_in, c_out, k), nn.BatchNorm1d(c_out), nn.ReLU()]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(c_in, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 3:
            raise ValueError(f"FCNHead expects features [B, C, T'], got {tuple(features.shape)}")
        return self.linear(self.blocks(features).mean(dim=-1))


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "mlp": MLPHead, "fcn": FCNHead}
MLP_VARIANTS: dict[str, type[nn.Module]] = {"ecgnb": MLPHead, "study": StudyMLPHead}


def head_input_dim(name: str, network_or_dim: Network | int) -> int:
    """The head's input size: ``embedding_dim`` (linear, mlp) or ``feature_dim`` (fcn).

    ``network_or_dim`` is an encoder :class:`Network` (the size is read from it) or an int.
    """
    cls = _head_class(name)
    if isinstance(network_or_dim, int):
        return network_or_dim
    attr = "embedding_dim" if cls.input_kind == "embedding" else "feature_dim"
    if not hasattr(network_or_dim, attr):
        raise TypeError(f"head '{name}' reads `{attr}` from the network; "
                        f"{type(network_or_dim).__name__} has none")
    return int(getattr(network_or_dim, attr))


def build_head(name: str, network_or_dim: Network | int, n_classes: int,
               mlp_head: str = "ecgnb", **kwargs) -> nn.Module:
    """A fresh head ``name`` for ``n_classes`` whose input size comes from the network;
    ``mlp_head`` picks the MLP variant (:data:`MLP_VARIANTS`)."""
    cls = MLP_VARIANTS[mlp_head] if name == "mlp" else _head_class(name)
    return cls(head_input_dim(name, network_or_dim), n_classes, **kwargs)


def _head_class(name: str) -> type[nn.Module]:
    if name not in HEADS:
        raise KeyError(f"unknown head '{name}'; known: {sorted(HEADS)}")
    return HEADS[name]


class Classifier(nn.Module):
    """Encoder network + head: ``forward(x [B, 1, T]) -> logits [B, K]``.

    The head reads ``network.embed(x)`` (linear, mlp) or ``network(x)`` (fcn). With
    ``freeze_network=True`` (linear probing) the network takes no gradient and stays in eval mode
    even when the classifier is switched to training mode.
    """

    def __init__(self, network: Network, head: nn.Module, freeze_network: bool = False):
        super().__init__()
        self.network = network
        self.head = head
        self.is_network_frozen = freeze_network
        if freeze_network:
            self.network.requires_grad_(False)
            self.network.eval()

    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads: embedding ``[B, D]`` or features ``[B, D', T']``."""
        if self.head.input_kind == "embedding":
            return self.network.embed(x)
        return self.network(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_input(x))

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.is_network_frozen:
            self.network.eval()
        return self
