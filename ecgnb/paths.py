"""Where things live: the project's ``outputs/`` and ``data/`` (overridable by environment).

``ECGNB_OUTPUTS`` and ``ECGNB_DATA`` redirect both, e.g. to a temporary folder in tests.
A run is named by its path relative to the outputs root, e.g. ``02_pretraining/ts2vec_ECG``.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SUCCESS = "_SUCCESS.json"  # written last: its presence marks a complete run
FAILED = "_FAILED.json"


def outputs_root() -> Path:
    return Path(os.environ.get("ECGNB_OUTPUTS", PROJECT_ROOT / "outputs"))


def data_root() -> Path:
    return Path(os.environ.get("ECGNB_DATA", PROJECT_ROOT / "data"))


def run_output_dir(output_dir: str, notebook: str) -> Path:
    """The folder a notebook writes to: ``output_dir`` when set (papermill sets it), else
    ``<outputs>/<notebook>/interactive`` for interactive or nbval runs."""
    return Path(output_dir) if output_dir else outputs_root() / notebook / "interactive"


def find_run(name: str) -> Path:
    """The folder of a *finished* run, by run name (relative to the outputs root)."""
    folder = outputs_root() / name
    if not (folder / SUCCESS).is_file():
        status = "failed" if (folder / FAILED).is_file() else "missing or unfinished"
        raise FileNotFoundError(f"run '{name}' is {status} (looked in {folder}); run it first")
    return folder
