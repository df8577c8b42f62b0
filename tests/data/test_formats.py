"""Loaders on tiny fixtures written in the real formats, every bad-input case."""
import pickle

import numpy as np
import pytest
import wfdb

from ecgnb.data import FRAGMENT_CLASSES, DataError, load_fragment, load_wesad
from ecgnb.data.simulate import write_py2_pickle


def write_fragment(folder, name, sig, fs=250):
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["MLII"], p_signal=np.asarray(sig)[:, None],
                fmt=["16"], write_dir=str(folder))


@pytest.fixture
def fragment_root(tmp_path):
    rng = np.random.default_rng(0)
    for k, cls in enumerate(FRAGMENT_CLASSES):
        for j in range(2):
            sig = np.sin(np.linspace(0, 2 * np.pi * (k + 1), 500)) + 0.01 * rng.standard_normal(500)
            write_fragment(tmp_path / cls / "frag", f"{400 + j}_C_X_{10 * k + j}s_frag", sig)
        (tmp_path / cls / "full").mkdir()
    return tmp_path


def test_load_fragment_shapes_classes_groups(fragment_root):
    w = load_fragment(fragment_root, fs=360.0)
    assert w.x.shape == (12, 1, 720) and w.x.dtype == np.float32
    assert w.classes == FRAGMENT_CLASSES
    assert list(w.y) == [k for k in range(6) for _ in range(2)]
    assert set(w.groups) == {"400", "401"} and set(w.domains) == {"ECG"}
    # resampling keeps the waveform: the first class is one sine period over 2 s
    t = np.arange(720) / 360.0
    assert np.corrcoef(w.x[0, 0], np.sin(2 * np.pi * t / 2.0))[0, 1] > 0.99


def test_load_fragment_native_rate(fragment_root):
    assert load_fragment(fragment_root, fs=250.0).x.shape[-1] == 500


def _first_record(root):
    return sorted((root / FRAGMENT_CLASSES[0] / "frag").glob("*.hea"))[0]


@pytest.mark.parametrize("case, message", [
    ("missing_root", "does not exist"),
    ("missing_class", "class folder missing"),
    ("corrupt_header", "header"),
    ("missing_dat", r"signal file .*\.dat is missing"),
    ("no_fs", "no sampling rate"),
    ("wrong_length", "wrong length"),
    ("nan", "NaN"),
    ("odd_fs", "implausible sampling rate"),
])
def test_load_fragment_bad_input(fragment_root, case, message):
    header = _first_record(fragment_root)
    root = fragment_root
    if case == "missing_root":
        root = fragment_root / "nope"
    elif case == "missing_class":
        import shutil
        shutil.rmtree(fragment_root / FRAGMENT_CLASSES[3])
    elif case == "corrupt_header":
        header.write_bytes(b"\xff\xfe garbage")
    elif case == "missing_dat":
        header.with_suffix(".dat").unlink()
    elif case == "no_fs":
        lines = header.read_text().splitlines()
        lines[0] = " ".join(lines[0].split()[:2])
        header.write_text("\n".join(lines) + "\n")
    elif case == "wrong_length":
        write_fragment(header.parent, header.stem, np.zeros(400))
    elif case == "nan":
        sig = np.zeros(500)
        sig[10] = np.nan
        write_fragment(header.parent, header.stem, sig)
    elif case == "odd_fs":
        write_fragment(header.parent, header.stem, np.zeros(20), fs=10)
    with pytest.raises(DataError, match=message) as info:
        load_fragment(root)
    if case not in ("missing_root", "missing_class"):
        assert header.name in str(info.value)  # the error names the file


def test_fragment_unparsable_name_warns(fragment_root):
    header = _first_record(fragment_root)
    write_fragment(header.parent, "odd_name", np.sin(np.arange(500) / 10))
    with pytest.warns(UserWarning, match="odd_name"):
        w = load_fragment(fragment_root)
    assert "odd_name" in set(w.groups)


def wesad_subject(n_s=60.0, fs=700, labels=(1, 2, 3, 4), seed=0):
    rng = np.random.default_rng(seed)
    n = int(n_s * fs)
    label = np.repeat(np.asarray(labels), int(np.ceil(n / len(labels))))[:n]
    t = np.arange(n) / fs
    chest = {name: (np.sin(2 * np.pi * f * t) + 0.1 * rng.standard_normal(n))[:, None]
             for name, f in (("ECG", 1.2), ("EMG", 50.0), ("EDA", 0.05), ("Temp", 0.01),
                             ("Resp", 0.25))}
    chest["ACC"] = rng.standard_normal((n, 3))
    wrist = {"ACC": np.zeros((int(n_s * 32), 3)), "BVP": np.zeros((int(n_s * 64), 1)),
             "EDA": np.zeros((int(n_s * 4), 1)), "TEMP": np.zeros((int(n_s * 4), 1))}
    return {"signal": {"chest": chest, "wrist": wrist}, "label": label, "subject": "S2"}


@pytest.fixture
def wesad_root(tmp_path):
    for i, sid in enumerate(("S2", "S3", "S10")):
        (tmp_path / sid).mkdir()
        write_py2_pickle(wesad_subject(seed=i), tmp_path / sid / f"{sid}.pkl")
    return tmp_path


def test_load_wesad_recipe(wesad_root):
    w = load_wesad(wesad_root, channels=("ECG", "EDA"), fs=360.0)
    # 60 s at 350 Hz, 700-sample windows every 140 samples -> 146 windows per subject and channel
    n_per = (60 * 350 - 700) // 140 + 1
    assert w.x.shape[1:] == (1, 720)
    assert len(w) <= 3 * 2 * n_per and len(w) >= 3 * 2 * (n_per - 8)  # condition edges drop few
    assert set(w.domains) == {"ECG", "EDA"} and set(w.groups) == {"S2", "S3", "S10"}
    assert set(w.y) == {0, 1, 2, 3}
    np.testing.assert_allclose(w.x.mean(axis=-1), 0.0, atol=0.05)  # z-scored before resampling
    assert np.allclose(w.x.std(axis=-1), 1.0, atol=0.1)


def test_load_wesad_subject_order_and_subset(wesad_root):
    w = load_wesad(wesad_root, subjects=["S10", "S2"])
    assert list(dict.fromkeys(w.groups)) == ["S10", "S2"]
    w = load_wesad(wesad_root)
    assert list(dict.fromkeys(w.groups)) == ["S2", "S3", "S10"]  # numeric, not lexical


def test_load_wesad_fraction_is_seeded(wesad_root):
    a = load_wesad(wesad_root, fraction=0.2, seed=1)
    b = load_wesad(wesad_root, fraction=0.2, seed=1)
    full = load_wesad(wesad_root)
    assert np.array_equal(a.x, b.x) and abs(len(a) - 0.2 * len(full)) <= 3


def test_wesad_pickle_is_python2_style(wesad_root):
    with open(wesad_root / "S2" / "S2.pkl", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    assert b"signal" in raw  # byte-string keys, as Python 2 wrote them


@pytest.mark.parametrize("case, message", [
    ("unknown_channel", "unknown WESAD chest channel"),
    ("missing_keys", "expected keys"),
    ("corrupt", "unreadable pickle"),
    ("missing_subject", "subject pickle missing"),
    ("length_mismatch", "wrong sampling rate"),
    ("nan", "NaN"),
    ("empty", "no window with a modal label"),
    ("missing_channel", "channel 'EDA' missing"),
])
def test_load_wesad_bad_input(wesad_root, case, message):
    path = wesad_root / "S2" / "S2.pkl"
    kwargs = {"channels": ("ECG",)}
    data = wesad_subject()
    if case == "unknown_channel":
        kwargs["channels"] = ("ECG", "BVP")
    elif case == "missing_keys":
        write_py2_pickle({"signal": data["signal"]}, path)
    elif case == "corrupt":
        path.write_bytes(path.read_bytes()[:100])
    elif case == "missing_subject":
        kwargs["subjects"] = ["S2", "S99"]
    elif case == "length_mismatch":
        data["signal"]["chest"]["ECG"] = data["signal"]["chest"]["ECG"][::2]
        write_py2_pickle(data, path)
    elif case == "nan":
        data["signal"]["chest"]["ECG"][5] = np.nan
        write_py2_pickle(data, path)
    elif case == "empty":
        data["label"][:] = 0
        write_py2_pickle(data, path)
        kwargs["subjects"] = ["S2"]
    elif case == "missing_channel":
        del data["signal"]["chest"]["EDA"]
        write_py2_pickle(data, path)
        kwargs["channels"] = ("EDA",)
    with pytest.raises(DataError, match=message) as info:
        load_wesad(wesad_root, **kwargs)
    if case not in ("unknown_channel",):
        assert "S2" in str(info.value) or "S99" in str(info.value)


# ------------------------------------------------------------------ data that passed silently
def test_an_empty_class_folder_is_an_error_naming_it(fragment_root):
    for path in (fragment_root / FRAGMENT_CLASSES[4] / "frag").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=f"{FRAGMENT_CLASSES[4]}/frag: class folder has no WFDB"):
        load_fragment(fragment_root)


def test_a_flat_line_fragment_is_an_error_naming_file_and_lead(fragment_root):
    header = _first_record(fragment_root)
    write_fragment(header.parent, header.stem, np.full(500, 0.25))
    with pytest.raises(DataError, match=f"{header.name}: lead MLII is a flat line"):
        load_fragment(fragment_root)


def test_a_non_ascii_record_name_names_the_real_file(fragment_root):
    folder = _first_record(fragment_root).parent
    write_fragment(folder, "402_C_VF_27s_frag", np.sin(np.arange(500) / 10))
    for path in list(folder.glob("402_*")):
        path.rename(path.with_name(path.name.replace("27s", "27é")))
    header = folder / "402_C_VF_27é_frag.hea"
    header.write_text(header.read_text().replace("27s", "27é"))
    with pytest.raises(DataError, match="402_C_VF_27é_frag.hea: non-ASCII record or signal file"):
        load_fragment(fragment_root)


def test_a_flat_line_chest_channel_is_an_error_naming_file_and_channel(wesad_root):
    data = wesad_subject()
    data["signal"]["chest"]["ECG"][:] = 0.0
    write_py2_pickle(data, wesad_root / "S3" / "S3.pkl")
    with pytest.raises(DataError, match=r"S3.pkl: chest 'ECG' is a flat line"):
        load_wesad(wesad_root)


def test_a_subject_without_usable_labels_is_left_out_with_a_warning(wesad_root):
    from ecgnb.config import DataWarning
    data = wesad_subject()
    data["label"][:] = 6
    write_py2_pickle(data, wesad_root / "S3" / "S3.pkl")
    with pytest.warns(DataWarning, match=r"S3.pkl: subject S3 left out: .*labels present: \[6\]"):
        w = load_wesad(wesad_root, fraction=0.5)
    assert set(w.groups) == {"S2", "S10"}


def test_a_350_hz_pickle_read_as_700_hz_is_an_error(wesad_root):
    data = wesad_subject()  # 60 s; keep every other sample of chest and labels: 350 Hz, consistent
    data["signal"]["chest"] = {k: v[::2] for k, v in data["signal"]["chest"].items()}
    data["label"] = data["label"][::2]
    write_py2_pickle(data, wesad_root / "S2" / "S2.pkl")
    with pytest.raises(DataError, match=r"S2.pkl: the chest signals and labels last 30 s at 700 Hz "
                                        r"but wrist ACC lasts 60 s .* probably at 350 Hz"):
        load_wesad(wesad_root)


class _Planted:
    """Unpickling this runs ``os.system``: what a tampered data file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_a_wesad_pickle_that_would_run_code_is_refused_unrun(wesad_root, tmp_path):
    """The WESAD reader builds data only (dicts, strings, NumPy arrays): a pickle that asks for
    a callable is one DataError naming the file and what it asked for, and nothing ran."""
    marker = tmp_path / "ran"
    path = wesad_root / "S3" / "S3.pkl"
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    data["label"] = _Planted(marker)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=2)
    with pytest.raises(DataError, match=r"S3\.pkl: unreadable pickle .*posix\.system.*refused"):
        load_wesad(wesad_root, subjects=["S3"])
    assert not marker.exists()
