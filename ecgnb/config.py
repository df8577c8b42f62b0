"""The lowest layer: devices, seeds, typed configs, versions and atomic JSON writes."""
from __future__ import annotations

import dataclasses
import json
import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

VERSIONED_PACKAGES = ("ecgnb", "torch", "numpy", "scipy", "pandas", "scikit-learn", "wfdb",
                      "neurokit2", "umap-learn", "plotly", "papermill")


# Training recipes: "study" = the study's published settings (its defects fixed, nothing else
# changed), "ecgnb" = ours. Each stage resolves its None parameters from the recipe
# (docs/deviations.md lists every difference and its switch).
RECIPES = ("ecgnb", "study")


def check_recipe(recipe: str) -> str:
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got '{recipe}'")
    return recipe


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, CPU otherwise; ``device`` overrides ("cpu", "cuda", "cuda:1")."""
    if device in (None, "", "auto"):  # "auto" is spelled only here: everything else passes it on
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def torch_generator(seed: int) -> torch.Generator:
    """A CPU generator for every random draw of a run (crops, masks, augmentations, order)."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def seed_everything(seed: int) -> None:
    """Seed the global RNGs too, for third-party code that reads them (weight init, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def reject_unknown(values: dict, known: Iterable[str], where: str) -> None:
    """Unknown keys are an error that lists them and the known ones."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise KeyError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")


def from_dict(cls, values: dict, where: str):
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys loudly."""
    reject_unknown(values, {f.name for f in dataclasses.fields(cls)}, where)
    return cls(**values)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (temp file + rename), so a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_jsonable))
    tmp.replace(path)
    return path


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
