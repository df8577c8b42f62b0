"""Room for a sweep: the disk space its runs will take, checked before the first one starts.

A run to do is estimated at the median size of the finished runs of its stage in the sweep's own
grid folder (the sizes their completion records list; results set aside under ``superseded/`` are
not counted), or at :data:`DEFAULT_RUN_BYTES` for a stage with none yet: another grid's runs (the
demo's, a few MB) say nothing of this grid's sizes. A sweep whose estimate does not fit the free
space of its grid folder stops before anything runs (:func:`check_space`);
``ecgnb run --no-disk-check`` skips the check.
"""
from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from ecgnb import runs

# Per notebook stage, what one run is taken to need when no finished run of that stage says
# otherwise: generous for the demo's runs (a few MB each), of the order of real-data runs
# (notebook 04 keeps a model per cell).
DEFAULT_RUN_BYTES = {"exploration": 50e6, "pretraining": 100e6, "regularization": 100e6,
                     "finetuning": 500e6, "embeddings": 100e6, "results": 50e6}


class NotEnoughSpace(RuntimeError):
    """The runs of a sweep would not fit the free space of its folder."""


def human_size(n_bytes: float) -> str:
    """``5.1 GB``, ``354 MB``."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def finished_sizes(root: Path) -> dict[str, list[int]]:
    """Per stage: the sizes of the finished runs under ``root``, from their completion records
    (not verified: a quick look, not a check of the runs)."""
    sizes: dict[str, list[int]] = {}
    root = Path(root)
    for marker in root.rglob(runs.SUCCESS) if root.is_dir() else ():
        if runs.SUPERSEDED in marker.relative_to(root).parts[:-1]:
            continue
        try:
            record = json.loads(marker.read_text())
            size = sum(int(a.get("size", 0)) for a in record["artefacts"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        sizes.setdefault(str(record.get("stage")), []).append(size)
    return sizes


def run_estimates(stages: list[str], root: Path) -> dict[str, float]:
    """Per stage among ``stages``: the bytes one run is expected to take."""
    sizes = finished_sizes(root)
    return {stage: statistics.median(sizes[stage]) if sizes.get(stage)
            else DEFAULT_RUN_BYTES.get(stage, max(DEFAULT_RUN_BYTES.values()))
            for stage in set(stages)}


def space_needed(stages: list[str], root: Path) -> float:
    """Bytes the runs of ``stages`` (one notebook stage per run to do) are expected to take."""
    estimates = run_estimates(stages, root)
    return sum(estimates[stage] for stage in stages)


def free_space(folder: Path) -> float:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent)."""
    folder = Path(folder).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def space_line(stages: list[str], folder: Path, root: Path) -> tuple[str, bool]:
    """One line on the space the runs of ``stages`` need in ``folder`` (the grid's folder under
    the outputs ``root``, whose finished runs are the estimate) and whether it fits."""
    needed, free = space_needed(stages, folder), free_space(folder)
    fits = needed <= free
    line = (f"disk: the {len(stages)} run(s) to do need about {human_size(needed)} in {folder}, "
            f"{human_size(free)} free")
    return line, fits


def check_space(stages: list[str], folder: Path, root: Path) -> None:
    """Raise :class:`NotEnoughSpace`, one line, when the runs of ``stages`` do not fit."""
    if not stages:
        return
    line, fits = space_line(stages, folder, root)
    if not fits:
        raise NotEnoughSpace(f"not enough {line} (estimated from this grid's finished runs of "
                             "each stage, or defaults); free space, use --outputs on another "
                             "disk, or pass --no-disk-check")
