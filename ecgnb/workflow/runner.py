"""Execute a notebook with a params file through papermill: ``ecgnb execute NOTEBOOK PARAMS``.

The run folder is ``<outputs>/<stage>/<params-stem>/`` (or an explicit run name). It holds
the executed notebook, ``config.json`` (resolved parameters, versions, git commit), figures, and,
once papermill has saved the executed notebook, the completion record ``_SUCCESS.json`` that the
runner writes last (:func:`ecgnb.runs.complete_pending`) with the run's parameters (data folders
and cards resolved, :func:`resolve_params`), its code (the notebook and every module the kernel
loaded), the data it read and its inputs (the parents' result identities, the cards' digests);
a failed run gets ``_FAILED.json`` where the disk allows it, and its error line says whether it
was written. ``--overwrite`` sets a finished result aside under ``superseded/`` first.

A kernel that fails to start is started again at once; one that dies mid-run raises
:class:`~ecgnb.workflow.kernel.KernelDied`, which names the signal and the kernel's peak memory
(:mod:`ecgnb.workflow.kernel`), for the scheduler to run it again.

Everything that can be checked before a kernel starts is: unknown keys, types, ranges of numeric
parameters (:data:`ecgnb.config.PARAMETER_RANGES`), a CUDA device on a machine without CUDA, and
(for one run) parent runs that are missing or incomplete.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
import traceback
from functools import lru_cache
from pathlib import Path

import yaml

from ecgnb import provenance, runs
from ecgnb.data import cards
from ecgnb.config import range_problem
from ecgnb.files import write_json
from ecgnb.runs import FAILED, NO_ENCODER, PROJECT_ROOT, run_folder, stage_of
from ecgnb.workflow import kernel as K
from ecgnb.workflow.kernel import KernelDied

RUNNER_KEYS = ("output_dir",)  # set by the runner, never by a params file
# The kernel logs errors only: its warning about local TCP transport would otherwise be printed
# once per run, burying a sweep's progress bar.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
PARENT_KEYS = ("parent_run", "encoder_run", "runs")  # parameters that name other runs
ROOT_KEYS = ("fragment_root", "wesad_root")  # parameters that name data folders
CARD_KEYS = ("target", "corpus", "scenario")  # parameters that may name a dataset card


class ParameterError(KeyError):
    """A params file that does not fit the notebook's declared parameters."""

    def __str__(self) -> str:
        return str(self.args[0])


class RunError(RuntimeError):
    """A run that failed: one line (where, the notebook's own exception, where to look)."""


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


def validate_parameters(notebook, params: dict, where: str = "params",
                        stage: str | None = None, local_devices: bool = True) -> dict:
    """Reject unknown keys, values of the wrong type and out of the range of ``stage`` (default:
    the notebook's); returns the params."""
    declared = declared_parameters(notebook)
    unknown = sorted(set(params) - set(declared) - set(RUNNER_KEYS))
    if unknown:
        raise ParameterError(f"{where}: unknown parameter(s) {unknown} for {Path(notebook).name}; "
                             f"declared: {sorted(k for k in declared if k not in RUNNER_KEYS)}")
    for name, value in params.items():
        kind = declared.get(name, {}).get("inferred_type_name", "None")
        is_optional = kind.startswith("Optional[")  # declared as "Optional[int]" and so on
        kind = kind[len("Optional["):-1] if is_optional else kind
        ok = _TYPES.get(kind)
        if value is None and (is_optional or declared.get(name, {}).get("default") == "None"):
            continue  # an optional parameter, or one whose default is None, may be set to None
        if ok and (not isinstance(value, ok) or (kind != "bool" and isinstance(value, bool))):
            raise ParameterError(f"{where}: parameter '{name}' must be {kind}, got "
                                 f"{type(value).__name__} {value!r}")
        if kind.startswith("list") and not isinstance(value, list):
            raise ParameterError(f"{where}: parameter '{name}' must be a list, got {value!r}")
        problem = (range_problem(name, value, stage or _stage(notebook))
                   or (_device_problem(name, value) if local_devices else None))
        if problem:
            raise ParameterError(f"{where}: {problem}")
    return params


def _stage(notebook) -> str | None:
    try:
        return stage_of(notebook)
    except ValueError:  # a notebook outside the stages (tests' stand-ins): the common ranges
        return None


def _device_problem(name: str, value) -> str | None:
    """``device: cuda`` (or ``cuda:N``) where this machine has no such GPU."""
    if name != "device" or not isinstance(value, str) or not value.startswith("cuda"):
        return None
    import torch

    index = int(value.split(":", 1)[1]) if value[5:6] == ":" and value[6:].isdigit() else 0
    if torch.cuda.device_count() <= index:
        return (f"parameter 'device' is '{value}' but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s); use device: auto or cpu")
    return None


def check_parents(params: dict, where: str) -> None:
    """The runs a params file reads (``parent_run``, ``encoder_run``, ``runs``) are complete."""
    for key in PARENT_KEYS:
        names = params.get(key)
        for name in names if isinstance(names, list) else [names]:
            if name and name != NO_ENCODER:
                try:
                    runs.find_run(name)
                except FileNotFoundError as exc:
                    raise ParameterError(f"{where}: {key} {exc}") from None


def read_params(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no params file at {path}")
    params = read_yaml(path) or {}
    if not isinstance(params, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    return params


def read_yaml(path: Path):
    """Parse a YAML file; malformed YAML is a :class:`ParameterError` naming the file and line."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParameterError(f"{path}{at}: malformed YAML ({problem}); fix the file") from None


def params_hash(params: dict, parents: tuple[str, ...] = ()) -> str:
    """Stable hash of a run's parameters as it will read them (variables expanded, paths
    resolved, :func:`resolve_params`), the contents of the dataset cards they name
    (:func:`card_digests`) and the parents' hashes."""
    blob = json.dumps({"params": resolve_params(params), "parents": list(parents),
                       "cards": card_digests(params)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_params(params: dict) -> dict:
    """``params`` with the data folders and cards they name as the run will read them:
    ``~`` and ``${VARIABLE}`` expanded and the path made absolute (a relative path is taken from
    the project folder, where notebooks run). Two data folders give two hashes; an unset variable
    stays as written (the run then fails naming it)."""
    out = dict(params)
    for key in ROOT_KEYS + CARD_KEYS:
        value = out.get(key)
        if not isinstance(value, str) or not value or (key in CARD_KEYS and not cards.is_card(value)):
            continue
        expanded = os.path.expanduser(os.path.expandvars(value))
        if "$" not in expanded:
            out[key] = str((PROJECT_ROOT / expanded).resolve())
    return out


def card_digests(params: dict) -> dict[str, str]:
    """``{card path: digest of its contents}`` for every card the parameters name (a card
    that is missing digests as "missing": the run then fails naming it)."""
    out = {}
    for key in CARD_KEYS:
        value = resolve_params(params).get(key)
        if isinstance(value, str) and cards.is_card(value):
            path = Path(value)
            out[key] = provenance.file_digest(path) if path.is_file() else "missing"
    return out


def parent_results(params: dict) -> dict[str, str | None]:
    """``{parent run: its result identity}`` (:func:`ecgnb.provenance.result_id`) of the runs a
    run reads, as they are now."""
    out = {}
    for key in PARENT_KEYS:
        names = params.get(key)
        for name in names if isinstance(names, list) else [names]:
            if name and name != NO_ENCODER:
                out[name] = provenance.result_id(runs.completion_record(run_folder(name)))
    return out


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
    check_parents(params, where)
    params = resolve_params(params)
    folder = run_folder(run_name)
    digest = params_hash(params, parents_hash)
    if runs.is_complete(folder) and not overwrite:
        raise FileExistsError(f"run '{run_name}' already finished in {folder}; "
                              "pass --overwrite to run it again")
    runs.set_aside_complete(folder, digest)  # --overwrite keeps the finished result aside
    return _papermill(notebook, {**params, "output_dir": str(folder.resolve())}, folder, digest,
                      progress, kernel, cwd)


def _papermill(notebook, params, folder, digest, progress, kernel, cwd) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for record in runs.RECORDS:  # the completion record goes first: nothing stale looks complete
        (folder / record).unlink(missing_ok=True)
    # the notebook's code and the inputs as they are before any kernel reads them
    code = {provenance.shown_path(notebook): provenance.file_digest(notebook)}
    inputs = {"parents": parent_results(params), "cards": card_digests(params)}
    run_params = {k: v for k, v in params.items() if k not in RUNNER_KEYS}
    start = time.time()
    executed = folder / notebook.name
    try:
        run_kernel(notebook, executed, params, progress, kernel, cwd)
        runs.complete_pending(folder, executed, digest, time.time() - start, code, run_params,
                              inputs)
    except Exception as exc:  # an interrupt is no failure: the run stays pending
        line = failure_line(exc)
        problem = _record_failure(folder, line, digest, time.time() - start,
                                  getattr(exc, "death", None))
        where = (f"executed notebook and {FAILED} in {folder}" if problem is None
                 else f"{FAILED} could not be written in {folder}: {problem}")
        error = KernelDied if isinstance(exc, KernelDied) else RunError
        raise error(f"{executed}: {line} ({where})") from exc
    return folder


def run_kernel(notebook: Path, executed: Path, params: dict, progress: bool = False,
               kernel: str | None = None, cwd=None, tries: int = K.START_TRIES) -> None:
    """papermill on one notebook in a watched kernel: a kernel that fails to start is started
    again at once (up to ``tries`` starts, short growing waits between them); one that dies
    mid-run is a :class:`KernelDied` that names how (its ``death``: exit status, signal, peak
    memory)."""
    import papermill

    for attempt in range(1, tries + 1):
        watch = K.KernelWatch()
        start = time.time()
        try:
            papermill.execute_notebook(str(notebook), str(executed), parameters=params,
                                       kernel_name=kernel, progress_bar=progress,
                                       cwd=str(cwd or PROJECT_ROOT), log_output=False,
                                       extra_arguments=KERNEL_ARGUMENTS,
                                       kernel_manager_class=watch.manager_class())
            return
        except Exception as exc:
            if K.is_start_failure(exc) and attempt < tries:
                wait_s = K.START_BACKOFF_S * 2 ** (attempt - 1) * random.uniform(1, 2)
                print(f"ecgnb: {executed.parent.name}: kernel start {attempt} failed "
                      f"({failure_line(exc)}); starting it again in {wait_s:.1f} s",
                      file=sys.stderr)
                time.sleep(wait_s)
                continue
            if K.is_dead_kernel(exc):
                death = watch.death()
                died = KernelDied(K.death_line(death, time.time() - start))
                died.death = death
                raise died from exc
            raise
        finally:
            watch.stop()


def failure_line(exc: BaseException) -> str:
    """The useful line of a failure: the notebook's own exception (``ename: evalue``) when it
    raised inside a cell, how the kernel died, else the exception's first line."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:  # papermill's PapermillExecutionError
        cell = getattr(exc, "exec_count", None)
        return f"{f'cell [{cell}]: ' if cell else ''}{ename}: {evalue}"
    text = str(exc).strip().splitlines()
    if isinstance(exc, KernelDied):
        return text[0]
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _record_failure(folder: Path, line: str, digest: str, wall_s: float,
                    death: dict | None = None) -> str | None:
    """``_FAILED.json`` where the disk allows it; returns why it could not be written (a full
    or read-only disk), None when it was."""
    record = {"error": line[:4000], "traceback": traceback.format_exc()[-8000:],
              "params_hash": digest, "wall_s": wall_s}
    if death is not None:
        record["kernel"] = death
    try:
        write_json(folder / FAILED, record)
    except OSError as exc:
        return str(exc)
    return None
