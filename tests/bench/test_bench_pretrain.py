"""ecgnb.bench.pretrain: the "before" columns come from the other checkout, not from this one."""
from pathlib import Path

import ecgnb
from ecgnb.bench.pretrain import bench_pretrain_before


def test_before_runs_the_other_checkout(tmp_path, monkeypatch):
    fake = tmp_path / "older" / "ecgnb" / "bench"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(  # prints one row as `ecgnb.bench pretrain` does
        "print('ts2vec      cpu            3.5     1.00      1234        100')\n")
    # from this checkout's folder, `python -m` would find this ecgnb first unless the child runs
    # from the other checkout
    monkeypatch.chdir(Path(ecgnb.__file__).parent.parent)
    rows = bench_pretrain_before(str(tmp_path / "older"), ["ts2vec"], 1, 2, 8)
    assert rows == {"ts2vec": {"samples_per_s": 3.5, "peak_mb": 1234.0}}
