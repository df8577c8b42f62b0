"""``make gpu-check`` on a GPU: every check of :mod:`ecgnb.bench.gpu_check`, in order, then the
summary line; the exit status."""
from __future__ import annotations

import os

from ecgnb.bench import gpu_devices, gpu_rates, gpu_stages
from ecgnb.bench.gpu_check import SMOKE, Report
from ecgnb.bench.timing import machine_line, synthetic_batch
from ecgnb.models.softdtw import STRICT_VARIABLE


def check_backbone(name: str, x, report: Report) -> None:
    """Step, fits, kill-and-resume and host syncs of one backbone at smoke size."""
    for check in (gpu_stages.check_step, gpu_stages.check_fits, gpu_stages.check_resume,
                  gpu_rates.check_syncs):
        with report.guard(f"{name} {check.__name__.removeprefix('check_')}"):
            check(name, x, report)


def check_all() -> int:
    """Every check; 1 when one failed."""
    os.environ[STRICT_VARIABLE] = "1"  # this process and its children: no soft-DTW fallback
    print(machine_line(), flush=True)
    report = Report()
    x = synthetic_batch(gpu_stages.N_SMOKE, gpu_stages.T_SMOKE)[:, None, :]
    for name in SMOKE:
        check_backbone(name, x, report)
    gpu_stages.check_cells(report)
    gpu_stages.check_softdtw(report)
    gpu_devices.check_devices(report)
    gpu_rates.check_rates(report)
    print(report.summary(), flush=True)
    return 1 if report.failures else 0
