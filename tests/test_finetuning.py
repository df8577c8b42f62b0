"""Notebook 04's pipeline on a multi-label, multi-lead task: run_cells writes cells that
summarize reads by macro-AUROC, load_classifier rebuilds (LeadWise encoders, baselines on C
channels) and the report collects as macro-AUROC rows with their intervals."""
import pytest
import torch

import ecgnb.models
from ecgnb import finetuning, runs
from ecgnb.report import collect, tables

T, N_LEADS, CLASSES = 32, 3, ("NORM", "MI", "STTC")
QUICK = dict(recipe="smoke", n_epochs=2, warmup_epochs=0, batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def task(make_multilabel_task):
    return make_multilabel_task(16, 2, T)


def tiny_encoder():
    return ecgnb.models.build("ts2vec", device="cpu", seed=0, verbose=False, depth=1,
                              hidden_dims=4, output_dims=8).build(T)


def run_stage(task, out, encoder, **knobs):
    windows, splits = task
    cfg = finetuning.FinetuneConfig(seeds=(0, 1), **QUICK, **knobs)
    source = ({"backbone": "ts2vec", "scenario": "ECG", "encoder_run": "g/pretraining/x",
               "recipe": "smoke", "pretrain_seed": 0} if encoder is not None else
              finetuning.load_encoder(cfg)[1])
    return finetuning.run_cells(cfg, encoder, source, windows, splits, out)


@pytest.mark.slow
def test_multilabel_cells_summarize_reload_and_collect_by_macro_auroc(task, tmp_path,
                                                                      complete_run):
    windows, _ = task
    encoder = tiny_encoder()
    root = tmp_path / "outputs"
    ssl_run, base_run = root / "g" / "finetuning" / "ts2vec-ecg", root / "g" / "finetuning" / "sup"
    summary = run_stage(task, ssl_run, encoder, heads=("linear",), modes=("lp", "ft"))
    assert {"macro_auroc", "val_macro_auroc", "macro_auroc_ci"} <= set(summary.columns)
    assert "macro_f1" not in summary and summary["macro_auroc"].between(0, 1).all()
    chosen = finetuning.choose_mode_on_validation(summary)
    assert chosen["chosen_on_val"].sum() == 1 and "val_macro_auroc" in chosen
    baselines = run_stage(task, base_run, None, encoder_run="none", baselines=("fcn",))
    assert len(baselines) == 2

    x = torch.from_numpy(windows.x[:4])
    for run, cell, needs in ((ssl_run, "linear-ft-f1-s0", encoder),
                             (ssl_run, "linear-lp-f1-s1", encoder), (base_run, "fcn-supervised-f1-s0", None)):
        record = runs.read_json(run / "cells" / cell / runs.CELL_RECORD)
        assert record["n_leads"] == N_LEADS and record["multilabel"] is True
        model = finetuning.load_classifier(run / "cells" / cell, len(CLASSES), T, needs, "cpu")
        with torch.no_grad():
            assert model(x).shape == (4, len(CLASSES))

    for run in (ssl_run, base_run):
        complete_run(run, "abc")
    rows = collect.collect_results(root / "g", root=root)
    assert len(rows) == 6 and (rows["n_classes"] == len(CLASSES)).all()
    assert rows["macro_auroc"].notna().all() and rows["val_macro_auroc"].notna().all()
    assert (rows["macro_auroc_ci_low"] <= rows["macro_auroc_ci_high"]).all()
    low, high = rows["macro_auroc_seed_mean_ci_low"], rows["macro_auroc_seed_mean_ci_high"]
    assert (low <= high).all() and low.between(0, 1).all()
    assert tables.headline_metric(rows) == "macro_auroc"
    assert tables.cell_table(rows).notna().all().all()


def test_a_length_bound_encoder_names_the_window_it_needs(task, tmp_path):
    windows, splits = task
    encoder = ecgnb.models.build("tstcc", device="cpu", seed=0, verbose=False,
                                 timesteps=2).build(2 * T)
    cfg = finetuning.FinetuneConfig(heads=("linear",), modes=("lp",), **QUICK)
    source = {"backbone": "tstcc", "scenario": "ECG", "encoder_run": "x", "recipe": "smoke"}
    with pytest.raises(ValueError, match="window_s to 0.64"):
        finetuning.run_cells(cfg, encoder, source, windows, splits, tmp_path)
