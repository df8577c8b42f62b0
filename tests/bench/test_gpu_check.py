"""ecgnb.bench.gpu_check: the no-CUDA line, and the CPU-side pieces (comparisons, projection)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from ecgnb.bench.gpu_check import (PAPER_GRID, PaperGrid, linear_cka, no_cuda_line,
                                   project_gpu_hours, relative_curve_difference)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path")
def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    done = subprocess.run([sys.executable, "-m", "ecgnb.bench", "gpu-check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0
    assert done.stdout.strip() == no_cuda_line()
    assert done.stdout.count("\n") == 1 and "no CUDA device" in done.stdout


def test_curve_difference_and_cka():
    assert relative_curve_difference([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        relative_curve_difference([1.0], [1.0, 2.0])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, 3.0 * x @ rotation + 1.0) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(50, 8))) < 0.5


def test_projection_arithmetic():
    grid = PaperGrid(pretrain_epochs=10, corpora=(("a", 100), ("b", 50)), continuation_epochs=2,
                     continuation_windows=10, n_cells=3, n_seeds=2, cell_epochs=5)
    hours = project_gpu_hours({"x": 10.0, "y": 20.0}, {"x": 1.0, "y": 3.0}, grid)
    pretrain = 10 * 150 / 10 + 10 * 150 / 20  # epochs x windows / rate, both backbones
    continuation = 2 * 2 * 10 / 10 + 2 * 2 * 10 / 20  # 2 corpora' encoders each
    cells = 3 * 2 * 5 * 2.0  # mean epoch 2 s
    assert hours["pretraining"] * 3600 == pytest.approx(pretrain)
    assert hours["continuations"] * 3600 == pytest.approx(continuation)
    assert hours["cells"] * 3600 == pytest.approx(cells)
    assert hours["total"] == pytest.approx(hours["pretraining"] + hours["continuations"]
                                           + hours["cells"])
    assert PAPER_GRID.corpora[0] == ("ECG", 105_000) and PAPER_GRID.n_cells == 108


def test_the_checks_pass_with_the_cpu_standing_in_for_the_gpu(monkeypatch):
    """The check functions themselves, CPU against CPU: every comparison holds exactly."""
    import ecgnb.bench.gpu_stages as stages
    from ecgnb.bench.timing import synthetic_batch

    monkeypatch.setattr(stages, "GPU", "cpu")
    x = synthetic_batch(stages.N_SMOKE, stages.T_SMOKE)[:, None, :]
    failures = []
    for name in stages.SMOKE:
        stages.check_step(name, x, failures)
    stages.check_fits("tstcc", x, failures)
    assert failures == []
