"""ecgnb.bench.gpu_check: the no-CUDA line, the report, the comparisons, and every check function
run with the CPU standing in for the GPU (the comparisons then hold exactly)."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from ecgnb.bench.gpu_check import (Report, linear_cka, no_cuda_line, relative_curve_difference,
                                   weights_difference)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path")
def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    done = subprocess.run([sys.executable, "-m", "ecgnb.bench", "gpu-check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0
    assert done.stdout.strip() == no_cuda_line()
    assert done.stdout.count("\n") == 1 and "no CUDA device" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available() or shutil.which("make") is None,
                    reason="the no-CUDA path, through make")
def test_make_gpu_check_with_a_given_interpreter_builds_nothing(tmp_path):
    """``make gpu-check GPU_PYTHON=...``: the interpreter as it is, no .venv, no install."""
    from ecgnb.runs import PROJECT_ROOT

    done = subprocess.run(["make", "-s", "-C", str(PROJECT_ROOT), "gpu-check",
                           f"GPU_PYTHON={sys.executable}", "VENV=" + str(tmp_path / "venv")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == no_cuda_line()
    assert not (tmp_path / "venv").exists()


# What a GPU machine's python3 may lack: everything of the notebook stack and the plots (the
# packages gpu-check may use are torch, numpy, scipy, pandas, scikit-learn, numba, pyyaml, tqdm,
# psutil, wfdb, and what they import).
NOT_ON_A_BARE_GPU_MACHINE = (
    "papermill", "nbformat", "nbclient", "jupyter_client", "ipykernel", "IPython", "zmq",
    "matplotlib", "plotly", "ipywidgets", "umap", "pynndescent", "neurokit2", "ray", "tslearn",
    "statsmodels", "requests", "aiohttp", "soundfile", "PIL", "nbval", "selenium")
IMPORTS_OF_GPU_CHECK = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in sys.argv[1].split(","):
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Missing())
import ecgnb.bench.__main__, ecgnb.bench.gpu_suite
import ecgnb.bench.rehearse, ecgnb.pretraining, ecgnb.finetuning, ecgnb.workflow.sweep
import ecgnb.models.ts2vec, ecgnb.models.tstcc, ecgnb.models.series2vec, ecgnb.models.hinception
import ecgnb.models.softdtw_gpu
from ecgnb.bench.projection import PAPER_GRID
from ecgnb.workflow.grid import load_grid
print(len(load_grid(PAPER_GRID, validate=False).runs))
"""


@pytest.mark.slow
def test_gpu_check_imports_nothing_beyond_torch_and_the_scientific_stack():
    done = subprocess.run([sys.executable, "-c", IMPORTS_OF_GPU_CHECK,
                           ",".join(NOT_ON_A_BARE_GPU_MACHINE)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "58"


def test_curve_difference_cka_and_weights_difference():
    assert relative_curve_difference([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        relative_curve_difference([1.0], [1.0, 2.0])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, 3.0 * x @ rotation + 1.0) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(50, 8))) < 0.5
    a = {"net": {"w": torch.tensor([1.0, -4.0]), "steps": torch.tensor(3)}}
    b = {"net": {"w": torch.tensor([1.0, -4.2]), "steps": torch.tensor(5)}}
    assert weights_difference(a, b) == pytest.approx(0.2 / 4.2)  # integers ignored
    assert weights_difference(a, a) == 0.0


def test_a_check_that_raises_is_its_own_fail_line_and_the_run_goes_on(capsys):
    report = Report()
    report.check("a bound held", 0.5, True, "<= 1")
    with report.guard("a broken check"):
        raise RuntimeError("no kernel image")
    report.skip("a second GPU", "one GPU here")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "PASS a bound held: 0.5 (<= 1)"
    assert out[1].startswith("FAIL a broken check: RuntimeError: no kernel image (")
    assert out[2] == "SKIP a second GPU: one GPU here"
    assert report.failures == ["a broken check"]
    assert "FAILED: a broken check (1 PASS, 1 FAIL, 1 SKIP;" in report.summary()


@pytest.fixture
def cpu_stands_in(monkeypatch):
    import ecgnb.bench.gpu_stages as stages

    monkeypatch.setattr(stages, "GPU", "cpu")
    return stages


def _passed(capsys, report) -> list[str]:
    lines = capsys.readouterr().out.splitlines()
    assert report.failures == [], lines
    return [line for line in lines if line[:4] in ("PASS", "FAIL", "SKIP")]


@pytest.mark.slow
def test_the_checks_pass_with_the_cpu_standing_in_for_the_gpu(cpu_stands_in, capsys):
    """Step, fits (bf16, fp16 AMP, continuation) and kill-and-resume, CPU against CPU."""
    from ecgnb.bench.timing import synthetic_batch

    stages, report = cpu_stands_in, Report()
    x = synthetic_batch(stages.N_SMOKE, stages.T_SMOKE)[:, None, :]
    for name in stages.SMOKE:
        stages.check_step(name, x, report)
    stages.check_fits("tstcc", x, report)
    stages.check_resume("ts2vec", x, report)
    lines = _passed(capsys, report)
    assert len(lines) == 3 * 2 + 6 + 1
    assert any("fp16 AMP loss curve" in line for line in lines)
    assert "resumed in epoch 2; <= max(10 x 0 (two uninterrupted fits), 0.001)" in lines[-1]  # bit for bit on the CPU


def test_the_softdtw_check_times_each_kernel_and_skips_one_that_cannot_run(
        cpu_stands_in, capsys, monkeypatch):
    from ecgnb.models import softdtw, softdtw_gpu

    def no_numba_cuda(x, gamma):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")
    monkeypatch.setattr(softdtw, "_on_gpu", lambda x: isinstance(x, torch.Tensor))
    monkeypatch.setattr(softdtw_gpu, "_UNAVAILABLE", {})
    monkeypatch.setattr(softdtw_gpu, "RUNNERS", {"triton": softdtw.soft_dtw_torch,
                                                 "numba-cuda": no_numba_cuda})
    report = Report()
    cpu_stands_in.check_softdtw(report, device="cpu", n_series=4, length=16)
    lines = _passed(capsys, report)
    assert [line[:4] for line in lines] == ["PASS", "SKIP", "PASS", "PASS"]
    assert "row_stack" in lines[1] and "ms per batch" in lines[0]


@pytest.mark.slow
def test_rates_and_both_projections_with_the_cpu_standing_in(cpu_stands_in, capsys):
    """Tiny networks and windows: every rate line, and each grid's projection table."""
    from ecgnb.bench.gpu_rates import check_rates

    report = Report()
    check_rates(report, {"model_size": "small", "batch_size": 8}, n_batches=2, length=128,
                n_groups=8)
    out = capsys.readouterr().out
    assert report.failures == [], out
    assert out.count("steps/s of 8 x 128") == 4 * 3  # study, TF32, ecgnb, bf16 per backbone
    assert out.count("whole grid:") == 2 and "(study recipe)" in out and "(ecgnb recipe)" in out
    assert out.count("cell epoch") == 3 * 4 + 3
    assert "host" in out  # where a step's time goes


def test_the_suite_runs_every_check_in_strict_mode_and_says_so_at_the_end(monkeypatch, capsys):
    """gpu_suite.check_all with each check replaced by a stand-in that records its call."""
    import os

    import ecgnb.bench.gpu_suite as suite
    from ecgnb.models.softdtw import STRICT_VARIABLE

    monkeypatch.setenv(STRICT_VARIABLE, "0")  # restored (unset) after the test
    calls = []

    def stand_in(name):
        def check(*args):
            calls.append((name, os.environ.get(STRICT_VARIABLE)))
            if name == "check_rates":
                args[0].line("FAIL", "a rate", "simulated")
        return check
    for module, names in ((suite.gpu_stages, ("check_step", "check_fits", "check_resume",
                                              "check_cells", "check_softdtw")),
                          (suite.gpu_rates, ("check_syncs", "check_rates")),
                          (suite.gpu_devices, ("check_devices",))):
        for name in names:
            monkeypatch.setattr(module, name, stand_in(name))
    assert suite.check_all() == 1
    assert len(calls) == 3 * 4 + 4 and {strict for _, strict in calls} == {"1"}
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("machine: ") and out[-1].startswith("gpu-check: FAILED: a rate")
