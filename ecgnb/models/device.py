"""Where a fit's data and random draws live, so that a training step never waits for the host.

- **The corpus.** :class:`Corpus` holds a fit's windows ``[N, 1, T]`` once: on the device when
  they take at most :data:`DEVICE_SHARE` of its free memory (a batch is then an index into it),
  else in pinned host memory, each batch gathered into one of two pinned buffers and copied with
  ``non_blocking=True``. On the CPU the windows stay where they are (``"host"``).
- **Random draws.** A fit draws from two generators: the *host* generator (the fit's CPU
  generator: the epoch order, and every draw whose value the host needs, such as a crop's length
  or a branch choice) and the *device* generator (every tensor of draws used on the device: masks,
  shifts, noise, dropout). On a GPU, :func:`device_generator` seeds the device generator once per
  fit from the host generator; on the CPU the two are one generator, so CPU draws are those of a
  single CPU generator. Both are saved in training checkpoints.
"""
from __future__ import annotations

import torch

DEVICE_SHARE = 0.5  # the corpus moves to the device when it takes at most this share of free memory


def has_separate_generator(device: torch.device) -> bool:
    """Whether draws on ``device`` come from a generator of their own (not the host's)."""
    return device.type != "cpu"


def device_generator(host: torch.Generator, device: torch.device
                     ) -> tuple[torch.Generator, int | None]:
    """The generator of the draws made on ``device``, and its seed (None: the host generator).

    The seed is one draw of ``host``, made once per fit: a fit with the same seed draws the same.
    """
    if not has_separate_generator(device):
        return host, None
    seed = int(torch.randint(0, 2 ** 62, (), generator=host))
    return torch.Generator(device=device).manual_seed(seed), seed


def generators(host: torch.Generator, on_device: torch.Generator) -> list[torch.Generator]:
    """The distinct generators of a fit, host first (what a checkpoint saves)."""
    return [host] if on_device is host else [host, on_device]


def placement(n_bytes: int, device: torch.device, free_bytes: int | None = None,
              share: float = DEVICE_SHARE) -> str:
    """``"host"`` (CPU), ``"device"`` (fits in ``share`` of the free memory) or ``"pinned"``."""
    if device.type == "cpu":
        return "host"
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0
    return "device" if n_bytes <= share * free_bytes else "pinned"


class Corpus:
    """A fit's windows, placed once (see the module docstring); ``batch(idx)`` on the device.

    ``idx`` is a 1-d index tensor on the device (``"device"``) or on the host (otherwise).
    """

    def __init__(self, x: torch.Tensor, device: torch.device, where: str | None = None):
        self.device = device
        self.where = where or placement(x.numel() * x.element_size(), device)
        if self.where == "device":
            self.x = x.to(device)
        elif self.where == "pinned":
            self.x = x.pin_memory()
            self._buffers: list[torch.Tensor] = []
            self._copied: list = []
            self._turn = 0
        else:
            self.x = x

    def indices(self, order: torch.Tensor) -> torch.Tensor:
        """An epoch's order where :meth:`batch` reads it (copied once per epoch)."""
        return order.to(self.device) if self.where == "device" else order

    def slice(self, start: int, stop: int) -> torch.Tensor:
        """Windows ``start:stop`` on the device (a slice of pinned memory is pinned itself)."""
        return self.x[start:stop].to(self.device, non_blocking=True)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        if self.where != "pinned":
            return self.x[idx].to(self.device, non_blocking=True)
        return self._pinned_batch(idx)

    def _pinned_batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Gather into the pinned buffer of this turn (its previous copy has finished), then copy."""
        shape = (len(idx), *self.x.shape[1:])
        if len(self._buffers) < 2 or self._buffers[self._turn].shape[0] < len(idx):
            self._buffers = [torch.empty(shape, dtype=self.x.dtype).pin_memory() for _ in range(2)]
            self._copied = [None, None]
        turn, self._turn = self._turn, 1 - self._turn
        if self._copied[turn] is not None:
            self._copied[turn].synchronize()  # the copy issued two batches ago
        buffer = self._buffers[turn][:len(idx)]
        torch.index_select(self.x, 0, idx, out=buffer)
        out = buffer.to(self.device, non_blocking=True)
        self._copied[turn] = torch.cuda.Event()
        self._copied[turn].record()
        return out
