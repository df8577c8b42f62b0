"""Session fixtures: the small embedded data set, generated once per test session in a temp folder."""
import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tiny test shapes: one thread beats two (no oversubscription)


@pytest.fixture(scope="session")
def embedded_small():
    """The small embedded data set, generated once per session where the default data live
    (``ECGNB_DATA``: the session's temporary folder, set by the root conftest), so the tests that
    name its folders and the code and notebooks that read the defaults share one generation."""
    from ecgnb.data.simulate import embedded_data
    from ecgnb.runs import data_root
    return embedded_data(data_root(), seed=0, small=True)


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
    from ecgnb.files import write_json
    from ecgnb.provenance import code_identity

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / runs.CONFIG, {"stage": "test", "started": "", "by_runner": True,
                                      "code": code_identity({}), "warnings": list(warnings)})
    runs.finish_stage(folder, summary)
    notebook = folder / "run.ipynb"
    notebook.write_text("{}")
    runs.complete_pending(folder, notebook, params_hash, 1.0)
    return folder


@pytest.fixture
def complete_run():
    """``complete_run(folder, params_hash="h", summary=None)``: a complete run folder."""
    return _complete_run


@pytest.fixture(scope="session")
def ptbxl_sample(tmp_path_factory):
    """The embedded PTB-XL sample (150 records of 60 patients), generated once per session."""
    from ecgnb.data.simulate_ptbxl import embedded_ptbxl
    return embedded_ptbxl(tmp_path_factory.mktemp("ptbxl"), seed=0)


def write_wfdb_task(root, n_groups: int = 4, classes=("A", "B", "C"), fs: float = 250.0,
                    seconds: float = 3.0, split: bool = False):
    """A folder of 2-lead WFDB records (MLII, V1; one per group and class, each class its own
    rhythm) and ``labels.csv`` (record,label,group[,split]); returns ``root``."""
    import numpy as np
    import pandas as pd
    import wfdb

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * fs)) / fs
    rows = []
    for k, label in enumerate(classes):
        for g in range(n_groups):
            name = f"p{g:02d}_{label}"
            x = np.sin(2 * np.pi * (1 + k) * t)[:, None] * [1.0, -0.5] \
                + 0.05 * rng.standard_normal((len(t), 2))
            wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=x,
                        fmt=["16", "16"], write_dir=str(root))
            row = {"record": name, "label": label, "group": f"p{g:02d}"}
            if split:
                row["split"] = ("train", "train", "val", "test")[g % 4]
            rows.append(row)
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


@pytest.fixture
def wfdb_task(tmp_path):
    """``wfdb_task(**kw)``: a WFDB folder with labels.csv under a temporary folder."""
    return lambda **kw: write_wfdb_task(tmp_path / "task", **kw)


def multilabel_task(n_groups: int, per_group: int, n_timesteps: int, seed: int = 0):
    """A tiny multi-label, 3-lead task (NORM, MI, STTC): class k adds a sine of frequency 2 + 3k
    to lead k; every window has one or two classes. ``(windows, splits)``, grouped."""
    import numpy as np
    from ecgnb.data import Windows, split_grouped

    classes = ("NORM", "MI", "STTC")
    rng = np.random.default_rng(seed)
    y = np.zeros((n_groups * per_group, len(classes)), np.int8)
    y[np.arange(len(y)), np.arange(len(y)) % len(classes)] = 1
    y[rng.random(len(y)) < 0.3, 1] = 1
    x = 0.3 * rng.normal(size=(len(y), len(classes), n_timesteps))
    for k in range(len(classes)):
        x[y[:, k] == 1, k] += np.sin(2 * np.pi * (2 + 3 * k) * np.arange(n_timesteps) / n_timesteps)
    windows = Windows(x=x.astype(np.float32), y=y,
                      groups=np.repeat([f"p{g}" for g in range(n_groups)], per_group),
                      domains=np.full(len(y), "ECG"), fs=100.0, classes=classes,
                      leads=("I", "II", "V1"))
    return windows, split_grouped(windows, val=0.25, test=0.25, seed=0)


@pytest.fixture(scope="session")
def make_multilabel_task():
    """:func:`multilabel_task`, for the tests of multi-label cells and of notebook 04 on them."""
    return multilabel_task

