"""Tests for ecgnb.data.simulate: the embedded default data in the real Fragment-DB and WESAD formats."""

import pickle
import re

import neurokit2 as nk
import numpy as np
import pytest
import wfdb

from ecgnb.data import simulate
from ecgnb.data.simulate import (GENERATOR_VERSION, embedded_data, generator_digest,
                                  make_fragment_db, make_wesad, write_py2_pickle)
from ecgnb.data.rhythms import CLASS_FOLDERS, RHYTHMS, Patient, draw_patient, fragment_name

NAME_PATTERN = re.compile(r"^\d{3}_C_[A-Za-z]+_\d+(_\d+)?s_frag$")
CHEST = ("ACC", "ECG", "EMG", "EDA", "Temp", "Resp")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small embedded set, generated once for this module."""
    return embedded_data(tmp_path_factory.mktemp("cache"), seed=0, small=True)


def _load(path, encoding="latin1"):
    with open(path, "rb") as f:
        return pickle.load(f, encoding=encoding)


def _tiny_fragment_db(root, seed):
    return make_fragment_db(root, seed=seed, n_records=4, n_fragments=24)


def test_fragment_tree_layout(small):
    root = small["fragment"]
    assert sorted(p.name for p in root.iterdir()) == list(CLASS_FOLDERS)
    names = set()
    for folder in CLASS_FOLDERS:
        heads = sorted((root / folder / "frag").glob("*.hea"))
        assert len(heads) >= 6, folder
        assert len({h.stem[:3] for h in heads}) >= 2, folder
        assert len(list((root / folder / "full").glob("*.csv"))) == len(heads)
        for head in heads:
            assert NAME_PATTERN.match(head.stem), head.stem
            names.add(head.stem)
            record = wfdb.rdrecord(str(head.with_suffix("")))
            assert record.fs == 250 and record.sig_len == 500
            assert record.sig_name == ["MLII"] and record.units == ["mV"]
            assert np.isfinite(record.p_signal).all() and record.p_signal.std() > 0.01
    assert len(names) == 120


def test_offsets_unique_within_record(small):
    offsets = {}
    for head in small["fragment"].glob("*/frag/*.hea"):
        source, _, _, rest = head.stem.split("_", 3)
        offset = float(rest[: rest.index("s_frag")].replace("_", "."))
        offsets.setdefault(source, []).append(offset)
    for source, values in offsets.items():
        values = np.sort(values)
        assert np.all(np.diff(values) >= 2.0), source  # fragments of one record never overlap


def test_fragment_name_format():
    assert fragment_name(426, "VF", 454.5) == "426_C_VF_454_5s_frag"
    assert fragment_name(418, "VF", 277.0) == "418_C_VF_277s_frag"


@pytest.mark.parametrize("code", sorted(RHYTHMS))
def test_rhythms_are_finite_and_bounded(code):
    rng = np.random.default_rng(0)
    patient: Patient = draw_patient(500, rng)
    x = RHYTHMS[code](patient, 2000, 250.0, rng)
    assert x.shape == (2000,) and np.isfinite(x).all() and 0.05 < np.abs(x).max() < 8.0


def test_fragment_determinism(tmp_path):
    runs = (("a", 1), ("b", 1), ("c", 2))
    roots = [_tiny_fragment_db(tmp_path / name, seed) for name, seed in runs]
    files_a = sorted(p.relative_to(roots[0]) for p in roots[0].rglob("*.dat"))
    assert files_a == sorted(p.relative_to(roots[1]) for p in roots[1].rglob("*.dat"))
    assert all((roots[0] / f).read_bytes() == (roots[1] / f).read_bytes() for f in files_a)
    assert files_a != sorted(p.relative_to(roots[2]) for p in roots[2].rglob("*.dat"))


def test_wesad_determinism(tmp_path):
    kwargs = {"subjects": ("S3",), "minutes_per_condition": 0.2}
    data = [_load(make_wesad(tmp_path / name, seed=seed, **kwargs) / "S3" / "S3.pkl")
            for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    chests = [d["signal"]["chest"] for d in data]
    for key in CHEST:
        np.testing.assert_array_equal(chests[0][key], chests[1][key])
    np.testing.assert_array_equal(data[0]["label"], data[1]["label"])
    assert not np.array_equal(chests[0]["ECG"][:1000], chests[2]["ECG"][:1000])


def test_wesad_tree(small):
    paths = sorted(small["wesad"].glob("S*/S*.pkl"))
    assert [p.parent.name for p in paths] == ["S2", "S3", "S4"]
    data = _load(paths[0])
    assert set(data) == {"signal", "label", "subject"} and data["subject"] == "S2"
    chest, wrist, label = data["signal"]["chest"], data["signal"]["wrist"], data["label"]
    n = label.shape[0]
    assert set(chest) == set(CHEST) and set(wrist) == {"ACC", "BVP", "EDA", "TEMP"}
    assert chest["ACC"].shape == (n, 3)
    assert all(chest[k].shape == (n, 1) and chest[k].dtype == np.float64 for k in CHEST[1:])
    duration_s = n / 700
    for key, fs in (("ACC", 32), ("BVP", 64), ("EDA", 4), ("TEMP", 4)):
        assert abs(wrist[key].shape[0] / fs - duration_s) < 1.0, key
    assert wrist["ACC"].shape[1] == 3
    assert set(np.unique(label)) >= {0, 1, 2, 3, 4} and label[0] == 0
    assert all(np.isfinite(v).all() for v in list(chest.values()) + list(wrist.values()))


def test_wesad_pickle_is_python2_style(small):
    path = small["wesad"] / "S3" / "S3.pkl"
    as_bytes = _load(path, encoding="bytes")
    assert set(as_bytes) == {b"signal", b"label", b"subject"} and as_bytes[b"subject"] == b"S3"
    assert set(as_bytes[b"signal"][b"chest"]) == {k.encode() for k in CHEST}
    ecg_str = _load(path)["signal"]["chest"]["ECG"]
    np.testing.assert_array_equal(as_bytes[b"signal"][b"chest"][b"ECG"], ecg_str)


def test_write_py2_pickle_round_trip(tmp_path):
    values = [1, 2.5, None, (True,)]
    obj = {"name": "S9", "long": "x" * 300, "values": values, "array": np.arange(4.0)}
    write_py2_pickle(obj, tmp_path / "o.pkl")
    raw = (tmp_path / "o.pkl").read_bytes()
    assert raw[:2] == b"\x80\x02" and b"X" not in raw[2:4]  # protocol 2, no unicode opcode for keys
    back = _load(tmp_path / "o.pkl")
    assert back["name"] == "S9" and back["long"] == "x" * 300 and back["values"] == values
    np.testing.assert_array_equal(back["array"], np.arange(4.0))


def _heart_rate(ecg, fs=700):
    _, info = nk.ecg_peaks(ecg, sampling_rate=fs)
    return 60.0 * fs / np.median(np.diff(info["ECG_R_Peaks"]))


def test_stress_raises_heart_rate(small):
    data = _load(small["wesad"] / "S2" / "S2.pkl")
    ecg, label = data["signal"]["chest"]["ECG"][:, 0], data["label"]
    rates = {c: _heart_rate(ecg[label == c][700 * 10:]) for c in (1, 2, 4)}
    assert rates[2] > rates[1] + 5 and rates[4] < rates[2]


def test_cache_reuses_generation(small):
    cache = small["fragment"].parent.parent
    assert small["fragment"].parent.name == f"embedded-v{GENERATOR_VERSION}-{generator_digest()}-seed0-small"
    def stamps(tree):
        return {p: p.stat().st_mtime_ns for p in tree.rglob("*") if p.is_file()}
    before = stamps(small["fragment"].parent)
    again = embedded_data(cache, seed=0, small=True)
    assert again == small and stamps(again["fragment"].parent) == before
    assert [p.name for p in cache.iterdir()] == [small["fragment"].parent.name]  # no temp left


def test_interrupted_generation_is_not_complete(tmp_path, monkeypatch):
    def interrupted(root, **kwargs):
        (root / "partial").mkdir(parents=True)
        raise KeyboardInterrupt
    monkeypatch.setattr(simulate, "make_fragment_db", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embedded_data(tmp_path, seed=0, small=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_paper_size_structure_at_a_small_scale(tmp_path):
    """The paper size, scaled to 1 %: WESAD's 15 subjects (no S12), each recording lasting
    scale x 100 min at 700 Hz, and every class of the Fragment tree."""
    settings = simulate.embedded_settings("paper")
    assert settings["wesad"]["subjects"] == [f"S{i}" for i in range(2, 18) if i != 12]
    assert settings["fragment"]["n_fragments"] == 1000
    labelled_s = 4 * settings["wesad"]["minutes_per_condition"] * 60
    assert 100_000 < len(settings["wesad"]["subjects"]) * labelled_s / 0.4 < 110_000
    scale = 0.01
    paths = embedded_data(tmp_path, size="paper", scale=scale)
    assert paths["wesad"].parent.name == f"embedded-v{GENERATOR_VERSION}-{generator_digest()}-seed0-paper-x0.01"
    subjects = sorted(p.name for p in paths["wesad"].iterdir())
    assert sorted(subjects) == sorted(settings["wesad"]["subjects"])
    data = _load(paths["wesad"] / "S17" / "S17.pkl")
    labels = data["label"]
    assert abs(len(labels) / simulate.FS_CHEST - scale * 100 * 60) < 2.0
    assert set(np.unique(labels)) >= {0, 1, 2, 3, 4}
    assert sorted(data["signal"]["chest"]) == sorted(CHEST)
    assert all(len(v) == len(labels) for v in data["signal"]["chest"].values())
    frags = [len(list((paths["fragment"] / c / "frag").glob("*.hea"))) for c in CLASS_FOLDERS]
    assert sum(frags) == 60 and min(frags) >= 1


def test_sizes_are_checked():
    with pytest.raises(ValueError, match="size must be one of"):
        simulate.embedded_settings("huge")
    with pytest.raises(ValueError, match="scale"):
        simulate.embedded_settings("paper", scale=2.0)
