"""ecgnb/data/cards.py (with records.py and ptbxl.py): dataset cards read into Windows, and every
bad input as one DataError line that names the card, the record and the problem."""
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from ecgnb.config import DataWarning
from ecgnb.data import cards, corpora
from ecgnb.data.windows import DataError


def write_card(path, **keys):
    path.write_text(yaml.safe_dump(keys))
    return path


def target(tmp_path, root, name="card.yaml", **keys):
    """A wfdb target card over ``root`` (keys override)."""
    spec = {"kind": "target", "format": "wfdb", "root": str(root), "channel": "MLII",
            "window_s": 2.0, **keys}
    return write_card(tmp_path / name, **spec)


def read(card, fs=100.0):
    return cards.load_target(cards.read_card(card, kind="target"), fs)


# --------------------------------------------------------------------------- wfdb and npz
def test_a_wfdb_folder_with_labels_becomes_windows_at_the_common_rate(tmp_path, wfdb_task):
    card = target(tmp_path, wfdb_task(), classes=["C", "B", "A"])
    windows, given = read(card, fs=100.0)
    assert windows.x.shape == (12, 1, 200) and windows.fs == 100.0
    assert windows.classes == ("C", "B", "A") and given is None
    assert sorted(set(windows.groups)) == ["p00", "p01", "p02", "p03"]
    assert np.bincount(windows.y).tolist() == [4, 4, 4]


def test_the_length_policy(tmp_path, wfdb_task):
    root = wfdb_task(seconds=5.0)
    assert read(target(tmp_path, root, long="windows"))[0].x.shape[0] == 24  # 2 per record
    start, centre = (read(target(tmp_path, root, long=p))[0].x for p in ("crop_start",
                                                                         "crop_center"))
    assert start.shape == centre.shape == (12, 1, 200) and not np.allclose(start, centre)
    short = target(tmp_path, root, window_s=8.0)
    assert read(short)[0].x.shape == (12, 1, 800)  # padded
    with pytest.warns(DataWarning, match="12 record"), pytest.raises(DataError,
                                                                     match="no record left"):
        read(target(tmp_path, root, window_s=8.0, short="drop"))


def test_npz_records_with_and_without_a_stated_rate(tmp_path):
    root = tmp_path / "npz"
    root.mkdir()
    rows = []
    for k, label in enumerate(("x", "y")):
        for g in range(3):
            name = f"r{g}{label}"
            signal = np.sin(np.linspace(0, 20 * (k + 1), 600))
            np.savez(root / f"{name}.npz", signal=signal, **({"fs": 200.0} if g else {}))
            rows.append({"record": name, "label": label, "group": f"g{g}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    spec = {"kind": "target", "format": "npz", "root": str(root), "window_s": 2.0}
    with pytest.raises(DataError, match="record r0x: the file states no sampling rate"):
        read(write_card(tmp_path / "npz.yaml", **spec))
    windows, _ = read(write_card(tmp_path / "npz.yaml", **spec, fs=200.0))
    assert windows.x.shape == (6, 1, 200) and windows.classes == ("x", "y")


def test_a_split_column_is_used_as_given(tmp_path, wfdb_task):
    windows, given = read(target(tmp_path, wfdb_task(split=True)))
    assert {k: sorted(set(windows.groups[v])) for k, v in given.items()} == \
        {"train": ["p00", "p01"], "val": ["p02"], "test": ["p03"]}
    data = corpora.DataConfig(target=str(target(tmp_path, wfdb_task(split=True))), fs=100.0)
    _, splits = corpora.target_task(data)
    assert sorted(set(windows.groups[splits["val"]])) == ["p02"]


def test_target_task_splits_a_card_grouped_and_stratified(tmp_path, wfdb_task):
    data = corpora.DataConfig(target=str(target(tmp_path, wfdb_task(n_groups=10))), fs=100.0)
    windows, splits = corpora.target_task(data)
    assert np.allclose(windows.x.mean(-1), 0, atol=1e-5)  # z-scored per window
    corpora.check_classes(windows, splits)
    seen = [set(windows.groups[v]) for v in splits.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


# --------------------------------------------------------------------------- channels, multi-label
def test_channels_read_several_leads_each_as_a_single_lead_card_would(tmp_path, wfdb_task):
    root = wfdb_task()
    single, _ = read(target(tmp_path, root))
    both, _ = read(target(tmp_path, root, channel=None, channels=["v1", "MLII"]))
    assert both.x.shape == (12, 2, 200) and both.leads == ("V1", "MLII") and single.leads == ()
    np.testing.assert_array_equal(both.x[:, 1], single.x[:, 0])
    every, _ = read(target(tmp_path, root, channel=None, channels="all"))
    assert every.leads == ("MLII", "V1") and np.array_equal(every.x, both.x[:, ::-1])
    assert np.array_equal(every.y, single.y) and np.array_equal(every.groups, single.groups)


def test_channels_of_npz_records_by_index(tmp_path):
    root = write_npz_task(tmp_path / "npz", n_leads=3)
    spec = {"kind": "target", "format": "npz", "root": str(root), "window_s": 2.0}
    windows, _ = read(write_card(tmp_path / "npz.yaml", **spec, channels=[2, 0]))
    assert windows.x.shape == (9, 2, 200) and windows.leads == ("2", "0")
    np.testing.assert_allclose(np.ptp(windows.x[0], axis=-1), [6.0, 2.0], rtol=0.01)


def multilabel_task(wfdb_task, n_groups=6):
    """wfdb_task's records relabelled: a 'labels' column of ';'-separated classes (every
    record of an even group also has class D)."""
    root = wfdb_task(n_groups=n_groups)
    table = pd.read_csv(root / "labels.csv")
    even = table["group"].str[-1].astype(int) % 2 == 0
    table["labels"] = table["label"].where(~even, table["label"] + "; D")
    table.drop(columns="label").to_csv(root / "labels.csv", index=False)
    return root


def test_a_multilabel_folder_card_gives_an_indicator_matrix(tmp_path, wfdb_task):
    root = multilabel_task(wfdb_task)
    windows, given = read(target(tmp_path, root, multilabel=True))
    assert windows.is_multilabel and windows.classes == ("A", "B", "C", "D") and given is None
    table = pd.read_csv(root / "labels.csv")
    expected = [sorted(c.strip() for c in cell.split(";")) for cell in table["labels"]]
    assert [[windows.classes[k] for k in np.flatnonzero(r)] for r in windows.y] == expected
    ordered, _ = read(target(tmp_path, root, multilabel=True, classes=["D", "C", "B", "A"]))
    assert np.array_equal(ordered.y, windows.y[:, ::-1])


def test_target_task_splits_a_multilabel_card_grouped_with_every_class(tmp_path, wfdb_task):
    root = multilabel_task(wfdb_task, n_groups=10)
    data = corpora.DataConfig(target=str(target(tmp_path, root, multilabel=True)), fs=100.0)
    windows, splits = corpora.target_task(data)
    seen = [set(windows.groups[v]) for v in splits.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(v) for v in splits.values()) == len(windows)
    for name, idx in splits.items():
        assert windows.y[idx].any(axis=0).all(), name


# --------------------------------------------------------------------------- the error lines
def _remove_label(root):
    table = pd.read_csv(root / "labels.csv")
    table.iloc[1:].to_csv(root / "labels.csv", index=False)


def _relabel(root, label):
    table = pd.read_csv(root / "labels.csv")
    table["label"] = label
    table.to_csv(root / "labels.csv", index=False)


def write_npz_task(root, n_leads=1, fs=200.0):
    """3 classes x 3 groups of npz records (600 samples at ``fs``; lead j: (j + 1) sin) and
    labels.csv; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, label in enumerate(("x", "y", "z")):
        for g in range(3):
            name = f"r{g}{label}"
            signal = np.sin(np.linspace(0, 20 * (k + 1), 600))[:, None] * np.arange(1, n_leads + 1)
            np.savez(root / f"{name}.npz", signal=signal.squeeze(), fs=fs)
            rows.append({"record": name, "label": label, "group": f"g{g}"})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root


@pytest.mark.parametrize("case, match", [
    ("empty label file", r"card .*: label file .*labels.csv is empty: it needs a header line "
                         r"record,label,group"),
    ("zero-length record", r"card .*: record r1y: no samples \(a zero-length record\)"),
    ("not an npz archive", r"card .*: record r1y: r1y.npz is not an npz archive \(a zip of "
                           r"arrays written by numpy.savez\)"),
    ("an npy array", r"card .*: record r1y: r1y.npz is a single .npy array, not an npz archive"),
    ("object array", r"card .*: record r1y: array 'signal' of r1y.npz holds Python objects"),
    ("rate of 0 Hz", r"card .*: record r1y: sampling rate 0 Hz in r1y.npz; a rate must be a "
                     r"number > 0"),
])
def test_bad_npz_input_is_one_line_naming_the_file_or_record(tmp_path, case, match):
    root = write_npz_task(tmp_path / "npz")
    record = root / "r1y.npz"
    if case == "empty label file":
        (root / "labels.csv").write_text("")
    elif case == "zero-length record":
        np.savez(record, signal=np.zeros(0), fs=200.0)
    elif case == "not an npz archive":
        record.write_text("record,label\n")
    elif case == "an npy array":
        with open(record, "wb") as f:
            np.save(f, np.zeros(600))
    elif case == "object array":
        np.savez(record, signal=np.array([0.0, "a"], dtype=object), fs=200.0)
    elif case == "rate of 0 Hz":
        np.savez(record, signal=np.zeros(600), fs=0.0)
    spec = {"kind": "target", "format": "npz", "root": str(root), "window_s": 2.0}
    with pytest.raises(DataError, match=match) as error:
        read(write_card(tmp_path / "npz.yaml", **spec))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("case, keys, match", [
    ("no labels", {"labels": "nope.csv"}, r"card .*card.yaml: label file .*nope.csv not found"),
    ("unknown class", {"multilabel": True, "classes": ["A", "B", "C"]},
     r"card .*: .*labels.csv: record p00_A has class 'D', which is not among classes "
     r"\['A', 'B', 'C'\]"),
    ("labels without multilabel", {}, r"card .*: .*labels.csv: a 'labels' column \(several "
                                      r"classes per record, ';'-separated\) needs multilabel: "
                                      r"true"),
    ("channels unknown", {"channel": None, "channels": ["MLII", "V7"]},
     r"card .*: record p00_A: unknown lead 'V7' \(leads: \['MLII', 'V1'\]\)"),
    ("absent record", {}, r"card .*: record ghost of labels.csv is not on disk"),
    ("unknown lead", {"channel": "V9"}, r"card .*: record p00_A: unknown lead 'V9' \(leads: "
                                        r"\['MLII', 'V1'\]\)"),
    ("mixed rates", {}, r"card .*: mixed sampling rates: record .* at 250 Hz, record .* at "
                        r"360 Hz; keep one rate, or set fs"),
    ("one class", {}, r"card .*: 1 class \(\['A'\]\): a task needs at least 2 classes"),
    ("few groups", {}, r"card .*: class 'A' has 2 group\(s\) but the grouped train/val/test "
                       r"split needs at least 3"),
    ("unknown key", {"lead": "II"}, r"card .*: unknown key\(s\) \['lead'\] for a target card "
                                    r"of format wfdb"),
    ("bad policy", {"long": "stretch"}, r"card .*: long must be one of"),
])
def test_bad_input_is_one_line_naming_the_card_the_record_and_the_problem(
        tmp_path, wfdb_task, case, keys, match):
    import wfdb

    root = multilabel_task(wfdb_task) if case in ("unknown class", "labels without multilabel") \
        else wfdb_task()
    if case == "absent record":
        pd.concat([pd.read_csv(root / "labels.csv"),
                   pd.DataFrame([{"record": "ghost", "label": "A", "group": "p09"}])]).to_csv(
            root / "labels.csv", index=False)
    elif case == "mixed rates":
        rec = wfdb.rdrecord(str(root / "p01_B"))
        wfdb.wrsamp("p01_B", fs=360, units=rec.units, sig_name=rec.sig_name,
                    p_signal=rec.p_signal, fmt=rec.fmt, write_dir=str(root))
    elif case == "one class":
        _relabel(root, "A")
    elif case == "few groups":
        table = pd.read_csv(root / "labels.csv")
        table.loc[table["label"] == "A", "group"] = ["p00", "p00", "p01", "p01"]
        table.to_csv(root / "labels.csv", index=False)
    with pytest.raises(DataError, match=match) as error:
        read(target(tmp_path, root, **keys))
    assert "\n" not in str(error.value)


def test_mixed_rates_are_accepted_with_fs_in_the_card(tmp_path, wfdb_task):
    import wfdb

    root = wfdb_task()
    rec = wfdb.rdrecord(str(root / "p01_B"))
    wfdb.wrsamp("p01_B", fs=360, units=rec.units, sig_name=rec.sig_name, p_signal=rec.p_signal,
                fmt=rec.fmt, write_dir=str(root))
    assert read(target(tmp_path, root, fs=250.0))[0].x.shape == (12, 1, 200)


def test_a_record_on_disk_without_a_label_is_a_warning_with_the_count(tmp_path, wfdb_task):
    root = wfdb_task()
    _remove_label(root)
    with pytest.warns(DataWarning, match=r"card .*: 1 record\(s\) on disk have no label"):
        windows, _ = read(target(tmp_path, root))
    assert len(windows) == 11


def test_a_given_split_without_a_class_is_an_error(tmp_path, wfdb_task):
    root = wfdb_task(split=True)
    table = pd.read_csv(root / "labels.csv")
    table.loc[(table["label"] == "B") & (table["split"] == "test"), "split"] = "train"
    table.to_csv(root / "labels.csv", index=False)
    with pytest.raises(DataError, match=r"split 'test' has no record of class\(es\) \['B'\]"):
        read(target(tmp_path, root))


def test_card_keys_and_kinds_are_checked(tmp_path, wfdb_task, monkeypatch):
    with pytest.raises(DataError, match="no such file"):
        cards.read_card(tmp_path / "none.yaml")
    corpus = write_card(tmp_path / "c.yaml", kind="corpus", format="wfdb", root="x")
    with pytest.raises(DataError, match="a corpus card where a target card is needed"):
        cards.read_card(corpus, kind="target")
    with pytest.raises(DataError, match=r"unknown key\(s\) \['labels'\] for a corpus card"):
        cards.read_card(write_card(tmp_path / "c.yaml", kind="corpus", format="wfdb", root="x",
                                   labels="l.csv"))
    monkeypatch.delenv("ECGNB_NOT_SET", raising=False)
    card = cards.read_card(target(tmp_path, "${ECGNB_NOT_SET}"))  # read now, resolved on use
    with pytest.raises(DataError, match="names an unset environment variable"):
        cards.load_target(card, 100.0)


def test_the_shipped_cards_read():
    from ecgnb.runs import PROJECT_ROOT

    found = {p.stem: cards.read_card(p) for p in (PROJECT_ROOT / "params/datasets").glob("*")}
    assert {"fragment", "embedded-fragment", "ptbxl", "embedded-ptbxl"} <= set(found)
    assert found["ptbxl"].channel == "II" and found["ptbxl"].sampling == 100


def test_the_embedded_fragment_card_is_the_default_task(embedded_small, monkeypatch):
    monkeypatch.setenv("ECGNB_DATA", str(embedded_small["fragment"].parent.parent))
    by_card = corpora.target_task(corpora.DataConfig(target="params/datasets/"
                                                     "embedded-fragment.yaml"))
    default = corpora.target_task(corpora.DataConfig(
        fragment_root=str(embedded_small["fragment"]), wesad_root=str(embedded_small["wesad"])))
    assert np.array_equal(by_card[0].x, default[0].x)
    assert all(np.array_equal(by_card[1][k], default[1][k]) for k in default[1])


# --------------------------------------------------------------------------- PTB-XL
def ptbxl_card(tmp_path, root, **keys):
    spec = {"kind": "target", "format": "ptbxl", "root": str(root), "task": "superdiagnostic",
            "channel": "II", "sampling": 100, **keys}
    return write_card(tmp_path / "ptbxl.yaml", **spec)


def test_ptbxl_superdiagnostic_on_the_official_layout(tmp_path, ptbxl_sample):
    db = pd.read_csv(ptbxl_sample / "ptbxl_database.csv")
    assert 200 < len(db) < 250 and db["patient_id"].nunique() == 92
    with pytest.warns(DataWarning, match=rf"keeps \d+ of {len(db)} records, dropping \d+"):
        windows, given = read(ptbxl_card(tmp_path, ptbxl_sample), fs=100.0)
    assert windows.classes == ("NORM", "MI", "STTC", "CD", "HYP")
    assert 0.6 * len(db) < len(windows) < len(db) and windows.x.shape[1:] == (1, 200)
    folds = {k: set(db.loc[db["patient_id"].astype(int).astype(str).isin(windows.groups[v]),
                           "strat_fold"]) for k, v in given.items()}
    assert folds["val"] == {9} and folds["test"] == {10} and folds["train"] <= set(range(1, 9))
    for idx in given.values():  # every class in every split
        assert set(windows.y[idx]) == set(range(5))


def test_ptbxl_at_500_hz_and_its_errors(tmp_path, ptbxl_sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        w100, _ = read(ptbxl_card(tmp_path, ptbxl_sample), fs=100.0)
        w500, _ = read(ptbxl_card(tmp_path, ptbxl_sample, sampling=500, channel="v5"), fs=100.0)
    assert w100.x.shape == w500.x.shape
    with pytest.raises(DataError, match=r"record records100/.* unknown lead 'aVQ'"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        read(ptbxl_card(tmp_path, ptbxl_sample, channel="aVQ"))
    with pytest.raises(DataError, match=r"ptbxl_database.csv not found"):
        read(ptbxl_card(tmp_path, tmp_path))


# --------------------------------------------------------------------------- corpus cards
def test_a_corpus_card_in_load_corpus(tmp_path, ptbxl_sample):
    card = write_card(tmp_path / "corpus.yaml", kind="corpus", format="wfdb",
                      root=str(ptbxl_sample / "records100"), channels=["II", "V5"],
                      window_s=2.0, stride_s=2.0)
    train, val = corpora.load_corpus(str(card), corpora.DataConfig(fs=100.0, wesad_root="x",
                                                                  fragment_root="y"))
    assert train.x.shape[1:] == (1, 200) and set(train.domains) == {"II", "V5"}
    n_records = len(pd.read_csv(ptbxl_sample / "ptbxl_database.csv"))
    assert len(train) + len(val) == n_records * 5 * 2 and (train.y == -1).all()
    assert not set(train.groups) & set(val.groups)
    assert np.allclose(train.x.std(-1), 1, atol=1e-3)
    both = cards.load_corpus_card(cards.read_card(card), 100.0, channels=["V5"], fraction=0.4)
    assert set(both.domains) == {"V5"} and len(both) == n_records * 2
