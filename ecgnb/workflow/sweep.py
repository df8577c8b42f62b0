"""The sweep scheduler: a grid's runs executed as a DAG with papermill, resumable and parallel.

A run's state is read from its folder ``<outputs>/<grid>/<run>`` before anything starts:

- ``cached``: the run is complete (:func:`ecgnb.runs.is_complete`: its completion record matches
  every artefact on disk), records the run's current hash (its parameters with data folders and
  cards resolved, the cards' contents and its parents' hashes,
  :meth:`ecgnb.workflow.grid.Grid.hashes`), and nothing it read has changed since
  (:func:`stale_reason`): no parent runs again, each parent's result is the one it read
  (:func:`ecgnb.provenance.result_id`), the code it executed (the notebook and every module its
  kernel loaded) and the libraries that computed are those recorded, and the data it read have
  the recorded fingerprints. An edit to code a run did not load (the command line, another
  backbone) leaves it cached. A run recorded by other code runs again unless
  ``accept_old_code``; every run downstream of a run that runs again runs again too;
- ``failed``: ``_FAILED.json`` records the current hash; kept failed (its dependants ``skipped``)
  unless ``retry_failed``;
- ``pending``: anything else (never run, interrupted, or run with other parameters).

A run that is not cached has a ``note`` saying why (``ecgnb run --dry-run`` shows it):
"code changed: ecgnb/models/ts2vec.py", "parameters changed: lr 0.001 -> 0.0003", "parent
pretraining/ts2vec-ecg runs again", "parent ...'s result changed since", "data changed: ...",
"incomplete", "failed before: ...".

Pending runs start, ``jobs`` at a time, once their parents are ``cached`` or ``done``; a failure
marks every dependant ``skipped`` and the rest continues. A run whose kernel died (killed by the
out-of-memory killer, :class:`~ecgnb.workflow.kernel.KernelDied`) runs again, up to ``retries``
times, in the same folder (it resumes from what the notebook kept). Before a run starts, its
folder is prepared (:func:`prepare_folder`): a complete result is set aside under
``superseded/`` (the ``keep_superseded`` newest per run are kept), an incomplete attempt with
another hash is removed, and one with the same hash keeps its checkpoints and finished cells,
which resume or are reused only where their own records match the run's settings, code and
device. A sweep killed at any moment leaves
nothing that looks complete. Before the first run, the sweep checks that the runs to do fit the
free space of the grid folder (:mod:`ecgnb.workflow.disk`; ``disk_check=False`` skips it).
``<outputs>/<grid>/sweep.json`` records every run's state, hash, wall time and error, rewritten
atomically after each change; runs a killed sweep left "running" are marked "interrupted" when
the next sweep starts. One sweep per grid folder runs at a time (``.sweep.lock``).

Every kernel gets :data:`RUN_THREADS` math threads whatever ``jobs`` is (:func:`thread_budget`):
torch's CPU kernels split their sums by thread, so the thread count changes the last digits of
the weights and, through training, the scores; one count for every run keeps a grid's numbers
the same under ``--jobs 1`` and ``--jobs 2`` (a user's ``OMP_NUM_THREADS`` wins, and each run
records its count in ``config.json``). With ``devices`` (e.g. ``("cuda:0", "cuda:1")``) each run executes in a child process whose
kernel sees only its device (``CUDA_VISIBLE_DEVICES``), so ``device: auto`` picks it and the
run's hash does not depend on where it ran; with more ``jobs`` than devices, each run goes to the
device with the fewest runs on it (round-robin), never to an unlisted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from ecgnb import provenance, runs
from ecgnb.files import write_json
from ecgnb.runs import FAILED, KEEP_SUPERSEDED, outputs_root
from ecgnb.workflow import disk, runner
from ecgnb.workflow.grid import SECTIONS, Grid
from ecgnb.workflow.kernel import KernelDied

STATES = ("cached", "done", "failed", "skipped", "pending", "running", "excluded", "interrupted")
FINISHED_OK = ("cached", "done")
ATTEMPT = "_ATTEMPT.json"  # the hash of the latest attempt in a run folder
STATUS_FILE = "sweep.json"
LOCK_FILE = ".sweep.lock"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
RUN_THREADS = 1  # math threads per kernel, independent of --jobs (reproducible numbers)
RETRIES = 3  # further attempts of a run whose kernel died (as Ray's for a lost node)
KERNEL_DIED_STATUS = 75  # exit status of a run's child process whose kernel died


class SweepBusy(FileExistsError):
    """Another sweep of the same grid holds the grid folder's lock."""


class RunFailed(RuntimeError):
    """A run whose notebook raised (its folder holds ``_FAILED.json`` and the executed notebook)."""


@dataclasses.dataclass
class RunStatus:
    """One run's state in a sweep (a row of ``sweep.json``)."""

    name: str
    section: str  # of the grid file
    hash: str
    parents: tuple[str, ...]
    state: str = "pending"
    wall_s: float | None = None
    error: str | None = None
    device: str | None = None
    folder: str = ""
    note: str | None = None  # why a run that is not cached runs (code, parameters, ...)


# (grid, run name, parents' hashes, device) -> None, or where the run executed (e.g. a Ray node)
Executor = Callable[[Grid, str, tuple[str, ...], str | None], str | None]


# --------------------------------------------------------------------------- planning
def plan(grid: Grid, only: str | None = None, retry_failed: bool = False,
         accept_old_code: bool = False) -> dict[str, RunStatus]:
    """Every run's state from its folder; runs outside ``only`` (and its ancestors) ``excluded``."""
    selected = set(grid.select(only))
    hashes = grid.hashes()
    out: dict[str, RunStatus] = {}
    seen: dict[str, str] = {}  # data fingerprints, one look per path and plan
    for name, run in grid.runs.items():
        folder = run_folder(grid, name)
        status = RunStatus(name, run.section, hashes[name], run.parents, folder=str(folder))
        failed_parents = [p for p in run.parents if out[p].state in ("failed", "skipped")]
        complete = runs.is_complete(folder, hashes[name])
        record = runs.completion_record(folder)
        status.note = stale_reason(grid, run, record, out, seen) if complete else None
        if complete and (status.note is None
                         or (accept_old_code and runs.is_code_change(status.note))):
            status.state = "cached"
            status.wall_s = record.get("wall_s")
        elif name not in selected:
            status.state = "excluded"
        elif failed_parents:
            status.state, status.error = "skipped", f"parent {failed_parents[0]} did not finish"
        elif _read(folder / FAILED).get("params_hash") == hashes[name] and not retry_failed:
            status.state = "failed"
            status.error = "(previous attempt) " + str(_read(folder / FAILED).get("error"))
        if status.state == "pending" and status.note is None:
            status.note = _reason(run, folder, record, hashes[name], out)
        out[name] = status
    return out


def stale_reason(grid: Grid, run, record: dict, planned: dict[str, RunStatus],
                 seen: dict[str, str]) -> str | None:
    """Why a complete run of the current parameters is no longer current (None: it is): a
    parent runs again, a parent's result changed since the run read it, the code it executed
    or a library changed, or the data it read changed."""
    again = [p for p in run.parents if planned[p].state not in FINISHED_OK]
    if again:
        return f"parent {again[0]} runs again"
    recorded = (record.get("inputs") or {}).get("parents")
    for parent in run.parents:
        if not isinstance(recorded, dict):
            return "recorded without its parents' results (an older ecgnb)"
        now = provenance.result_id(runs.completion_record(run_folder(grid, parent)))
        if recorded.get(grid.run_id(parent)) != now:
            return f"parent {parent}'s result changed since"
    return runs.code_change(record) or runs.data_change(record, seen)


def _reason(run, folder: Path, record: dict | None, digest: str,
            planned: dict[str, RunStatus]) -> str | None:
    """Why a pending run runs, other than code (None: it never ran)."""
    if record is not None and record.get("params_hash") != digest:
        recorded = record.get("params")
        if recorded is None:  # recorded before the runner kept the parameters: config.json's
            config = runs.run_params(folder)
            recorded = {k: config[k] for k in run.params if k in config}
        change = params_change(recorded, run.params)
        if change:
            return f"parameters changed: {change}"
        cards = ((record.get("inputs") or {}).get("cards")) or {}
        edited = sorted(k for k, v in runner.card_digests(run.params).items() if cards.get(k) != v)
        if edited:
            return f"card changed: {run.params[edited[0]]}"
        again = [p for p in run.parents if planned[p].state != "cached"]
        return f"parent runs again: {again[0]}" if again else "a parent ran again since"
    failure = _read(folder / FAILED).get("error")
    if failure:
        return f"failed before: {str(failure).splitlines()[0][:200]}"
    return "incomplete" if folder.is_dir() else None


_UNSET = object()  # a parameter one side does not set


def params_change(recorded: dict, params: dict, shown: int = 3) -> str:
    """``lr 0.001 -> 0.0003, n_epochs 2 -> 3``: the parameters that differ (empty: none)."""
    keys = sorted(k for k in set(recorded) | set(params)
                  if recorded.get(k, _UNSET) != params.get(k, _UNSET))
    parts = [f"{k} {_shown(recorded.get(k, _UNSET))} -> {_shown(params.get(k, _UNSET))}"
             for k in keys[:shown]]
    return ", ".join(parts + ([f"{len(keys) - shown} more"] if len(keys) > shown else []))


def _shown(value) -> str:
    if value is _UNSET:
        return "(unset)"
    return f"{value:g}" if isinstance(value, float) else json.dumps(value, default=str)


def code_note(statuses: dict[str, RunStatus], accept_old_code: bool) -> str | None:
    """One line about the runs recorded by other code (None when there are none)."""
    old = [s.name for s in statuses.values() if runs.is_code_change(s.note)]
    if not old:
        return None
    if accept_old_code:
        return f"{len(old)} run(s) recorded by other code are kept (--accept-old-code)"
    return (f"{len(old)} run(s) were recorded by other code and run again, e.g. {old[0]}: "
            f"{statuses[old[0]].note}; pass --accept-old-code to keep them")


def run_folder(grid: Grid, name: str) -> Path:
    return runs.run_folder(grid.run_id(name))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def count_states(statuses: dict[str, RunStatus]) -> dict[str, int]:
    counts = {state: 0 for state in STATES}
    for status in statuses.values():
        counts[status.state] += 1
    return {k: v for k, v in counts.items() if v}


def format_plan(grid: Grid, statuses: dict[str, RunStatus], accept_old_code: bool = False,
                disk_check: bool = True) -> str:
    """The DAG as text: runs grouped by grid section with their state, parents and, for a run that
    runs, why; then counts, the disk space the runs to do need, and a line on old code."""
    lines = [f"grid '{grid.name}' ({grid.source}) -> {outputs_root() / grid.name}"]
    counts = grid.counts()
    for section in SECTIONS:
        runs = [r for r in grid.runs.values() if r.section == section]
        if not runs:
            continue
        cells = f", {counts[section]['cells']} cells" if counts[section]["cells"] else ""
        lines.append(f"\n{section} ({len(runs)} runs{cells})")
        for run in runs:
            status = statuses[run.name]
            after = f"  <- {', '.join(run.parents)}" if run.parents else ""
            why = f"  ({status.note})" if status.note and status.state == "pending" else ""
            lines.append(f"  [{status.state:>8}] {run.name}{after}{why}")
    total = sum(c["runs"] for c in counts.values())
    n_cells = sum(c["cells"] for c in counts.values())
    lines.append(f"\n{total} runs, {n_cells} downstream cells; states: {count_states(statuses)}")
    if disk_check and to_do(grid, statuses):
        lines.append(disk.space_line(grid, to_do(grid, statuses), outputs_root() / grid.name)[0])
    note = code_note(statuses, accept_old_code)
    return "\n".join(lines + ([note] if note else []))


def to_do(grid: Grid, statuses: dict[str, RunStatus]) -> list[str]:
    """The runs the sweep will execute (for the disk estimate)."""
    return [n for n, s in statuses.items() if s.state == "pending"]


# --------------------------------------------------------------------------- executing one run
def prepare_folder(folder: Path, digest: str, keep: int = KEEP_SUPERSEDED) -> None:
    """Make ``folder`` ready for an attempt with parameter hash ``digest``: a complete result is
    set aside (:func:`ecgnb.runs.set_aside`, ``keep`` per run; its downstream cells are copied,
    to be reused where they match); an incomplete attempt with another hash is removed; one with
    the same hash keeps its records (``_*``), ``checkpoints/`` and ``cells/`` (each of which is
    resumed or reused only when its own record matches this run's settings, code and device) and
    loses the rest.
    Records this attempt."""
    if runs.set_aside_complete(folder, digest, keep) is None and folder.exists():
        same_params = _read(folder / ATTEMPT).get("params_hash") == digest
        kept = {runs.SUPERSEDED} | ({runs.CHECKPOINTS, runs.CELLS} if same_params else set())
        # the run's records stay (a Ray node's _attempts.jsonl); the runner renews the others
        kept |= {e.name for e in folder.iterdir() if e.name.startswith("_")} if same_params \
            else set()
        _remove_all_but(folder, kept)
    for tmp in folder.rglob("*.tmp") if folder.exists() else ():
        if runs.SUPERSEDED not in tmp.relative_to(folder).parts and tmp.is_file():
            tmp.unlink(missing_ok=True)
    write_json(folder / ATTEMPT, {"params_hash": digest, "started": time.time()})


def _remove_all_but(folder: Path, kept: set[str]) -> None:
    for entry in folder.iterdir():
        if entry.name in kept:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def execute_run(grid: Grid, name: str, parent_hashes: tuple[str, ...],
                device: str | None = None) -> None:
    """Execute one run with papermill (in this process, or a child pinned to ``device``)."""
    run = grid.runs[name]
    if device is None:
        runner.execute(run.notebook, run.params, run_name=grid.run_id(name), overwrite=True,
                       parents_hash=parent_hashes)
        return
    spec = {"notebook": str(run.notebook), "params": run.params, "run_name": grid.run_id(name),
            "parents_hash": list(parent_hashes)}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": device_index(device)}
    proc = subprocess.run([sys.executable, "-m", "ecgnb.workflow.sweep", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                else f"exit status {proc.returncode}")
        raise (KernelDied if proc.returncode == KERNEL_DIED_STATUS else RunFailed)(line)


def device_index(device: str) -> str:
    """``cuda:1`` -> ``1`` (the value of ``CUDA_VISIBLE_DEVICES``)."""
    index = device.split(":", 1)[1] if device.startswith("cuda:") else device
    if not index.isdigit():
        raise ValueError(f"devices are cuda:N or N, got '{device}'")
    return index


def _attempt(execute: Executor, grid: Grid, name: str, hashes: dict[str, str],
             device: str | None, retries: int = RETRIES,
             keep: int = KEEP_SUPERSEDED) -> tuple[float, str | None]:
    """One run, in its prepared folder; run again while its kernel dies (``retries`` times)."""
    start = time.time()
    parents = tuple(hashes[p] for p in grid.runs[name].parents)
    for attempt in range(retries + 1):
        prepare_folder(run_folder(grid, name), hashes[name], keep)
        try:
            where = execute(grid, name, parents, device)
            return time.time() - start, where or device
        except KernelDied as exc:
            if attempt == retries:
                raise
            print(f"ecgnb: {name}: {str(exc).splitlines()[0]}; running it again "
                  f"({attempt + 1} of {retries} retries)", file=sys.stderr)


# --------------------------------------------------------------------------- the sweep
def run_sweep(grid: Grid, jobs: int = 1, devices: Sequence[str] = (), only: str | None = None,
              retry_failed: bool = False, progress: bool = True,
              execute: Executor = execute_run, accept_old_code: bool = False,
              retries: int = RETRIES, keep_superseded: int = KEEP_SUPERSEDED,
              disk_check: bool = True) -> dict[str, RunStatus]:
    """Execute the pending runs of ``grid`` (see the module docstring); returns every status."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    devices = [d for d in devices if d]
    for d in devices:
        device_index(d)
    if devices:
        _check_auto_device(grid)
    with sweep_lock(grid), thread_budget():
        left = mark_interrupted(grid)
        statuses = plan(grid, only, retry_failed, accept_old_code)
        for name in left:
            if statuses[name].state == "pending":
                statuses[name].note = statuses[name].note or "left running by a killed sweep"
        if disk_check:
            disk.check_space(grid, to_do(grid, statuses), outputs_root() / grid.name, jobs)
        return _Scheduler(grid, statuses, jobs, devices, execute, progress, retries,
                          keep_superseded).run()


def mark_interrupted(grid: Grid) -> list[str]:
    """Runs that ``sweep.json`` still calls "running" although no sweep holds the lock (a killed
    sweep): marked "interrupted" in ``sweep.json``; returns their names."""
    path = outputs_root() / grid.name / STATUS_FILE
    record = _read(path)
    left = [n for n, r in (record.get("runs") or {}).items() if r.get("state") == "running"]
    if left:
        for name in left:
            record["runs"][name]["state"] = "interrupted"
        record["counts"] = {**record.get("counts", {}), "running": 0, "interrupted": len(left)}
        record["interrupted_found"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(path, record)
    return left


@contextlib.contextmanager
def sweep_lock(grid: Grid):
    """One sweep per grid folder at a time (an OS lock: released even if the sweep is killed)."""
    path = outputs_root() / grid.name / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepBusy(f"another sweep of grid '{grid.name}' is running ({path} is locked); "
                            "wait for it to end or stop it") from None
        yield path


@contextlib.contextmanager
def thread_budget(threads: int = RUN_THREADS, names: Sequence[str] = THREAD_VARIABLES):
    """Give every kernel ``threads`` math threads (``OMP_NUM_THREADS`` and friends, read by torch
    at import) whatever the number of parallel jobs, unless the user set them; restored
    afterwards. The same count for every run is what makes a grid's numbers independent of
    ``--jobs``."""
    threads = str(max(1, int(threads)))
    unset = [name for name in names if name not in os.environ]
    os.environ.update({name: threads for name in unset})
    try:
        yield threads
    finally:
        for name in unset:
            os.environ.pop(name, None)


def _check_auto_device(grid: Grid) -> None:
    fixed = sorted({r.params["device"] for r in grid.runs.values()
                    if r.params.get("device", "auto") != "auto"})
    if fixed:
        raise ValueError(f"--devices pins each run's kernel to one GPU and needs device: auto in "
                         f"the grid, which sets device {fixed}")


class _Scheduler:
    """The loop of one sweep: start ready runs, collect finished ones, record states."""

    def __init__(self, grid, statuses, jobs, devices, execute, progress, retries=RETRIES,
                 keep=KEEP_SUPERSEDED):
        self.grid, self.statuses, self.jobs, self.execute = grid, statuses, jobs, execute
        self.retries, self.keep = retries, keep
        self.devices = {d: 0 for d in devices}  # device -> runs on it now
        self.hashes = {n: s.hash for n, s in statuses.items()}
        self.order = _priority(grid)
        self.running: dict[Future, str] = {}
        todo = [s for s in statuses.values() if s.state not in ("excluded",)]
        done = sum(s.state in ("cached", "failed", "skipped") for s in todo)
        self.bar = tqdm(total=len(todo), initial=done, desc=f"sweep {grid.name}", unit="run",
                        disable=not progress, dynamic_ncols=True)

    def run(self) -> dict[str, RunStatus]:
        self.save()
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="ecgnb-run")
        try:
            self._loop(pool)
        except BaseException:
            for name in self.running.values():
                self.statuses[name].state = "interrupted"
            self.save()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            self.bar.close()
        pool.shutdown(wait=True)
        return self.statuses

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            for name in self._ready():
                if len(self.running) >= self.jobs:
                    break
                self._start(pool, name)
            self._show()
            if not self.running:
                return
            finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
            for future in finished:
                self._finish(future)

    def _ready(self) -> list[str]:
        ok = {n for n, s in self.statuses.items() if s.state in FINISHED_OK}
        return [n for n in self.order if self.statuses[n].state == "pending"
                and all(p in ok for p in self.grid.runs[n].parents)]

    def _start(self, pool: ThreadPoolExecutor, name: str) -> None:
        status = self.statuses[name]
        status.device = self._least_loaded()
        status.state, status.error = "running", None
        future = pool.submit(_attempt, self.execute, self.grid, name, self.hashes, status.device,
                             self.retries, self.keep)
        self.running[future] = name
        self.save()

    def _least_loaded(self) -> str | None:
        """The device with the fewest runs on it now (the first of equals); None: no devices.
        With more jobs than devices, runs share devices round-robin."""
        if not self.devices:
            return None
        device = min(self.devices, key=self.devices.get)
        self.devices[device] += 1
        return device

    def _finish(self, future: Future) -> None:
        name = self.running.pop(future)
        status = self.statuses[name]
        if status.device is not None:
            self.devices[status.device] -= 1
        error = future.exception()
        if error is None:
            status.state, (status.wall_s, status.device) = "done", future.result()
        else:
            status.state, status.error = "failed", _error_text(name, error, status.folder)
            self._skip_dependants(name)
        self.bar.update(1)
        self.save()

    def _skip_dependants(self, name: str) -> None:
        for other in self.grid.descendants(name):
            if self.statuses[other].state == "pending":
                self.statuses[other].state = "skipped"
                self.statuses[other].error = f"ancestor {name} failed"
                self.bar.update(1)

    def _show(self) -> None:
        counts = count_states(self.statuses)
        shown = {"done": counts.get("done", 0) + counts.get("cached", 0),
                 "running": counts.get("running", 0), "failed": counts.get("failed", 0),
                 "skipped": counts.get("skipped", 0), "left": counts.get("pending", 0)}
        self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in shown.items()), refresh=True)

    def save(self) -> Path:
        record = {"grid": self.grid.name, "source": str(self.grid.source),
                  "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "counts": count_states(self.statuses),
                  "runs": {n: dataclasses.asdict(s) for n, s in self.statuses.items()}}
        return write_json(outputs_root() / self.grid.name / STATUS_FILE, record)


def _priority(grid: Grid) -> list[str]:
    """Start order: runs that unlock the most dependants first, then the shallowest (the
    baselines, which wait for nothing, before the downstream runs), then grid order."""
    position = {n: i for i, n in enumerate(grid.runs)}
    return sorted(grid.runs, key=lambda n: (-len(grid.descendants(n)), len(grid.ancestors([n])),
                                            position[n]))


def _error_text(name: str, error: BaseException, folder: str) -> str:
    recorded = _read(Path(folder) / FAILED).get("error")
    text = recorded or f"{type(error).__name__}: {error}"
    return text.strip().splitlines()[-1][:500] if text.strip() else type(error).__name__


def _child(spec_json: str) -> int:
    """Entry point of a run's child process (``python -m ecgnb.workflow.sweep SPEC``); a kernel
    that died is exit status :data:`KERNEL_DIED_STATUS`, for the parent to run it again."""
    spec = json.loads(spec_json)
    try:
        runner.execute(spec["notebook"], spec["params"], run_name=spec["run_name"],
                       overwrite=True, parents_hash=tuple(spec["parents_hash"]))
    except KernelDied as exc:
        print(exc, file=sys.stderr)
        return KERNEL_DIED_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
