"""The same run twice gives the same files, byte for byte (wall-clock fields aside).

CPU results depend on torch's thread count (sums split by thread), not on anything else of the
process: the sweep gives every kernel the same count whatever ``--jobs`` is
(tests/workflow/test_sweep.py) and each run records it in ``config.json``.
"""
import json

import pytest
import torch

from ecgnb import finetuning, pretraining, runs
from ecgnb.config import seed_everything
from ecgnb.data import DataConfig, load_corpus, target_task

WALL_CLOCK = ("wall_s", "started", "finished")
# metrics.json names its sibling files with checksums: cell.json and history.csv hold times
SIBLINGS = "files"


def one_run(out):
    """A tiny pretraining and one fine-tuned cell, the way notebooks 02 and 04 chain them."""
    data = DataConfig(use_small_data=True)
    seed_everything(0)
    fragments, splits = target_task(data)
    corpus = load_corpus("ECG", data, n_windows=32, seed=0)[0]
    encoder = pretraining.pretrain(pretraining.PretrainConfig(
        backbone="ts2vec", model_size="small", n_epochs=1, batch_size=16, device="cpu",
        use_small_data=True), corpus, verbose=False)
    cfg = finetuning.FinetuneConfig(heads=("mlp",), modes=("ft",), n_epochs=2, batch_size=16,
                                    patience=2, device="cpu", use_small_data=True)
    finetuning.run_cells(cfg, encoder, {"backbone": "ts2vec"}, fragments, splits, out)
    return runs.cell_folder(out, next(finetuning.cells(cfg)))


def without_wall_clock(path) -> dict:
    """The JSON record without wall-clock fields (at any depth) and without the checksums of
    the sibling files, which hold times themselves."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in WALL_CLOCK + (SIBLINGS,)}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return strip(json.loads(path.read_text()))


@pytest.mark.slow
def test_the_same_run_twice_writes_identical_metrics_and_predictions(tmp_path):
    torch.set_num_threads(1)
    first, second = one_run(tmp_path / "a"), one_run(tmp_path / "b")
    assert (first / "predictions.csv").read_bytes() == (second / "predictions.csv").read_bytes()
    assert without_wall_clock(first / "metrics.json") == without_wall_clock(second / "metrics.json")
    assert json.loads((first / "metrics.json").read_text())["cell"]["wall_s"] > 0  # filtered out


def test_a_run_records_its_thread_count(tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    out = runs.start_stage(finetuning.FinetuneConfig(), "finetuning")
    record = json.loads((out / runs.CONFIG).read_text())
    assert record["torch_threads"] == torch.get_num_threads()
