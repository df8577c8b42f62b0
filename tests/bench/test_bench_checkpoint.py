"""ecgnb.bench.checkpoint: the table of a checkpoint's size, write time and share of training."""
from ecgnb.bench.checkpoint import bench_checkpoint, format_checkpoint


def test_checkpoint_cost_row_and_table():
    rows = bench_checkpoint(["ts2vec"], n_batches=2, batch_size=4, length=64, device="cpu")
    (row,) = rows
    assert row["size_mb"] > 1 and row["write_s"] > 0 and row["batch_s"] > 0
    assert 0 < row["share_default"] < row["share_per_epoch"] < 1
    assert format_checkpoint(rows, 4, 64).splitlines()[2].startswith("ts2vec")
