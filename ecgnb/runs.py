"""The run folder: where runs live, what they hold, when they are complete.

Every notebook execution is a *run*, named by its path relative to the outputs root, e.g.
``pretraining/smoke-ts2vec`` or ``demo/regularization/ts2vec-ecg-continued1``. A run folder holds:

- ``config.json``: resolved parameters, seed, package versions, git commit, device and the data
  warnings of the run (first cell);
- the stage's artefacts (``encoder.pt``, ``figures.html``, ``<stage>.json`` summaries ...);
- for stage 04, one folder per downstream cell under ``cells/<cell name>/`` with ``cell.json``,
  ``model.pt``, ``history.csv``, ``predictions.csv`` and ``metrics.json`` (written last, naming
  its siblings with their sizes and checksums); ``cell.json`` records the cell's identity (its
  settings, the encoder's weights hash, the data's checksums) and code, and a cell is reused by
  a later attempt only when all of them match (:func:`cell_problem`);
- the executed notebook (runs made by the runner);
- ``_SUCCESS.json``, the *completion record*: written last, atomically and flushed to the disk,
  it names every artefact with its size and SHA-256, the parameters and their hash, what the
  run read and executed: ``code_files`` (the digest of its notebook and of every module of the
  package its kernel loaded, :func:`ecgnb.provenance.loaded_code`) and ``code`` (their source
  hash and the versions of :data:`ecgnb.provenance.LIBRARIES`), from which :func:`code_change`
  names what changed; ``data`` (the fingerprint of every data file or folder it read,
  :func:`data_change`); ``inputs`` (its parents' result identities and its cards' digests);
- ``superseded/<hash>-<time>/``: earlier complete results of the run, set aside when it runs
  again, by a sweep, ``ecgnb execute --overwrite`` or by hand (:func:`set_aside`); no reader
  takes them for the run.

**One rule**: a run is complete only when its completion record can be read and every artefact it
names is on disk with that size and checksum (:func:`completion_problem`). Every reader asks this
module: :func:`is_complete`, :func:`find_run`, :func:`finished_runs`, the sweep's plan and the
report. Under the runner, the notebook's last cell (:func:`finish_stage`) writes only
``_PENDING.json`` (its artefacts); the runner, once papermill has saved the executed notebook,
writes the completion record (:func:`complete_pending`). A notebook run by hand or by nbval (no
``output_dir``) completes itself in :func:`finish_stage`. ``_FAILED.json`` records a failure.

``ECGNB_OUTPUTS`` and ``ECGNB_DATA`` move the outputs and data roots (tests point them to temporary
folders). This module is the only one that knows these names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from ecgnb import provenance
from ecgnb.config import DataWarning, math_threads, pick_device, seed_everything
from ecgnb.files import fsync_file, write_json
from ecgnb.provenance import (changed_files, changed_libraries, code_identity, file_digest,
                              git_commit, package_versions, shown_path)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SUCCESS = "_SUCCESS.json"  # the completion record, written last (see the module docstring)
PENDING = "_PENDING.json"  # the notebook's last cell ran; the runner has not completed the run yet
FAILED = "_FAILED.json"
RECORDS = (SUCCESS, PENDING, FAILED)
CONFIG = "config.json"
ENCODER = "encoder.pt"
CELLS = "cells"
CHECKPOINTS = "checkpoints"  # training state of the run's fits, kept until the run completes
CELL_RECORD = "cell.json"
CELL_MODEL = "model.pt"
CELL_METRICS = "metrics.json"  # written last in a cell folder: marks a complete cell
CELL_PREDICTIONS = "predictions.csv"  # the test predictions of a cell (every metric recomputable)
SUPERSEDED = "superseded"  # earlier complete results of a run, set aside (see set_aside)
KEEP_SUPERSEDED = 3  # complete results set aside per run (ecgnb run --keep-superseded)
# One name per stage: notebook ``NN_<stage>``, module ``ecgnb.<stage>``, grid section and run prefix.
STAGES = ("exploration", "pretraining", "regularization", "finetuning", "embeddings", "results")
NOTEBOOKS = {stage: f"notebooks/{i:02d}_{stage}.ipynb" for i, stage in enumerate(STAGES, 1)}
INTERACTIVE = "interactive"  # the run name of a notebook run by hand or by nbval
NO_ENCODER = "none"  # ``encoder_run`` of the supervised baselines (no encoder)


def outputs_root() -> Path:
    return Path(os.environ.get("ECGNB_OUTPUTS", PROJECT_ROOT / "outputs"))


def data_root() -> Path:
    return Path(os.environ.get("ECGNB_DATA", PROJECT_ROOT / "data"))


def stage_of(notebook: str | Path) -> str:
    """``notebooks/02_pretraining.ipynb`` -> ``pretraining``."""
    stem = Path(notebook).stem
    stage = stem.split("_", 1)[1] if stem[:2].isdigit() and "_" in stem else stem
    if stage not in STAGES:
        raise ValueError(f"{notebook}: not a stage notebook; stages: {list(STAGES)}")
    return stage


def run_folder(name: str) -> Path:
    """The folder of run ``name`` (finished or not)."""
    return outputs_root() / name


def run_output_dir(output_dir: str, stage: str) -> Path:
    """The folder a notebook writes to: ``output_dir`` when set (the runner sets it), else
    ``<outputs>/<stage>/interactive`` for runs by hand and nbval."""
    return Path(output_dir) if output_dir else run_folder(f"{stage}/{INTERACTIVE}")


def is_complete(folder: Path, expected_hash: str | None = None) -> bool:
    """Whether ``folder`` holds a complete run (with parameter hash ``expected_hash`` if given)."""
    return completion_problem(folder, expected_hash) is None


def completion_problem(folder: Path, expected_hash: str | None = None) -> str | None:
    """Why ``folder`` is not a complete run (None when it is): the one completion rule."""
    record = completion_record(folder)
    if record is None:
        pending = (Path(folder) / PENDING).is_file()
        return f"no readable completion record {SUCCESS}" + \
            (" (its notebook finished, the runner did not)" if pending else "")
    if not isinstance(record.get("artefacts"), dict):
        return f"{SUCCESS} names no artefacts (written by an older ecgnb)"
    if expected_hash is not None and record.get("params_hash") != expected_hash:
        return f"recorded parameter hash {record.get('params_hash')} is not {expected_hash}"
    return artefacts_problem(folder, record["artefacts"])


def completion_record(folder: Path) -> dict | None:
    """The run's completion record as written (None when absent or unreadable); not verified."""
    try:
        record = json.loads((Path(folder) / SUCCESS).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def code_change(record: dict | None) -> str | None:
    """How the code that recorded a run differs from this code (None when it is the same):
    ``code changed: ecgnb/models/ts2vec.py, torch 2.3.0 -> 2.4.0``. The run's code is the files
    its record lists (every module the run loaded, and its notebook): an edit to any other file
    leaves it as it was. A record without per-file digests (an older ecgnb) has changed."""
    recorded, files = (record or {}).get("code") or {}, (record or {}).get("code_files")
    if not isinstance(files, dict):
        return "recorded by other code (an older ecgnb, without per-file digests)"
    paths, versions = changed_files(files), changed_libraries(recorded)
    if not paths and not versions:
        return None
    shown = paths[:3] + ([f"{len(paths) - 3} more"] if len(paths) > 3 else [])
    return "code changed: " + ", ".join(shown + versions)


def data_change(record: dict | None, seen: dict[str, str] | None = None) -> str | None:
    """Which data a run read have changed since (None: none): ``data changed: /data/wesad``.
    ``seen`` memoises fingerprints between calls (one plan looks at a root once)."""
    seen = {} if seen is None else seen
    for path, digest in sorted(((record or {}).get("data") or {}).items()):
        if path not in seen:
            seen[path] = provenance.fingerprint(path, fingerprint_cache())
        if seen[path] != digest:
            return f"data changed: {path}" + (" is gone" if seen[path] == "missing" else "")
    return None


def fingerprint_cache() -> Path:
    """The file that keeps data files' SHA-256 between looks (:func:`ecgnb.provenance.fingerprint`)."""
    return data_root() / ".fingerprints.json"


def is_code_change(note: str | None) -> bool:
    """Whether a note of :func:`code_change` (not another reason) says why a run runs again."""
    return (note or "").startswith(("code changed", "recorded by other code"))


class OldCodeWarning(UserWarning):
    """A finished run read by code other than the code that computed it."""


def find_run(name: str) -> Path:
    """The folder of a *complete* run, by run name; a clear error otherwise. A run recorded by
    other code (source hash or numerical library versions) is returned with an
    :class:`OldCodeWarning` that says what differs: its numbers are not this code's."""
    folder = run_folder(name)
    if SUPERSEDED in Path(name).parts:
        raise FileNotFoundError(f"'{name}' is an earlier result set aside ({SUPERSEDED}/), "
                                "not a run; name the run itself")
    problem = completion_problem(folder)
    if problem is not None:
        status = "failed" if (folder / FAILED).is_file() else "missing or unfinished"
        if folder.is_dir():
            status += f" ({problem})"
        raise FileNotFoundError(f"run '{name}' is {status} (looked in {folder}); run it first")
    change = code_change(completion_record(folder))
    if change:
        warnings.warn(f"run '{name}': {change}; run it again for this code's numbers",
                      OldCodeWarning, stacklevel=2)
    return folder


def find_encoder(name: str) -> Path:
    """The checkpoint of a finished notebook-02/03 run."""
    return find_run(name) / ENCODER


# --------------------------------------------------------------------------- start and finish
def start_stage(config, stage: str, output_dir: str = "",
                by_runner: bool | None = None) -> Path:
    """First cell of every notebook: resolve the run folder, seed, write ``config.json``.

    ``config`` is the stage's typed dataclass (or a dict of parameters). Records of an earlier
    execution are removed first, so a re-run is complete only once it finishes again. From here
    to :func:`finish_stage`, every :class:`~ecgnb.config.DataWarning` the kernel raises is added
    to ``config.json`` (:class:`DataWarningRecorder`).
    ``output_dir`` is set only by the runner, which then writes the completion record itself
    (``by_runner=False``: a run made by code in a given folder completes in :func:`finish_stage`).
    """
    out = run_output_dir(output_dir, stage)
    out.mkdir(parents=True, exist_ok=True)
    set_aside_complete(out)  # a finished result run again by hand is kept, not overwritten
    for marker in RECORDS:
        (out / marker).unlink(missing_ok=True)
    params = config if isinstance(config, dict) else dataclasses.asdict(config)
    # A stage with a device parameter trains or embeds; one without it (exploration, results)
    # does no torch work, and its kernel is spared the import of torch (seconds each).
    uses_torch = "device" in params or "torch" in sys.modules
    seed = params.get("seed")
    if seed is not None:
        seed_everything(seed, torch_too=uses_torch)
    provenance.forget_reads()
    record = {"stage": stage, "params": params, "seed": seed, "versions": package_versions(),
              "git_commit": git_commit(),
              "device": str(pick_device(params.get("device"))) if uses_torch else None,
              "by_runner": bool(output_dir) if by_runner is None else by_runner,
              "torch_threads": math_threads() if uses_torch else None,
              "warnings": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(out / CONFIG, record)
    _record_data_warnings(out)
    return out


def run_code(notebook: Path | None = None) -> dict[str, str]:
    """The code of a run so far: every module of the package this process loaded, and
    ``notebook`` (whose code cells the process executed) when given."""
    files = provenance.loaded_code()
    if notebook is not None and Path(notebook).is_file():
        files[shown_path(notebook)] = file_digest(notebook)
    return dict(sorted(files.items()))


def finish_stage(output_dir: Path, summary: dict | None = None) -> Path:
    """Last cell of every notebook: list the run's artefacts (sizes, checksums, flushed to the
    disk). Under the runner this is ``_PENDING.json``, completed by :func:`complete_pending`
    once the executed notebook is saved; otherwise the completion record itself."""
    out = Path(output_dir)
    _stop_recording(out)
    config = read_json(out / CONFIG)
    # a run by hand or by nbval executed the stage's own notebook; the runner adds the one it ran
    files = run_code(None if config.get("by_runner") else
                     PROJECT_ROOT / NOTEBOOKS.get(config.get("stage"), "-"))
    record = {"stage": config.get("stage"), "started": config["started"],
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "code": code_identity(files),
              "code_files": files, "data": provenance.data_read(fingerprint_cache()),
              "inputs": config.get("inputs", {}),
              "warnings": config.get("warnings", []), "summary": summary or {},
              "artefacts": list_artefacts(out)}
    if config.get("by_runner"):
        return write_json(out / PENDING, record, durable=True)
    path = write_json(out / SUCCESS, {**record, "completed_by": "notebook"}, durable=True)
    remove_checkpoints(out)
    return path


def complete_pending(folder: Path, notebook: Path, params_hash: str, wall_s: float,
                     notebook_code: dict[str, str] | None = None, params: dict | None = None,
                     inputs: dict | None = None) -> Path:
    """The runner's last step, after papermill saved ``notebook`` into ``folder``: write the
    completion record: the notebook's artefacts and the executed notebook, the parameter hash
    and, when given, the parameters, ``inputs`` (the parents' result identities, the cards'
    digests) and ``notebook_code`` (``{path: digest}`` of the notebook the runner executed,
    added to the modules the kernel loaded)."""
    folder = Path(folder)
    if not (folder / PENDING).is_file():
        raise RuntimeError(f"{folder}: the notebook ended without its last cell "
                           "(ecgnb.runs.finish_stage) having run")
    record = read_json(folder / PENDING)
    problem = artefacts_problem(folder, record["artefacts"])
    if problem is not None:
        raise RuntimeError(f"{folder}: artefacts changed after the notebook listed them: {problem}")
    fsync_file(notebook)
    artefacts = {**record["artefacts"], Path(notebook).name: file_record(notebook)}
    if notebook_code is not None:
        files = dict(sorted({**(record.get("code_files") or {}), **notebook_code}.items()))
        record.update(code=code_identity(files), code_files=files)
    if params is not None:
        record["params"] = params
    if inputs is not None:
        record["inputs"] = inputs
    write_json(folder / SUCCESS, {**record, "artefacts": artefacts, "params_hash": params_hash,
                                  "wall_s": wall_s, "completed_by": "runner"}, durable=True)
    (folder / PENDING).unlink(missing_ok=True)
    remove_checkpoints(folder)
    return folder / SUCCESS


def remove_checkpoints(folder: Path) -> None:
    """A complete run keeps no training checkpoint (its results are its artefacts)."""
    shutil.rmtree(Path(folder) / CHECKPOINTS, ignore_errors=True)


# --------------------------------------------------------------------------- artefacts
def is_artefact(path: Path, folder: Path) -> bool:
    """Files a run vouches for: all but its records (``_*``), temp files, earlier results set
    aside (``superseded/``), training checkpoints (``checkpoints/``) and, at the top level,
    executed notebooks (the runner adds the one it saved)."""
    rel = path.relative_to(folder)
    top = len(rel.parts) == 1
    return path.is_file() and not path.name.endswith(".tmp") \
        and rel.parts[0] not in (SUPERSEDED, CHECKPOINTS) \
        and not (top and (path.name.startswith("_") or path.suffix == ".ipynb"))


def list_artefacts(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, dict]:
    """``{relative path: {size, sha256}}`` of every artefact under ``folder``, each flushed to
    the disk first."""
    folder = Path(folder)
    out = {}
    for path in sorted(folder.rglob("*")):
        if is_artefact(path, folder) and path.name not in exclude:
            fsync_file(path)
            out[path.relative_to(folder).as_posix()] = file_record(path)
    return out


def file_record(path: Path) -> dict:
    """``{size, sha256}`` of a file (the checksum is computed once per file version and process)."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "sha256": _sha256(str(path), stat.st_size, stat.st_mtime_ns)}


@lru_cache(maxsize=65536)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of ``path``; ``size`` and ``mtime_ns`` key the cache (a rewrite changes them)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefacts_problem(folder: Path, artefacts: dict) -> str | None:
    """The first artefact that is missing or differs from its record (None when all match)."""
    for rel, expected in sorted(artefacts.items()):
        path = Path(folder) / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != expected.get("size"):
            return f"{rel} has {path.stat().st_size} bytes, its record says {expected.get('size')}"
        if file_record(path)["sha256"] != expected.get("sha256"):
            return f"{rel} differs from its recorded checksum"
    return None


# --------------------------------------------------------------------------- data warnings
class DataWarningRecorder:
    """While open, every :class:`~ecgnb.config.DataWarning` this process raises is added to
    ``out/config.json`` (and still shown, by the display that was in place); closing restores the
    process's warning display and filters. :func:`start_stage` opens one for its run and
    :func:`finish_stage` closes it; ``with DataWarningRecorder(out):`` scopes one in code."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self._scope = warnings.catch_warnings()  # saves and restores showwarning and filters
        self._show = None

    def __enter__(self) -> "DataWarningRecorder":
        self._scope.__enter__()
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DataWarning):
                add_warning(self.out, str(message))
            shown(message, category, filename, lineno, file, line)

        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = self._show = show
        return self

    def __exit__(self, *exc_info) -> None:
        if warnings.showwarning is self._show:  # else an enclosing scope has restored it already
            self._scope.__exit__(*exc_info)
        self._show = None


_RECORDERS: list[DataWarningRecorder] = []  # the open run's, from start_stage to finish_stage
# A kernel holds one run; threads that start and finish runs in one process (a sweep's stand-in
# executors) take turns, so no two of them close the same recorder.
_RECORDERS_LOCK = threading.Lock()


def _record_data_warnings(out: Path) -> None:
    """Open the recorder of run ``out``, closing the one an unfinished run left open."""
    with _RECORDERS_LOCK:
        _stop_recording_locked()
        _RECORDERS.append(DataWarningRecorder(out).__enter__())


def _stop_recording(out: Path | None = None) -> None:
    """Close the open recorder (only if it records ``out``, when given)."""
    with _RECORDERS_LOCK:
        _stop_recording_locked(out)


def _stop_recording_locked(out: Path | None = None) -> None:
    if _RECORDERS and (out is None or _RECORDERS[-1].out.resolve() == Path(out).resolve()):
        _RECORDERS.pop().__exit__(None, None, None)


def add_warning(out: Path, message: str) -> None:
    """Append ``message`` to the ``warnings`` of ``out/config.json`` (once), while the run is
    open (a finished run's files are vouched for and stay as they are)."""
    out = Path(out)
    if any((out / record).exists() for record in (SUCCESS, PENDING)):
        return
    try:
        record = read_json(out / CONFIG)
        if message not in record.setdefault("warnings", []):
            record["warnings"].append(message)
            write_json(out / CONFIG, record)
    except (OSError, ValueError):  # the run folder went away: the warning is still shown
        pass


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def run_params(folder: Path) -> dict:
    """The resolved parameters a run recorded in its ``config.json`` (empty when absent)."""
    record = Path(folder) / CONFIG
    return read_json(record).get("params", {}) if record.is_file() else {}


# --------------------------------------------------------------------------- downstream cells
CELL_NAME = re.compile(r"^(?P<head>[a-z]+)-(?P<mode>[a-z]+)-f(?P<fraction>[0-9.e-]+)-s(?P<seed>\d+)$")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One downstream cell of a notebook-04 run: head (or baseline), mode, seed, label fraction."""

    head: str
    mode: str
    seed: int
    label_fraction: float

    @property
    def name(self) -> str:
        return f"{self.head}-{self.mode}-f{self.label_fraction:g}-s{self.seed}"

    @classmethod
    def parse(cls, name: str) -> "Cell":
        match = CELL_NAME.match(name)
        if match is None:
            raise ValueError(f"cell name '{name}' is not <head>-<mode>-f<fraction>-s<seed>")
        return cls(match["head"], match["mode"], int(match["seed"]), float(match["fraction"]))


def cell_folder(run_dir: Path, cell: Cell | str) -> Path:
    return Path(run_dir) / CELLS / (cell if isinstance(cell, str) else cell.name)


def write_cell_metrics(folder: Path, record: dict) -> Path:
    """Write a cell's ``metrics.json`` last, naming its sibling files (sizes, checksums)."""
    folder = Path(folder)
    files = {p.name: (fsync_file(p), file_record(p))[1] for p in sorted(folder.iterdir())
             if p.is_file() and p.name != CELL_METRICS and not p.name.endswith(".tmp")}
    return write_json(folder / CELL_METRICS, {**record, "files": files}, durable=True)


def is_cell_complete(folder: Path) -> bool:
    """A cell is complete when its ``metrics.json`` reads and every sibling it names matches."""
    try:
        record = json.loads((Path(folder) / CELL_METRICS).read_text())
    except (OSError, ValueError):
        return False
    files = record.get("files") if isinstance(record, dict) else None
    return isinstance(files, dict) and artefacts_problem(folder, files) is None


def cell_problem(folder: Path, identity: dict) -> str | None:
    """Why the cell in ``folder`` cannot be reused for a cell of ``identity`` (its settings,
    encoder and data, as :func:`ecgnb.finetuning.cell_identity` gives them); None when it can:
    complete, of the same identity, and computed by the code and libraries there are now."""
    if not is_cell_complete(folder):
        return "incomplete" if Path(folder).is_dir() else "not run"
    record = read_json(Path(folder) / CELL_RECORD)
    if record.get("identity") != json.loads(json.dumps(identity, sort_keys=True, default=str)):
        return "other settings, encoder or data"
    return code_change(record)


def complete_cells(run_dir: Path) -> list[str]:
    """Sorted names of the complete cells of a notebook-04 run."""
    return sorted(p.parent.name for p in (Path(run_dir) / CELLS).glob(f"*/{CELL_METRICS}")
                  if is_cell_complete(p.parent))


def finished_runs(folder: Path) -> list[Path]:
    """Every complete run folder under ``folder`` (recursively), sorted; results set aside
    under ``superseded/`` are not runs."""
    return sorted(marker.parent for marker in Path(folder).rglob(SUCCESS)
                  if SUPERSEDED not in marker.relative_to(folder).parts[:-1]
                  and is_complete(marker.parent))


# --------------------------------------------------------------------------- superseded results
def set_aside(folder: Path, tag: str, keep: int = KEEP_SUPERSEDED,
              reusable: tuple[str, ...] = (CELLS,)) -> Path:
    """Move the complete result in ``folder`` to ``folder/superseded/<tag>-<time>/`` (the run
    runs again under other parameters or code), then delete the oldest set-aside results beyond
    the ``keep`` newest. Only set-aside copies are ever deleted. The entries named in
    ``reusable`` (the downstream cells, each of which records its own identity and is reused
    only when it matches, :func:`cell_problem`) are copied rather than moved. Returns the copy's
    folder."""
    folder = Path(folder)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = folder / SUPERSEDED / f"{tag}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = folder / SUPERSEDED / f"{tag}-{stamp}-{n}"
    target.mkdir(parents=True)
    for entry in sorted(folder.iterdir()):
        if entry.name in reusable and entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        elif entry.name != SUPERSEDED:
            entry.rename(target / entry.name)
    for old in superseded_results(folder)[max(0, keep):]:
        shutil.rmtree(old)
    return target


def set_aside_complete(folder: Path, digest: str | None = None,
                       keep: int = KEEP_SUPERSEDED) -> Path | None:
    """Set the complete result in ``folder`` aside (tagged with its parameter hash when that is
    not ``digest``, else with its source hash); None when there is none."""
    record = completion_record(folder)
    if record is None or not is_complete(folder):
        return None
    changed = digest is None or record.get("params_hash") != digest
    tag = record.get("params_hash") if changed and record.get("params_hash") else \
        (record.get("code") or {}).get("source_hash")
    return set_aside(folder, str(tag or "unknown"), keep)


def superseded_results(folder: Path) -> list[Path]:
    """The results set aside in a run folder (:func:`set_aside`), newest first."""
    aside = Path(folder) / SUPERSEDED
    found = [p for p in aside.iterdir() if p.is_dir()] if aside.is_dir() else []
    return sorted(found, key=lambda p: (p.name.split("-", 1)[-1], p.stat().st_mtime_ns),
                  reverse=True)
