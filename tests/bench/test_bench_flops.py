"""ecgnb.bench.flops and ecgnb.bench.memory at tiny sizes: the numbers they print are consistent."""
import pytest
import torch

from ecgnb.bench.flops import format_flops, matmul_peak, share_of_peak, step_rate
from ecgnb.bench.memory import format_probe_memory, probe_cache_peak


def test_step_flops_and_share_of_peak():
    row = step_rate("ts2vec", 1, 8, 64, device="cpu")
    assert row["flops_per_step"] > 0 and row["seconds_per_step"] > 0
    peaks = {"fp32": matmul_peak(torch.float32, 128, 1, "cpu"), "bf16": None}
    share = share_of_peak(row, peaks)
    assert share == row["flops_per_step"] / row["seconds_per_step"] / peaks["fp32"]
    assert "ts2vec" in format_flops(peaks, [row], 8, 64)
    parts = row["flops_by_kind"]
    assert sum(parts.values()) == pytest.approx(row["flops_per_step"])
    assert parts["products"] > 0 and parts["convolutions"] > 0  # its loss, its encoder


def test_every_counted_operation_has_a_kind():
    from torch.utils.flop_counter import flop_registry

    from ecgnb.bench.flops import kind_of
    kinds = {str(op): kind_of(str(op)) for op in flop_registry}
    assert kinds["aten.mm"] == kinds["aten.bmm"] == "products"
    assert kinds["aten.convolution_backward"] == "convolutions"
    assert kinds["aten._flash_attention_forward"] == "attention"


def test_probe_memory_caches_the_fcn_features_in_the_requested_type():
    row = probe_cache_peak("ts2vec", 40, 64, overrides={"feature_dtype": "float16"}, n_epochs=1)
    channels, steps = row["shape"]
    assert row["cached_mb"] * 2**20 == 40 * channels * steps * 2
    assert row["peak_mb"] >= row["cache_peak_mb"] > 0
    assert "feature_dtype=float16" in format_probe_memory([row], 64)
