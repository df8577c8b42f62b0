"""Pairwise soft-DTW: numba, torch and the fused GPU kernels (under numba's CUDA simulator and
Triton's interpreter) vs a plain dynamic-programming reference and tslearn; the GPU dispatch and
its strict mode, simulated on the CPU."""
import math
import warnings

import numpy as np
import pytest
import torch

from ecgnb.models import softdtw, softdtw_gpu
from ecgnb.models.softdtw import (STRICT_VARIABLE, decimate_series, pairwise_soft_dtw,
                                  soft_dtw_numba, soft_dtw_torch)
from ecgnb.models.softdtw_gpu import KernelUnavailable

GAMMAS = (0.01, 0.1, 1.0, 10.0)


def reference_soft_dtw(a: np.ndarray, b: np.ndarray, gamma: float) -> float:
    """Textbook recursion (Cuturi & Blondel 2017), squared-Euclidean cost, +inf borders."""
    n, m = len(a), len(b)
    r = [[math.inf] * (m + 1) for _ in range(n + 1)]
    r[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            previous = (r[i - 1][j - 1], r[i - 1][j], r[i][j - 1])
            low = min(previous)  # factored out so that exp never underflows to log(0)
            soft = low - gamma * math.log(sum(math.exp(-(v - low) / gamma) for v in previous))
            r[i][j] = (a[i - 1] - b[j - 1]) ** 2 + soft
    return r[n][m]


def reference_matrix(x: np.ndarray, gamma: float) -> np.ndarray:
    return np.array([[reference_soft_dtw(p, q, gamma) for q in x] for p in x])


def assert_close(actual, expected, rtol=1e-5):
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12 * scale)


@pytest.fixture(scope="module")
def tiny() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(4, 7)) * 2.0


@pytest.mark.parametrize("gamma", GAMMAS)
def test_numba_matches_reference(tiny, gamma):
    assert_close(soft_dtw_numba(tiny, gamma), reference_matrix(tiny, gamma))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_torch_matches_reference(tiny, gamma):
    out = soft_dtw_torch(torch.from_numpy(tiny), gamma)
    assert out.dtype == torch.float64
    assert_close(out.numpy(), reference_matrix(tiny, gamma))


def test_single_sample_series():
    x = np.random.default_rng(1).normal(size=(3, 1))  # T = 1: a single squared difference
    expected = (x[:, None, 0] - x[None, :, 0]) ** 2
    assert_close(soft_dtw_numba(x, 0.1), expected)
    assert_close(soft_dtw_torch(torch.from_numpy(x), 0.1).numpy(), expected)


def test_symmetric_with_negative_diagonal():
    x = np.random.default_rng(2).normal(size=(6, 25))
    values = soft_dtw_numba(x, 0.1)
    np.testing.assert_array_equal(values, values.T)
    assert (np.diag(values) < 0).all()  # not the divergence: sdtw(x, x) < 0
    assert (values[~np.eye(6, dtype=bool)] > 0).all()


@pytest.mark.slow
def test_matches_tslearn():
    from tslearn.metrics import cdist_soft_dtw
    x = np.random.default_rng(3).normal(size=(5, 60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = cdist_soft_dtw(x[..., None], gamma=0.1)
    assert_close(soft_dtw_numba(x, 0.1), expected, rtol=1e-10)


def test_torch_path_equals_numba_path():
    x = np.random.default_rng(4).normal(size=(6, 50)).cumsum(axis=1)
    for gamma in (0.1, 1.0):
        numba_values = soft_dtw_numba(x, gamma)
        torch_values = soft_dtw_torch(torch.from_numpy(x), gamma).numpy()
        assert_close(torch_values, numba_values, rtol=1e-10)


def test_decimate_block_averages_and_shortens():
    x = np.arange(2 * 11, dtype=float).reshape(2, 11)
    short = decimate_series(x, 3)
    assert short.shape == (2, 11 // 3)  # the trailing 11 % 3 samples are dropped
    np.testing.assert_allclose(short[0], [1.0, 4.0, 7.0])
    np.testing.assert_allclose(decimate_series(torch.from_numpy(x), 3).numpy(), short)
    assert decimate_series(x, 1) is x
    with pytest.raises(ValueError):
        decimate_series(x, 12)


def test_decimate_option_computes_on_the_decimated_copy():
    x = np.random.default_rng(5).normal(size=(4, 40))
    expected = soft_dtw_numba(decimate_series(x, 4), 0.1)
    np.testing.assert_allclose(pairwise_soft_dtw(x, 0.1, decimate=4), expected)
    assert not np.allclose(pairwise_soft_dtw(x, 0.1), expected)


def test_front_door_types_layouts_and_errors():
    x = np.random.default_rng(6).normal(size=(3, 1, 12)).astype(np.float32)
    as_numpy = pairwise_soft_dtw(x)
    assert isinstance(as_numpy, np.ndarray) and as_numpy.shape == (3, 3)
    as_tensor = pairwise_soft_dtw(torch.from_numpy(x).requires_grad_())
    assert isinstance(as_tensor, torch.Tensor) and not as_tensor.requires_grad
    np.testing.assert_allclose(as_tensor.numpy(), as_numpy)
    np.testing.assert_allclose(pairwise_soft_dtw(x, method="torch"), as_numpy, rtol=1e-10)
    for bad in (dict(gamma=0.0), dict(method="cuda"), dict(decimate=0)):
        with pytest.raises(ValueError):
            pairwise_soft_dtw(x, **bad)
    with pytest.raises(ValueError):
        pairwise_soft_dtw(np.zeros((2, 3, 4)))


@pytest.mark.slow
def test_softdtw_benchmark_smoke():
    from ecgnb.bench.softdtw import bench_softdtw, format_softdtw, max_relative_difference
    rows = bench_softdtw(3, 12, 0.1, 1, ["numba", "torch", "tslearn"], torch_cpu_series=2)
    assert [len(r["values"]) for r in rows] == [3, 2, 3]
    assert max_relative_difference(rows[0]["values"], rows[-1]["values"]) < 1e-10
    assert "tslearn" in format_softdtw(rows, 12, 0.1)


SIMULATED_KERNEL = """
import sys
import numpy as np
from numba import config
from ecgnb.models.softdtw_gpu import soft_dtw_cuda_arrays
assert config.ENABLE_CUDASIM
x = np.load(sys.argv[1])
rows, cols = np.triu_indices(len(x))
for gamma, n_threads in [(float(g), int(n)) for g, n in zip(sys.argv[3::2], sys.argv[4::2])]:
    out = np.full((len(x), len(x)), np.nan)
    soft_dtw_cuda_arrays(x, rows, cols, gamma, out, n_threads=n_threads)
    np.save(f"{sys.argv[2]}-{gamma}-{n_threads}.npy", out)
"""


@pytest.mark.slow
def test_cuda_kernel_matches_reference_under_the_simulator(tmp_path):
    """The fused kernel, run by numba's CUDA simulator (every thread a Python thread, the
    barriers real): 4 threads striding over diagonals of up to 11 cells, and one thread per cell."""
    import os
    import subprocess
    import sys

    x = np.random.default_rng(3).normal(size=(4, 11)) * 2.0
    np.save(tmp_path / "x.npy", x)
    runs = [(0.1, 4), (1.0, 32)]
    args = [str(v) for run in runs for v in run]
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    subprocess.run([sys.executable, "-c", SIMULATED_KERNEL, str(tmp_path / "x.npy"),
                    str(tmp_path / "out"), *args], env=env, check=True, timeout=600)
    for gamma, n_threads in runs:
        out = np.load(tmp_path / f"out-{gamma}-{n_threads}.npy")
        np.testing.assert_allclose(out, reference_matrix(x, gamma), rtol=1e-6)
        np.testing.assert_allclose(out, soft_dtw_numba(x, gamma), rtol=1e-12)


def test_cuda_method_without_a_gpu_is_an_error_and_auto_stays_on_the_cpu():
    x = np.random.default_rng(4).normal(size=(3, 6))
    with pytest.raises(ValueError, match="CUDA tensor"):
        pairwise_soft_dtw(torch.from_numpy(x), method="cuda")
    assert_close(pairwise_soft_dtw(torch.from_numpy(x)).numpy(), reference_matrix(x, 0.1))


TRITON_INTERPRETED = """
import sys
import numpy as np
import torch
from ecgnb.models.softdtw_gpu import soft_dtw_triton
x = np.load(sys.argv[1])
for gamma in (0.1, 1.0):
    np.save(f"{sys.argv[2]}-{gamma}.npy", soft_dtw_triton(torch.from_numpy(x), gamma).numpy())
"""


def test_triton_kernel_matches_reference_under_the_interpreter(tmp_path):
    """The Triton kernel, run by Triton's interpreter on the CPU (each program one block of
    numpy lanes): its arithmetic, not the GPU's barrier. Skipped where triton is absent."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    x = np.random.default_rng(3).normal(size=(4, 11)) * 2.0
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    subprocess.run([sys.executable, "-c", TRITON_INTERPRETED, str(tmp_path / "x.npy"),
                    str(tmp_path / "out")], env=env, check=True, timeout=600)
    for gamma in (0.1, 1.0):
        out = np.load(tmp_path / f"out-{gamma}.npy")
        np.testing.assert_allclose(out, reference_matrix(x, gamma), rtol=1e-6)
        np.testing.assert_allclose(out, soft_dtw_numba(x, gamma), rtol=1e-12)


@pytest.fixture
def no_fused_kernel(monkeypatch):
    """CPU tensors stand in for CUDA ones, and no fused kernel runs (as without NVVM)."""
    def unavailable(x, gamma, kernels=softdtw_gpu.KERNELS):
        raise KernelUnavailable("no fused soft-DTW kernel can run here: numba-cuda: "
                                "AttributeError: module 'numpy' has no attribute 'row_stack'")
    monkeypatch.setattr(softdtw_gpu, "fused_soft_dtw", unavailable)
    monkeypatch.setattr(softdtw, "_on_gpu", lambda x: isinstance(x, torch.Tensor))
    monkeypatch.setattr(softdtw, "_WARNED", [])


def test_without_a_fused_kernel_auto_warns_once_and_takes_the_torch_sweep(no_fused_kernel,
                                                                        monkeypatch):
    monkeypatch.delenv(STRICT_VARIABLE, raising=False)
    x = np.random.default_rng(7).normal(size=(3, 6))
    with pytest.warns(RuntimeWarning, match="row_stack.*torch anti-diagonal sweep"):
        values = pairwise_soft_dtw(torch.from_numpy(x))
    assert_close(values.numpy(), reference_matrix(x, 0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pairwise_soft_dtw(torch.from_numpy(x))  # warned once per process
    with pytest.raises(KernelUnavailable):
        pairwise_soft_dtw(torch.from_numpy(x), method="cuda")  # a named kernel never falls back


@pytest.mark.parametrize("value", ["1", "yes"])
def test_strict_mode_raises_with_the_cause(no_fused_kernel, monkeypatch, value):
    monkeypatch.setenv(STRICT_VARIABLE, value)
    with pytest.raises(KernelUnavailable, match="row_stack"):
        pairwise_soft_dtw(torch.zeros(3, 6, dtype=torch.float64))
    monkeypatch.setenv(STRICT_VARIABLE, "0")
    with pytest.warns(RuntimeWarning):
        pairwise_soft_dtw(torch.zeros(3, 6, dtype=torch.float64))


def test_fused_dispatch_takes_the_first_kernel_that_runs_and_names_every_cause(monkeypatch):
    calls = []
    first, second = softdtw_gpu.KERNELS

    def broken(x, gamma):
        calls.append(first)
        raise ImportError("no NVVM")

    def working(x, gamma):
        calls.append(second)
        return soft_dtw_torch(x, gamma)
    monkeypatch.setattr(softdtw_gpu, "_UNAVAILABLE", {})
    monkeypatch.setattr(softdtw_gpu, "RUNNERS", {first: broken, second: working})
    x = torch.from_numpy(np.random.default_rng(8).normal(size=(3, 5)))
    assert_close(softdtw_gpu.fused_soft_dtw(x, 0.1).numpy(), reference_matrix(x.numpy(), 0.1))
    softdtw_gpu.fused_soft_dtw(x, 0.1)
    assert calls == [first, second, second]  # a failed kernel is not tried again
    assert softdtw_gpu.unavailable() == {first: "ImportError: no NVVM"}
    monkeypatch.setitem(softdtw_gpu.RUNNERS, second, broken)
    monkeypatch.setattr(softdtw_gpu, "_UNAVAILABLE", {})
    with pytest.raises(KernelUnavailable, match=f"{first}: ImportError.*{second}: ImportError"):
        softdtw_gpu.fused_soft_dtw(x, 0.1)


def test_numpy_alias_for_numba_only_where_missing(monkeypatch):
    monkeypatch.delattr(np, "row_stack", raising=False)
    assert softdtw_gpu.numpy_alias_for_numba() is True
    assert np.row_stack is np.vstack
    assert softdtw_gpu.numpy_alias_for_numba() is False


@pytest.mark.gpu
@pytest.mark.parametrize("kernel", softdtw_gpu.KERNELS)
def test_fused_kernels_on_a_gpu_match_numba(kernel):
    x = np.random.default_rng(9).normal(size=(8, 100))
    try:
        values = pairwise_soft_dtw(torch.from_numpy(x).cuda(), method=kernel)
    except KernelUnavailable as exc:
        pytest.skip(str(exc))
    assert_close(values.cpu().numpy(), soft_dtw_numba(x, 0.1), rtol=1e-9)
