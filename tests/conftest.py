"""Session fixtures: the small embedded data set, generated once per test session in a temp folder."""
import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tiny test shapes: one thread beats two (no oversubscription)


@pytest.fixture(scope="session")
def embedded_small(tmp_path_factory):
    from ecgnb.data.simulate import embedded_data
    return embedded_data(tmp_path_factory.mktemp("data"), seed=0, small=True)


@pytest.fixture(scope="session")
def fragment_small(embedded_small):
    from ecgnb.data import load_fragment
    return load_fragment(embedded_small["fragment"], fs=360.0)


@pytest.fixture(scope="session")
def wesad_ecg_small(embedded_small):
    from ecgnb.data import load_wesad
    return load_wesad(embedded_small["wesad"], channels=("ECG",), fs=360.0)


@pytest.fixture(scope="session")
def wesad_all_small(embedded_small):
    from ecgnb.data import WESAD_CHANNELS, load_wesad
    return load_wesad(embedded_small["wesad"], channels=WESAD_CHANNELS, fs=360.0)


def _complete_run(folder, params_hash="h", summary=None, warnings=()):
    """Make ``folder`` a complete run the way the runner does: config.json, the notebook's
    pending record, an executed notebook, then the completion record."""
    from ecgnb import runs
    from ecgnb.config import code_identity, write_json

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / runs.CONFIG, {"stage": "test", "started": "", "by_runner": True,
                                      "code": code_identity(), "warnings": list(warnings)})
    runs.finish_stage(folder, summary)
    notebook = folder / "run.ipynb"
    notebook.write_text("{}")
    runs.complete_pending(folder, notebook, params_hash, 1.0)
    return folder


@pytest.fixture
def complete_run():
    """``complete_run(folder, params_hash="h", summary=None)``: a complete run folder."""
    return _complete_run
