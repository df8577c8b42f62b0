"""The lowest layer: devices, seeds, typed configs and their ranges (a run's identity is
:mod:`ecgnb.provenance`'s, safe writes :mod:`ecgnb.files`')."""
from __future__ import annotations

import dataclasses
import math
import random
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:  # the functions that use torch import it: importing this module (the first
    import torch   # import of every notebook and of the runner) does not load it


class DataWarning(UserWarning):
    """Data that load but deserve a look (a subject with no usable window, synthetic data standing
    in for a root that was not set): recorded in the run's ``config.json``, shown by the report."""


# --------------------------------------------------------------------------- parameter ranges
@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric parameter: ``low`` < or <= value < or <= ``high``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: value must be > low (else >= low)

    def contains(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if self.high is None else f"<= {self.high:g}"
        return " and ".join(p for p in (low, high) if p)


COUNT, POSITIVE, NON_NEGATIVE = Range(1), Range(0, low_open=True), Range(0)
SHARE = Range(0, 1, low_open=True)  # a fraction in (0, 1]
# One name, one meaning, everywhere: the range of each numeric parameter of the notebooks and of
# their typed configs (``None``, where a parameter allows it, means "the default": not checked).
PARAMETER_RANGES: dict[str, Range] = {
    "n_epochs": COUNT, "batch_size": COUNT, "n_members": COUNT,
    "n_examples": COUNT, "k_neighbors": COUNT, "n_boot": COUNT, "n_neighbors": Range(2),
    "n_windows": NON_NEGATIVE, "n_corpus_windows": NON_NEGATIVE, "min_dist": NON_NEGATIVE,
    "lr": POSITIVE, "encoder_lr_ratio": POSITIVE, "encoder_lr": POSITIVE, "fs": POSITIVE,
    "label_fraction": SHARE, "corpus_fraction": SHARE,
    "val_share": Range(0, 1, low_open=True), "test_share": Range(0, 1, low_open=True),
    "seed": NON_NEGATIVE, "seeds": NON_NEGATIVE, "data_seed": NON_NEGATIVE,
    "split_seed": NON_NEGATIVE,
    # downstream training (0: no early stopping, no warm-up, no clipping)
    "patience": NON_NEGATIVE, "warmup_epochs": NON_NEGATIVE, "lr_patience": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE, "encoder_weight_decay": NON_NEGATIVE, "min_lr": NON_NEGATIVE,
    "grad_clip": NON_NEGATIVE,
    "lr_factor": Range(0, 1, low_open=True),
}
# Where a stage gives a parameter another range: pretraining for 0 epochs is the "untrained"
# reference (the network at its initial weights).
STAGE_RANGES: dict[str, dict[str, Range]] = {"pretraining": {"n_epochs": NON_NEGATIVE}}


def parameter_range(name: str, stage: str | None = None) -> Range | None:
    """The range of parameter ``name`` in ``stage`` (None: unchecked)."""
    return STAGE_RANGES.get(stage, {}).get(name) or PARAMETER_RANGES.get(name)


def range_problem(name: str, value, stage: str | None = None) -> str | None:
    """Why ``value`` is out of ``name``'s range in ``stage`` (each item of a list), or None."""
    allowed = parameter_range(name, stage)
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values if allowed else ():
        if isinstance(item, (int, float)) and not isinstance(item, bool) \
                and not allowed.contains(item):
            return f"parameter '{name}' must be {allowed}, got {item!r}"
    return None


def check_ranges(config) -> None:
    """``__post_init__`` of the typed configs: every numeric field within its range (of the
    config's ``STAGE``, where it names one)."""
    for field in dataclasses.fields(config):
        problem = range_problem(field.name, getattr(config, field.name),
                                getattr(config, "STAGE", None))
        if problem:
            raise ValueError(f"{type(config).__name__}: {problem}")


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, CPU otherwise; ``device`` overrides ("cpu", "cuda", "cuda:1")."""
    import torch

    if device in (None, "", "auto"):  # "auto" is spelled only here: everything else passes it on
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def torch_generator(seed: int) -> torch.Generator:
    """A CPU generator for every random draw of a run (crops, masks, augmentations, order)."""
    import torch

    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def seed_everything(seed: int, torch_too: bool = True) -> None:
    """Seed the global RNGs too, for third-party code that reads them (weight init, dropout);
    ``torch_too=False``: Python's and numpy's only, for a process that does no torch work."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if torch_too:
        import torch

        torch.manual_seed(seed)


def math_threads() -> int:
    """torch's CPU threads in this process: part of a run's record, since the thread count
    changes the last digits of CPU results (see :mod:`ecgnb.workflow.sweep`)."""
    import torch

    return torch.get_num_threads()


def reject_unknown(values: dict, known: Iterable[str], where: str) -> None:
    """Unknown keys are an error that lists them and the known ones."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise KeyError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")


def from_dict(cls, values: dict, where: str):
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys loudly."""
    reject_unknown(values, {f.name for f in dataclasses.fields(cls)}, where)
    return cls(**values)
