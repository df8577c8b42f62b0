"""Run-level plumbing shared by every stage: devices, seeds, typed configs, run records."""
from __future__ import annotations

import dataclasses
import json
import platform
import random
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

VERSIONED_PACKAGES = ("ecgnb", "torch", "numpy", "scipy", "pandas", "scikit-learn", "wfdb",
                      "neurokit2", "umap-learn", "plotly", "papermill")


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, CPU otherwise; ``device`` overrides ("cpu", "cuda", "cuda:1")."""
    if device in (None, "", "auto"):
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


def start_run(params: dict[str, Any], output_dir: str | Path, seed: int | None = None) -> Path:
    """Create the run folder, seed the process and write ``config.json``.

    ``params`` are the notebook's resolved parameters. Returns the output folder.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if seed is not None:
        seed_everything(seed)
    record = {"params": params, "seed": seed, "versions": package_versions(),
              "git_commit": git_commit(), "device": str(pick_device(params.get("device"))),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (out / "config.json").write_text(json.dumps(record, indent=2, default=str))
    return out


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


def start_stage(config, notebook: str, output_dir: str = "") -> Path:
    """First cell of every notebook: resolve the run folder, seed, write ``config.json``.

    ``config`` is the stage's typed dataclass; stale completion markers are removed so that a
    re-run is complete only once :func:`finish_stage` has run again.
    """
    from ecgnb.paths import FAILED, SUCCESS, run_output_dir

    out = run_output_dir(output_dir, notebook)
    for marker in (SUCCESS, FAILED):
        (out / marker).unlink(missing_ok=True)
    params = dataclasses.asdict(config)
    start_run(params, out, seed=params.get("seed"))
    return out


def finish_stage(output_dir: Path, summary: dict | None = None) -> Path:
    """Last cell of every notebook: mark the run complete (written last, atomically)."""
    from ecgnb.paths import SUCCESS

    started = json.loads((Path(output_dir) / "config.json").read_text())["started"]
    record = {"started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "summary": summary or {}}
    return write_json(Path(output_dir) / SUCCESS, record)
