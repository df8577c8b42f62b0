"""Root pytest hooks: every test and every nbval-executed notebook writes to a temporary folder.

Notebook 05's defaults name the demo's runs (``make demo``); before nbval runs it, tiny finished
runs are written under those names in the temporary outputs root (:func:`demo_stand_ins`), by
the package's own functions, so the notebook itself never trains stand-ins.
"""
import ast
import os
import shutil
import tempfile
from pathlib import Path

import pytest

EMBEDDINGS_NOTEBOOK = "05_embeddings.ipynb"


def pytest_configure(config):
    root = tempfile.mkdtemp(prefix="ecgnb-test-")
    config._ecgnb_root = root  # removed when the session ends (pytest_unconfigure)
    os.environ["ECGNB_OUTPUTS"] = os.path.join(root, "outputs")
    os.environ["ECGNB_DATA"] = os.path.join(root, "data")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_unconfigure(config):
    root = getattr(config, "_ecgnb_root", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Notebook cells (nbval) are slow; ``gpu`` tests are skipped where CUDA is absent."""
    has_cuda = None
    for item in items:
        if item.nodeid.endswith(".ipynb") or ".ipynb::" in item.nodeid:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("gpu") is not None:
            if has_cuda is None:
                import torch
                has_cuda = torch.cuda.is_available()
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="needs CUDA; none on this machine"))


@pytest.fixture()
def demo_runs() -> list[str]:
    """The names of notebook 05's default runs, finished (stand-ins unless they exist)."""
    return demo_stand_ins()


def demo_stand_ins() -> list[str]:
    """Tiny finished runs under the names notebook 05 reads by default (the demo's TS2Vec runs:
    ECG and ECG continued1, cell ``mlp-lp-f1-s0``), on the data those runs read; existing
    finished runs are kept. Returns the finetuning run names."""
    from ecgnb import finetuning, models, pretraining, regularization, runs
    from ecgnb.data import DataConfig, load_corpus, scenarios, target_task
    from ecgnb.workflow.runner import declared_parameters

    declared = declared_parameters(Path(__file__).parent / "notebooks" / EMBEDDINGS_NOTEBOOK)
    defaults = {name: ast.literal_eval(p["default"]) for name, p in declared.items()}
    names = list(defaults["runs"])
    data = DataConfig(use_small_data=defaults["use_small_data"])
    if all(runs.is_complete(runs.run_folder(n)) for n in names):
        return names
    fragments, splits = target_task(data)
    corpus = load_corpus("ECG", data, n_windows=32, seed=0)[0]
    cfg = pretraining.PretrainConfig(backbone="ts2vec", model_size="small", n_epochs=1,
                                     batch_size=16, device="cpu", use_small_data=data.use_small_data)
    encoder = pretraining.pretrain(cfg, corpus, verbose=False)
    parent = _finished(runs, cfg, "pretraining", "demo/pretraining/ts2vec-ecg", encoder)
    for name, scenario in zip(names, ("ECG", "ECG continued1")):
        encoder_run, encoder = "demo/pretraining/ts2vec-ecg", models.load(parent)
        if scenario != "ECG":
            reg = regularization.RegularizationConfig(
                parent_run=encoder_run, scenario=scenario, batch_size=16, n_windows=32,
                device="cpu", use_small_data=data.use_small_data)
            other = load_corpus(reg.step.corpus, data, fraction=0.02, n_windows=32, seed=0)[0]
            encoder = regularization.continue_training(encoder, other, None, reg.step, parent,
                                                       scenario, reg, verbose=False)
            encoder_run = "demo/regularization/ts2vec-" + scenarios.slug(scenario)
            encoder = models.load(_finished(runs, reg, "regularization", encoder_run, encoder))
        ft = finetuning.FinetuneConfig(encoder_run=encoder_run, heads=("mlp",), modes=("lp",),
                                       label_fraction=1.0, n_epochs=1, batch_size=16, patience=1,
                                       device="cpu", use_small_data=data.use_small_data)
        out = runs.start_stage(ft, "finetuning", str(runs.run_folder(name)), by_runner=False)
        source = {"backbone": "ts2vec", "scenario": scenario, "encoder_run": encoder_run,
                  "encoder_hash": encoder.weights_hash()}
        finetuning.run_cells(ft, encoder, source, fragments, splits, out)
        runs.finish_stage(out, {"stand_in": "tests (conftest.demo_stand_ins)"})
    return names


def _finished(runs, cfg, stage: str, name: str, encoder):
    out = runs.start_stage(cfg, stage, str(runs.run_folder(name)), by_runner=False)
    encoder.save(out / runs.ENCODER)
    runs.finish_stage(out, {"stand_in": "tests (conftest.demo_stand_ins)"})
    return out / runs.ENCODER


def pytest_runtest_setup(item):
    """Before each cell of notebook 05 that nbval runs: its default runs exist (tests that only
    name the notebook, such as the docs' link checks, go without)."""
    if item.path.name == EMBEDDINGS_NOTEBOOK:
        demo_stand_ins()
