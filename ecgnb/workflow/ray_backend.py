"""A sweep on a Ray cluster: ``ecgnb run GRID --ray [ADDRESS]``.

The scheduler stays :func:`ecgnb.workflow.sweep.run_sweep` (plan from the run folders, DAG order, failures
skip dependants, ``sweep.json``, progress bar, lock); only the executor changes:
:class:`RayExecutor` sends each run to the cluster as one Ray task, which executes the notebook
with papermill exactly as the local scheduler does (same run folder, hash and ``_SUCCESS.json``
written last), so both backends read and resume each other's folders.

- Placement: a run asks for its section's ``resources`` in the grid (``num_cpus``, ``num_gpus``,
  ``memory``; default one CPU). Ray picks the node and the GPU; the kernel sees only the GPUs Ray
  assigned (none for a run that asked for none), so ``device: auto`` picks the right one. Its math
  threads are its ``num_cpus`` (at least one), unless the user set ``OMP_NUM_THREADS`` and friends.
- Shared outputs: every node must see the driver's outputs root (and ``ECGNB_DATA`` when set) at
  the same path (a shared filesystem). :func:`check_shared_outputs` proves it on every node before
  the sweep starts; :func:`check_resources` that some node can hold each section's runs.
- Faults: a run whose worker or node dies, or whose kernel dies (killed by the out-of-memory
  killer: the task raises :class:`~ecgnb.workflow.kernel.KernelDied`, which Ray retries), is
  retried by Ray (``max_retries``, on any node); the attempt that died left no ``_SUCCESS.json``
  with the run's hash, and a retry resumes the same folder (cells are folders named by head,
  mode and seed: never a second copy). A kernel that fails to start is started again inside the
  task (:func:`ecgnb.workflow.runner.run_kernel`). A notebook that raises is not retried:
  ``_FAILED.json``, as locally. Each attempt appends a line to the run's ``_attempts.jsonl``
  (node, GPUs, start), so retries can be counted afterwards.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ecgnb.runs import FAILED, data_root, outputs_root

if TYPE_CHECKING:
    from ecgnb.workflow.grid import Grid
# ecgnb.workflow.runner and ecgnb.workflow.sweep import torch (seconds): a node imports them only to run a run,
# not to answer the outputs probe.

ATTEMPTS = "_attempts.jsonl"  # one line per attempt of a run on the cluster
DEFAULT_RESOURCES = {"num_cpus": 1}
MAX_RETRIES = 3  # further attempts of a run whose worker, node or kernel died
POLL_S = 0.5  # how often a waiting run checks whether the sweep was interrupted
PROBE_TIMEOUT_S = 120  # for every node to answer the outputs probe


class SharedOutputsError(ValueError):
    """A cluster node that cannot see or write the driver's outputs root."""


# --------------------------------------------------------------------------- connecting
@contextlib.contextmanager
def connected(address: str | None = None):
    """Ray for the duration of a sweep: ``None`` starts a local instance (stopped afterwards),
    ``auto``, ``host:port`` or ``ray://host:port`` join a running cluster. A Ray already
    initialised in this process (e.g. by a test) is used as it is and left running."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def alive_nodes(ray) -> list[dict]:
    return [node for node in ray.nodes() if node.get("Alive")]


# --------------------------------------------------------------------------- shared outputs
def _probe(root: str, token: str) -> str:
    """On one node: read the driver's token under ``root`` and write an answer next to it."""
    probe = Path(root) / ".ray-probe" / token
    if not (probe / "driver").is_file():
        return f"cannot see {probe / 'driver'} (is {root} on a filesystem this node shares?)"
    import ray

    try:
        node = ray.get_runtime_context().get_node_id()
        (probe / f"node-{node}").write_text(str(os.getpid()))
    except OSError as exc:
        return f"cannot write under {root}: {exc}"
    return ""


def check_shared_outputs(ray, root: Path | None = None) -> int:
    """Check from a task on every alive node that it sees and can write ``root`` (default: the
    outputs root); returns the number of nodes checked, raises :class:`SharedOutputsError`."""
    from ray.exceptions import GetTimeoutError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = Path(root or outputs_root()).resolve()
    token = uuid.uuid4().hex
    probe = root / ".ray-probe" / token
    probe.mkdir(parents=True)
    (probe / "driver").write_text(str(os.getpid()))
    task = ray.remote(num_cpus=0, max_retries=0)(_probe)
    nodes = alive_nodes(ray)
    refs = {node["NodeID"]: task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node["NodeID"], soft=False)).remote(str(root), token) for node in nodes}
    try:
        answers = ray.get(list(refs.values()), timeout=PROBE_TIMEOUT_S)
    except GetTimeoutError:
        answers = [f"no answer within {PROBE_TIMEOUT_S} s"] * len(refs)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
        with contextlib.suppress(OSError):
            probe.parent.rmdir()  # unless another sweep is probing too
    problems = {n: answer for n, answer in zip(refs, answers) if answer}
    if problems:
        lines = "\n".join(f"  node {n[:12]}: {text}" for n, text in problems.items())
        raise SharedOutputsError(f"the outputs root must be one folder that every Ray node sees "
                                 f"at the same path (set ECGNB_OUTPUTS or --outputs):\n{lines}")
    return len(nodes)


# --------------------------------------------------------------------------- resources
RAY_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}  # grid key -> Ray's


def check_resources(ray, grid: Grid) -> None:
    """Fail before the sweep when a grid section asks more of one node than any alive node has
    (Ray would otherwise wait for such a node for ever)."""
    nodes = [node.get("Resources", {}) for node in alive_nodes(ray)]
    for section in sorted({run.section for run in grid.runs.values()}):
        asked = {**DEFAULT_RESOURCES, **grid.resources.get(section, {})}
        if not any(all(node.get(RAY_NAMES[k], 0) >= v for k, v in asked.items()) for node in nodes):
            largest = [{RAY_NAMES[k]: node.get(RAY_NAMES[k], 0) for k in asked} for node in nodes]
            raise ValueError(f"{grid.source}: {section}.resources {asked} fit no node of the Ray "
                             f"cluster (per node: {largest}); lower them or add such a node")


def check_devices(grid: Grid) -> None:
    """Ray numbers the GPUs a run sees from 0: a grid that pins ``cuda:N`` (N > 0) cannot run."""
    devices = {str(r.params.get("device", "auto")) for r in grid.runs.values()}
    pinned = sorted(devices - {"auto", "cpu", "cuda", "cuda:0"})
    if pinned:
        raise ValueError(f"{grid.source}: with --ray, Ray chooses the GPU (the run sees it as "
                         f"cuda:0): set device: auto instead of {pinned}")


# --------------------------------------------------------------------------- one run, on a node
def run_task(spec: dict) -> dict:
    """Body of a run's Ray task: execute the notebook like the local scheduler, in the run's
    environment (outputs root, threads, the GPUs Ray assigned); returns where it ran."""
    import ray

    from ecgnb.workflow import runner

    context = ray.get_runtime_context()
    gpus = [str(g) for g in ray.get_gpu_ids()]
    placed = {"node": context.get_node_id(), "gpus": gpus, "pid": os.getpid(), "start": time.time()}
    env = {**spec["env"], "ECGNB_OUTPUTS": spec["outputs"]}
    if not gpus:  # a run that asked for no GPU sees none
        env["CUDA_VISIBLE_DEVICES"] = ""
    with _environment(env):
        folder = Path(spec["outputs"]) / spec["run_name"]
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ATTEMPTS, "a") as log:
            log.write(json.dumps(placed) + "\n")
        try:
            runner.execute(spec["notebook"], spec["params"], run_name=spec["run_name"],
                           overwrite=True, parents_hash=tuple(spec["parents_hash"]))
        except (KeyboardInterrupt, SystemExit):  # Ray ended the task (its driver died): the
            (folder / FAILED).unlink(missing_ok=True)  # attempt was interrupted, not failed
            raise
    return {**placed, "end": time.time()}


@contextlib.contextmanager
def _environment(values: dict):
    """``os.environ`` updated for one task (a Ray worker runs many tasks, one at a time)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def attempts(folder: Path) -> list[dict]:
    """The attempts a run made on a cluster (``_attempts.jsonl``), oldest first."""
    path = Path(folder) / ATTEMPTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


# --------------------------------------------------------------------------- the executor
class RayExecutor:
    """A :data:`ecgnb.workflow.sweep.Executor` that runs each run as a Ray task and waits for it.

    The scheduler calls it from one thread per run in flight; :meth:`stop` cancels what is in
    flight (the sweep was interrupted). ``placements`` keeps what every finished task returned.
    """

    def __init__(self, ray, grid: Grid, max_retries: int = MAX_RETRIES):
        from ecgnb.workflow import sweep
        from ecgnb.workflow.kernel import KernelDied

        self.ray, self.grid = ray, grid
        self.task = ray.remote(max_retries=max_retries, retry_exceptions=[KernelDied])(run_task)
        # thread variables the user set (run_sweep's thread_budget sets them for local kernels)
        self.thread_variables = sweep.THREAD_VARIABLES
        self.user_threads = {v: os.environ[v] for v in sweep.THREAD_VARIABLES if v in os.environ}
        self.placements: dict[str, dict] = {}
        self.in_flight: dict[str, object] = {}
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def resources(self, name: str) -> dict:
        return {**DEFAULT_RESOURCES, **self.grid.resources.get(self.grid.runs[name].section, {})}

    def spec(self, name: str, parent_hashes: tuple[str, ...]) -> dict:
        run = self.grid.runs[name]
        threads = str(max(1, int(self.resources(name)["num_cpus"])))
        env = {v: self.user_threads.get(v, threads) for v in self.thread_variables}
        if "ECGNB_DATA" in os.environ:  # like the outputs root: the same path on every node
            env["ECGNB_DATA"] = str(data_root().resolve())
        return {"notebook": str(run.notebook), "params": run.params,
                "run_name": self.grid.run_id(name), "parents_hash": list(parent_hashes),
                "outputs": str(outputs_root().resolve()), "env": env}

    def __call__(self, grid: Grid, name: str, parent_hashes: tuple[str, ...],
                 device: str | None = None) -> str:
        from ecgnb.workflow.kernel import KernelDied
        from ecgnb.workflow.sweep import RunFailed

        if self.stopped.is_set():
            raise KeyboardInterrupt("sweep interrupted")
        ref = self.task.options(**self.resources(name)).remote(self.spec(name, parent_hashes))
        with self.lock:
            self.in_flight[name] = ref
        try:
            placed = self._wait(ref)
        except KernelDied as exc:  # Ray's retries are spent: the sweep does not retry again
            raise RunFailed(str(exc).strip().splitlines()[-1]) from None
        finally:
            with self.lock:
                self.in_flight.pop(name, None)
        self.placements[name] = placed
        gpus = f" gpu {','.join(placed['gpus'])}" if placed["gpus"] else ""
        return f"ray node {placed['node'][:12]}{gpus}"

    def _wait(self, ref) -> dict:
        from ray.exceptions import GetTimeoutError

        while True:
            try:
                return self.ray.get(ref, timeout=POLL_S)
            except GetTimeoutError:
                if self.stopped.is_set():
                    raise KeyboardInterrupt("sweep interrupted") from None

    def stop(self) -> None:
        """Cancel the runs in flight (their folders stay incomplete and resume next time)."""
        self.stopped.set()
        with self.lock:
            refs = list(self.in_flight.values())
        for ref in refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)


# --------------------------------------------------------------------------- the sweep
def run_sweep_on_ray(grid: Grid, address: str | None = None, jobs: int | None = None,
                     only: str | None = None, retry_failed: bool = False, progress: bool = True,
                     max_retries: int = MAX_RETRIES, accept_old_code: bool = False,
                     keep_superseded: int | None = None,
                     disk_check: bool = True) -> tuple[dict, RayExecutor]:
    """:func:`ecgnb.workflow.sweep.run_sweep` with each run a Ray task; ``jobs`` caps the runs in flight
    (default: every ready run is handed to Ray, which queues them on the resources)."""
    from ecgnb.workflow import sweep

    check_devices(grid)
    with connected(address) as ray:
        check_resources(ray, grid)
        check_shared_outputs(ray)
        executor = RayExecutor(ray, grid, max_retries)
        try:
            statuses = sweep.run_sweep(
                grid, jobs=jobs or len(grid.runs), only=only, retry_failed=retry_failed,
                progress=progress, execute=executor, accept_old_code=accept_old_code,
                retries=0, disk_check=disk_check,  # Ray retries a kernel that died
                keep_superseded=sweep.KEEP_SUPERSEDED if keep_superseded is None
                else keep_superseded)
        finally:
            executor.stop()
        return statuses, executor
