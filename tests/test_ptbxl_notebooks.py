"""The PTB-XL benchmark through notebooks 01, 04 and 05: a PTB-XL-layout folder of 12-lead 100-Hz
records, some with two superclasses, read with ``channels: all``, ``multilabel: true`` and
``window_s: 10.0``; one tiny TS2Vec pretrained here, one linear-probe cell, its maps."""
import ast
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ecgnb import pretraining, runs
from ecgnb.data import load_corpus
from ecgnb.workflow import runner

NOTEBOOKS = runs.PROJECT_ROOT / "notebooks"
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
TINY_TS2VEC = {"hidden_dims": 8, "output_dims": 16, "depth": 1}


def fold_label_sets(root, fold: int) -> list[set]:
    """The superclasses of every record of ``fold`` that has one, read from the CSV files."""
    database = pd.read_csv(root / "ptbxl_database.csv")
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    diagnostic = statements[statements["diagnostic"] == 1]["diagnostic_class"]
    sets = [{diagnostic[code] for code in ast.literal_eval(codes) if code in diagnostic}
            for codes in database.loc[database["strat_fold"] == fold, "scp_codes"]]
    return [s for s in sets if s]


@pytest.mark.slow
def test_ptbxl_12_lead_multilabel_runs_through_notebooks_01_04_05(ptbxl_sample, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "outputs"))
    card = tmp_path / "ptbxl-12lead.yaml"
    card.write_text(yaml.safe_dump({
        "kind": "target", "format": "ptbxl", "root": str(ptbxl_sample),
        "task": "superdiagnostic", "multilabel": True, "channels": "all", "sampling": 100,
        "window_s": 10.0}))
    data = {"target": str(card), "fs": 100.0, "use_small_data": True}

    cfg = pretraining.PretrainConfig(backbone="ts2vec", n_epochs=1, batch_size=16, n_windows=32,
                                     recipe="smoke", model_overrides=TINY_TS2VEC, device="cpu",
                                     **data)
    encoder = pretraining.pretrain(cfg, load_corpus("ECG", cfg, n_windows=32)[0], verbose=False)
    folder = runs.start_stage(cfg, "pretraining", str(runs.run_folder("b/pretraining/ts2vec")),
                              by_runner=False)
    encoder.save(folder / runs.ENCODER)
    runs.finish_stage(folder, {})

    explored = runner.execute(NOTEBOOKS / "01_exploration.ipynb",
                              {**data, "n_examples": 1, "channels": ["ECG"]}, "b/exploration/ptbxl")
    assert "Examples per class (lead II)" in (explored / "figures.html").read_text()

    finetuned = runner.execute(NOTEBOOKS / "04_finetuning.ipynb", {
        **data, "encoder_run": "b/pretraining/ts2vec", "heads": ["mlp"], "modes": ["lp"],
        "seeds": [0], "n_epochs": 2, "device": "cpu"}, "b/finetuning/ptbxl")
    cell = finetuned / "cells" / "mlp-lp-f1-s0"
    metrics = json.loads((cell / "metrics.json").read_text())
    test_sets = fold_label_sets(ptbxl_sample, fold=10)
    n_multilabel = sum(len(s) > 1 for s in test_sets)
    assert n_multilabel > 0 and metrics["n_test"] == len(test_sets)
    assert 0.0 <= metrics["macro_auroc"] <= 1.0
    assert all(0.0 <= metrics[f"auroc_{c}"] <= 1.0 for c in SUPERCLASSES)
    predictions = pd.read_csv(cell / "predictions.csv")
    truth = predictions[[f"true_{c}" for c in SUPERCLASSES]].to_numpy()
    assert (truth.sum(axis=1) > 1).sum() == n_multilabel
    assert sorted(map(sorted, test_sets)) == sorted(
        sorted(np.asarray(SUPERCLASSES)[row == 1]) for row in truth)

    embedded = runner.execute(NOTEBOOKS / "05_embeddings.ipynb", {
        **data, "runs": ["b/finetuning/ptbxl"], "cells": ["mlp-lp-f1-s0"],
        "layers": ["encoder", "finetuned", "head"], "corpus": "All+target",
        "n_corpus_windows": 60, "device": "cpu"}, "b/embeddings/ptbxl")
    assert (embedded / "maps.html").stat().st_size > 10_000
    scores = pd.read_csv(embedded / "scores.csv")
    target, corpus = scores[scores["view"] == "target"], scores[scores["view"] == "corpus"]
    assert set(target["layer"]) == {"encoder", "finetuned", "head"}
    assert target["knn_macro_auroc"].between(0, 1).all()
    assert target["classifier_exact_match"].between(0, 1).all()
    assert set(corpus["layer"]) == {"encoder", "finetuned"} and corpus["n_windows"].eq(60).all()
