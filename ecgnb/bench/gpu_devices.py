"""The device checks of ``make gpu-check``: a fit and the fused soft-DTW on ``cuda:1``, two jobs
pinned to two GPUs the way ``ecgnb run --devices`` pins its runs (one child process per GPU,
``CUDA_VISIBLE_DEVICES`` its index, ``device: auto``), and notebook 02 executed by papermill on
the GPU. Each prints a SKIP line where the machine lacks what it needs (a second GPU; papermill,
ipykernel and neurokit2, which writes the embedded data)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecgnb.bench import gpu_stages
from ecgnb.bench.gpu_check import CURVE_RTOL, Report, relative_curve_difference
from ecgnb.bench.timing import synthetic_batch
from ecgnb.runs import PROJECT_ROOT

# One job: a TS-TCC fit at smoke size on the only GPU it sees; prints what it ran on.
JOB = """
import json, torch
from ecgnb.bench.gpu_stages import N_SMOKE, T_SMOKE, _encoder
from ecgnb.bench.timing import synthetic_batch
x = synthetic_batch(N_SMOKE, T_SMOKE)[:, None, :]
encoder = _encoder("tstcc", "auto").fit(x, n_epochs=2, batch_size=32)
props = torch.cuda.get_device_properties(0)
print(json.dumps({"gpu": str(getattr(props, "uuid", props.name)), "n_visible":
                  torch.cuda.device_count(), "loss": encoder.history_[-1]["loss"]}))
"""
NOTEBOOK_PARAMS = {"backbone": "series2vec", "use_small_data": True, "n_windows": 128,
                   "n_epochs": 1, "batch_size": 32, "device": "cuda"}


def check_second_gpu(report: Report) -> None:
    """A Series2Vec fit on ``cuda:1`` (its soft-DTW on that device) against one on ``cuda:0``."""
    what = "cuda:1: Series2Vec fit vs cuda:0, loss curve"
    if torch.cuda.device_count() < 2:
        report.skip(what, f"{torch.cuda.device_count()} GPU here")
        report.skip("soft-DTW on cuda:1", "one GPU here")
        return
    with report.guard(what):
        start = time.perf_counter()
        x = synthetic_batch(gpu_stages.N_SMOKE, gpu_stages.T_SMOKE)[:, None, :]
        fits = [gpu_stages._encoder("series2vec", d).fit(x, n_epochs=2, batch_size=32)
                for d in ("cuda:0", "cuda:1")]
        where = {p.device for p in fits[1].network_.parameters()}
        curve = relative_curve_difference(*[gpu_stages._losses(f) for f in fits[::-1]])
        report.check(what, curve, curve <= CURVE_RTOL and where == {torch.device("cuda:1")},
                     f"<= {CURVE_RTOL}; parameters on {sorted(map(str, where))}",
                     time.perf_counter() - start)
    gpu_stages.check_softdtw(report, device="cuda:1")


def check_two_jobs(report: Report) -> None:
    """Two jobs at once, each pinned to its own GPU as ``--devices cuda:0,cuda:1`` pins runs."""
    from ecgnb.workflow.sweep import device_index

    what = "two jobs on --devices cuda:0,cuda:1"
    if torch.cuda.device_count() < 2:
        report.skip(what, f"{torch.cuda.device_count()} GPU here")
        return
    with report.guard(what):
        start = time.perf_counter()
        jobs = [subprocess.Popen([sys.executable, "-c", JOB], cwd=PROJECT_ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env={**os.environ, "CUDA_VISIBLE_DEVICES": device_index(d)})
                for d in ("cuda:0", "cuda:1")]
        outputs = [job.communicate(timeout=300) for job in jobs]
        failed = [err.strip().splitlines()[-1] for job, (_, err) in zip(jobs, outputs)
                  if job.returncode != 0]
        if failed:
            raise RuntimeError("; ".join(failed))
        ran = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
        ok = (len({r["gpu"] for r in ran}) == 2 and all(r["n_visible"] == 1 for r in ran)
              and all(np.isfinite(r["loss"]) for r in ran))
        report.check(what, len({r["gpu"] for r in ran}), ok, "distinct GPUs, one visible to each,"
                     " finite losses", time.perf_counter() - start)


def check_notebook(report: Report) -> None:
    """Notebook 02 (Series2Vec, smoke data, one epoch) executed by papermill with ``device:
    cuda``: the run completes and its encoder's lineage says it trained on CUDA."""
    from ecgnb import models, runs

    what = "notebook 02 through papermill on the GPU"
    missing = [m for m in ("papermill", "ipykernel", "neurokit2")
               if importlib.util.find_spec(m) is None]
    if missing:
        report.skip(what, f"not installed here: {', '.join(missing)}")
        return
    with report.guard(what), tempfile.TemporaryDirectory() as tmp:
        from ecgnb.workflow.runner import execute

        start = time.perf_counter()
        previous = os.environ.get("ECGNB_OUTPUTS")
        os.environ["ECGNB_OUTPUTS"] = tmp
        try:
            folder = execute(PROJECT_ROOT / runs.NOTEBOOKS["pretraining"], NOTEBOOK_PARAMS,
                             run_name="pretraining/gpu-check")
        finally:
            os.environ.pop("ECGNB_OUTPUTS") if previous is None else os.environ.update(
                ECGNB_OUTPUTS=previous)
        encoder = models.load(Path(folder) / runs.ENCODER, device="cpu")
        device = encoder.lineage[-1]["training"].get("device")
        report.check(what, len(encoder.history_), device == "cuda",
                     f"epochs; trained on {device}", time.perf_counter() - start)


def check_devices(report: Report) -> None:
    check_second_gpu(report)
    check_two_jobs(report)
    check_notebook(report)
