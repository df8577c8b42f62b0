"""Execute a notebook with a params file through papermill: ``ecgnb execute NOTEBOOK PARAMS``.

The run folder is ``<outputs>/<stage>/<params-stem>/`` (or an explicit run name). It holds
the executed notebook, ``config.json`` (resolved parameters, versions, git commit), figures, and
``_SUCCESS.json`` once the notebook's last cell ran; a failed run gets ``_FAILED.json`` instead.
"""
from __future__ import annotations

import hashlib
import json
import time
import traceback
from functools import lru_cache
from pathlib import Path

import yaml

from ecgnb.config import write_json
from ecgnb.runs import FAILED, PROJECT_ROOT, SUCCESS, run_folder, stage_of

RUNNER_KEYS = ("output_dir",)  # set by the runner, never by a params file
# The kernel logs errors only: its warning about local TCP transport would otherwise be printed
# once per run, burying a sweep's progress bar.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


class ParameterError(KeyError):
    """A params file that does not fit the notebook's declared parameters."""

    def __str__(self) -> str:
        return str(self.args[0])


@lru_cache(maxsize=None)
def _inspect(notebook: str, mtime: float) -> dict:
    import papermill
    return papermill.inspect_notebook(notebook)


def declared_parameters(notebook) -> dict[str, dict]:
    """The notebook's ``parameters`` cell: name -> {inferred_type_name, default, help}."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}")
    params = _inspect(str(notebook), notebook.stat().st_mtime)
    if not params:
        raise ParameterError(f"{notebook}: no cell tagged 'parameters'")
    return params


def validate_parameters(notebook, params: dict, where: str = "params") -> dict:
    """Reject unknown keys and values of the wrong type; returns the params."""
    declared = declared_parameters(notebook)
    unknown = sorted(set(params) - set(declared) - set(RUNNER_KEYS))
    if unknown:
        raise ParameterError(f"{where}: unknown parameter(s) {unknown} for {Path(notebook).name}; "
                             f"declared: {sorted(k for k in declared if k not in RUNNER_KEYS)}")
    for name, value in params.items():
        kind = declared.get(name, {}).get("inferred_type_name", "None")
        ok = _TYPES.get(kind)
        if value is None and declared.get(name, {}).get("default") == "None":
            continue  # a parameter whose default is None ("use the default") may be set to None
        if ok and (not isinstance(value, ok) or (kind != "bool" and isinstance(value, bool))):
            raise ParameterError(f"{where}: parameter '{name}' must be {kind}, got "
                                 f"{type(value).__name__} {value!r}")
        if kind.startswith("list") and not isinstance(value, list):
            raise ParameterError(f"{where}: parameter '{name}' must be a list, got {value!r}")
    return params


def read_params(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no params file at {path}")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    return params


def params_hash(params: dict, parents: tuple[str, ...] = ()) -> str:
    """Stable hash of resolved parameters and the parents' hashes."""
    blob = json.dumps({"params": params, "parents": list(parents)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def execute(notebook, params: dict | str | Path, run_name: str | None = None,
            overwrite: bool = False, parents_hash: tuple[str, ...] = (),
            progress: bool = False, kernel: str | None = None, cwd=None) -> Path:
    """Run ``notebook`` with ``params`` (a dict or a YAML file) and return its run folder."""
    notebook = Path(notebook).resolve()
    if not isinstance(params, dict):
        run_name = run_name or f"{stage_of(notebook)}/{Path(params).stem}"
        where, params = str(params), read_params(params)
    else:
        where = f"parameters of {run_name}"
    if run_name is None:
        raise ValueError("a run name is needed when params are given as a dict")
    validate_parameters(notebook, params, where)
    folder = run_folder(run_name)
    digest = params_hash(params, parents_hash)
    if (folder / SUCCESS).is_file() and not overwrite:
        raise FileExistsError(f"run '{run_name}' already finished in {folder}; "
                              "pass --overwrite to run it again")
    return _papermill(notebook, {**params, "output_dir": str(folder.resolve())}, folder, digest,
                      progress, kernel, cwd)


def _papermill(notebook, params, folder, digest, progress, kernel, cwd) -> Path:
    import papermill

    folder.mkdir(parents=True, exist_ok=True)
    (folder / FAILED).unlink(missing_ok=True)
    start = time.time()
    try:
        papermill.execute_notebook(str(notebook), str(folder / notebook.name), parameters=params,
                                   kernel_name=kernel, progress_bar=progress,
                                   cwd=str(cwd or PROJECT_ROOT), log_output=False,
                                   extra_arguments=KERNEL_ARGUMENTS)
    except BaseException as exc:
        write_json(folder / FAILED, {"error": f"{type(exc).__name__}: {exc}"[:4000],
                                     "traceback": traceback.format_exc()[-8000:],
                                     "params_hash": digest, "wall_s": time.time() - start})
        (folder / SUCCESS).unlink(missing_ok=True)
        raise
    marker = folder / SUCCESS
    if not marker.is_file():
        write_json(folder / FAILED, {"error": "notebook ended without calling finish_stage",
                                     "params_hash": digest})
        raise RuntimeError(f"{notebook.name} ended without marking its run complete")
    record = json.loads(marker.read_text())
    write_json(marker, {**record, "params_hash": digest, "wall_s": time.time() - start})
    return folder
