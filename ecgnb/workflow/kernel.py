"""The kernel of one run: how it ended and how much memory it held.

papermill starts each run's kernel through :class:`WatchedKernelManager`, which hands the kernel
process to a :class:`KernelWatch`: a thread reads the process's peak resident memory (``VmHWM``
in ``/proc/<pid>/status``, Linux) every second until it ends, and the process's exit status says
how it ended. A kernel that dies in the middle of a run (the out-of-memory killer sends SIGKILL)
is a :class:`KernelDied` named by :func:`death_line`: "kernel killed by SIGKILL (out of memory?)
after 812 s, peak RSS 5.1 GB". The scheduler runs such a run again (a lost kernel, like a lost
node, is no verdict on the notebook); a notebook that raises is not.

A kernel that dies or hangs before it answers its first request (:func:`is_start_failure`, e.g.
two kernels starting at once that picked the same port) ran nothing: the runner starts it again
at once (:data:`START_TRIES`), and the run goes on as if nothing happened.

jupyter_client is imported when a kernel is first watched, not with this module: the grid, its
runner and ``make gpu-check`` load without the notebook stack; the disk module (and with it
torch) when a death is put in words.
"""
from __future__ import annotations

import functools
import signal
import threading
import time
from pathlib import Path

SAMPLE_S = 1.0  # how often the peak memory of a running kernel is read
EARLY_S, EARLY_SAMPLE_S = 10.0, 0.05  # and more often in its first seconds
START_TRIES = 4  # kernel starts per execution before a start-up failure fails the run
START_BACKOFF_S = 0.5  # wait before the second start; doubled before each further one
# The errors of a kernel that never answered its first request (jupyter_client's wording).
START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond in")


class KernelDied(RuntimeError):
    """A kernel that died while it ran a notebook (killed by a signal or exited): the run
    did not fail by its own code, and runs again."""


class KernelWatch:
    """One kernel process: its peak resident memory (sampled) and its exit status."""

    def __init__(self, sample_s: float = SAMPLE_S):
        self.sample_s = sample_s
        self.process = None  # the kernel's subprocess.Popen, once started
        self.started_at: float | None = None
        self.peak_rss: int | None = None  # bytes
        self._done = threading.Event()

    def manager_class(self) -> type:
        """A :class:`WatchedKernelManager` class reporting to this watch (papermill and nbclient
        take the class and build the manager themselves)."""
        return type("WatchedKernelManager", (watched_manager(),), {"watch": self})

    def started(self, process) -> None:
        self.process, self.started_at = process, time.time()
        threading.Thread(target=self._sample, name="ecgnb-kernel-watch", daemon=True).start()

    def _sample(self) -> None:
        # VmHWM is the kernel's own peak, so sampling only has to catch the process alive: often
        # in its first seconds (a kernel killed while it starts), then every ``sample_s``
        status = Path(f"/proc/{self.process.pid}/status")
        while True:
            rss = _peak_rss(status)
            if rss is not None:
                self.peak_rss = max(rss, self.peak_rss or 0)
            early = time.time() - self.started_at < EARLY_S
            if rss is None or self._done.wait(min(self.sample_s, EARLY_SAMPLE_S) if early
                                              else self.sample_s):
                return

    def stop(self) -> None:
        self._done.set()

    def returncode(self) -> int | None:
        """The kernel's exit status (negative: killed by that signal); None while it runs."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=5)
        except Exception:  # noqa: BLE001 - still running, or reaped elsewhere
            return self.process.returncode

    def death(self) -> dict:
        """How the kernel ended, for ``_FAILED.json``."""
        code = self.returncode()
        return {"returncode": code, "signal": _signal_name(code), "peak_rss_bytes": self.peak_rss,
                "kernel_s": None if self.started_at is None else time.time() - self.started_at}


@functools.lru_cache(maxsize=None)
def watched_manager() -> type:
    """:class:`WatchedKernelManager`: nbclient's kernel manager, handing the kernel process to
    its ``watch`` once launched (built on first use, when jupyter_client is imported)."""
    from jupyter_client.manager import AsyncKernelManager

    class WatchedKernelManager(AsyncKernelManager):
        watch: KernelWatch | None = None

        async def _async_launch_kernel(self, kernel_cmd, **kw):  # jupyter_client's launch hook
            await super()._async_launch_kernel(kernel_cmd, **kw)
            if self.watch is not None:
                self.watch.started(self.provisioner.process)

    return WatchedKernelManager


def __getattr__(name: str):
    if name == "WatchedKernelManager":
        return watched_manager()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _peak_rss(status: Path) -> int | None:
    """``VmHWM`` (peak resident memory) of a live process in bytes; None once it is gone."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def death_line(death: dict, wall_s: float) -> str:
    """One line: how the kernel ended, after how long, its peak memory where known."""
    from ecgnb.workflow.disk import human_size

    code, name = death.get("returncode"), death.get("signal")
    if name:
        how = f"kernel killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    elif code is not None:
        how = f"kernel exited with status {code}"
    else:
        how = "kernel died"
    peak = death.get("peak_rss_bytes")
    memory = "" if not peak else f", peak RSS {human_size(peak)}"
    return f"{how} after {wall_s:.0f} s{memory}"


def is_dead_kernel(exc: BaseException) -> bool:
    """nbclient's ``DeadKernelError``: the kernel died while it executed a cell."""
    from nbclient.exceptions import DeadKernelError
    return isinstance(exc, DeadKernelError)


def is_start_failure(exc: BaseException) -> bool:
    """A kernel that died or did not answer before its first reply: nothing ran."""
    return isinstance(exc, RuntimeError) and str(exc).startswith(START_FAILURES)
