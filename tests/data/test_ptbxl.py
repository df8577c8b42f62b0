"""ecgnb/data/ptbxl.py: the PTB-XL benchmark's tasks, multi-label targets and 12-lead windows on a
tiny PTB-XL-layout folder, and the embedded sample (its single-label task as before, its 12-lead
multi-label card)."""
import hashlib
import warnings

import numpy as np
import pandas as pd
import pytest
import wfdb
import yaml

from ecgnb.config import DataWarning
from ecgnb.data import cards
from ecgnb.data.ptbxl import LEADS
from ecgnb.data.windows import DataError

# code: diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass (as scp_statements.csv)
STATEMENTS = {"NORM": (1, 0, 0, "NORM", "NORM"), "IMI": (1, 0, 0, "MI", "IMI"),
              "ASMI": (1, 0, 0, "MI", "AMI"), "NDT": (1, 1, 0, "STTC", "STTC"),
              "LVH": (1, 0, 0, "HYP", "LVH"), "CLBBB": (1, 0, 0, "CD", "CLBBB"),
              "SR": (0, 0, 1, "", ""), "AFIB": (0, 0, 1, "", ""), "STACH": (0, 0, 1, "", ""),
              "LVOLT": (0, 1, 0, "", "")}
# Six records of four patients, repeated in fold 1 (train), 9 (validation) and 10 (test).
PATTERN = [(0, {"NORM": 100.0, "SR": 0.0}), (1, {"IMI": 100.0, "NDT": 50.0, "SR": 0.0}),
           (1, {"ASMI": 80.0, "AFIB": 0.0}),
           (2, {"LVH": 100.0, "CLBBB": 100.0, "LVOLT": 0.0, "STACH": 0.0}),
           (3, {"NDT": 100.0, "SR": 0.0}), (3, {"SR": 0.0})]
FOLDS = (1, 9, 10)


def write_ptbxl(root, leads=LEADS, lacking: int | None = None):
    """A PTB-XL-layout folder of 18 10-s 12-lead records at 100 Hz; lead j of record i is
    ``(j + 1) * sin(2 pi t) + i``; record ``lacking`` (an ecg_id) has no V6."""
    rows = []
    t = np.arange(1000) / 100.0
    for k, fold in enumerate(FOLDS):
        for patient, codes in PATTERN:
            ecg_id = len(rows) + 1
            name = f"records100/00000/{ecg_id:05d}_lr"
            x = np.sin(2 * np.pi * t)[:, None] * np.arange(1, 13) + ecg_id
            names = list(leads)
            if ecg_id == lacking:
                x, names = x[:, :11], names[:11]
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            wfdb.wrsamp(name.rsplit("/", 1)[1], fs=100, units=["mV"] * len(names),
                        sig_name=names, p_signal=x, fmt=["16"] * len(names),
                        write_dir=str((root / name).parent))
            rows.append({"ecg_id": ecg_id, "patient_id": float(100 * k + patient),
                         "scp_codes": repr(codes), "strat_fold": fold, "filename_lr": name,
                         "filename_hr": name.replace("100", "500").replace("_lr", "_hr")})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    pd.DataFrame({code: {"description": code, "diagnostic": diag or np.nan,
                         "form": form or np.nan, "rhythm": rhythm or np.nan,
                         "diagnostic_class": cls or np.nan, "diagnostic_subclass": sub or np.nan}
                  for code, (diag, form, rhythm, cls, sub) in STATEMENTS.items()}).T.to_csv(
        root / "scp_statements.csv")
    return root


@pytest.fixture
def ptbxl_tiny(tmp_path):
    return write_ptbxl(tmp_path / "ptbxl")


def load(tmp_path, root, fs=100.0, **keys):
    spec = {"kind": "target", "format": "ptbxl", "root": str(root), "sampling": 100,
            "window_s": 10.0, **keys}
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return cards.load_target(cards.read_card(path, kind="target"), fs)


def label_sets(windows):
    return [{windows.classes[k] for k in np.flatnonzero(row)} for row in windows.y]


# --------------------------------------------------------------------------- the tasks
@pytest.mark.parametrize("task, classes, first_six", [
    ("superdiagnostic", ("NORM", "MI", "STTC", "CD", "HYP"),
     [{"NORM"}, {"MI", "STTC"}, {"MI"}, {"CD", "HYP"}, {"STTC"}]),
    ("subdiagnostic", ("AMI", "CLBBB", "IMI", "LVH", "NORM", "STTC"),
     [{"NORM"}, {"IMI", "STTC"}, {"AMI"}, {"CLBBB", "LVH"}, {"STTC"}]),
    ("diagnostic", ("ASMI", "CLBBB", "IMI", "LVH", "NDT", "NORM"),
     [{"NORM"}, {"IMI", "NDT"}, {"ASMI"}, {"CLBBB", "LVH"}, {"NDT"}]),
    ("form", ("LVOLT", "NDT"), [{"NDT"}, {"LVOLT"}, {"NDT"}]),
    ("rhythm", ("AFIB", "SR", "STACH"), [{"SR"}, {"SR"}, {"AFIB"}, {"STACH"}, {"SR"}, {"SR"}]),
    ("all", tuple(sorted(STATEMENTS)), [set(codes) for _, codes in PATTERN]),
])
def test_each_task_s_multilabel_indicator_matrix(tmp_path, ptbxl_tiny, task, classes, first_six):
    windows, given = load(tmp_path, ptbxl_tiny, task=task, multilabel=True)
    assert windows.is_multilabel and windows.y.dtype == np.int8 and windows.classes == classes
    assert windows.y.shape == (3 * len(first_six), len(classes))
    assert label_sets(windows) == first_six * 3  # the pattern, once per fold
    assert windows.x.shape[1:] == (1, 1000)  # channel II of the whole 10-s record at 100 Hz
    for split, fold in (("train", 0), ("val", 1), ("test", 2)):  # patient 100 k + p: fold k
        assert {int(g) // 100 for g in windows.groups[given[split]]} == {fold}
    for split, idx in given.items():
        assert windows.y[idx].any(axis=0).all(), split


def test_a_single_label_task_keeps_the_records_with_one_class(tmp_path, ptbxl_tiny):
    windows, _ = load(tmp_path, ptbxl_tiny)
    assert not windows.is_multilabel and windows.classes == ("NORM", "MI", "STTC")
    assert windows.y.tolist() == [0, 1, 2] * 3
    rhythm, _ = load(tmp_path, ptbxl_tiny, task="rhythm")  # one rhythm per record: all kept
    assert [rhythm.classes[k] for k in rhythm.y[:6]] == ["SR", "SR", "AFIB", "STACH", "SR", "SR"]
    with pytest.warns(DataWarning, match=r"task superdiagnostic keeps 15 of 18 records, dropping "
                                         r"3 with no class of the task"):
        cards.load_target(cards.read_card(_card(tmp_path, ptbxl_tiny, multilabel=True)), 100.0)


def _card(tmp_path, root, **keys):
    spec = {"kind": "target", "format": "ptbxl", "root": str(root), **keys}
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_min_records_keeps_the_classes_held_by_enough_records(tmp_path, ptbxl_tiny):
    windows, _ = load(tmp_path, ptbxl_tiny, task="all", multilabel=True, min_records=4)
    assert windows.classes == ("NDT", "SR")  # 6 and 12 records; every other code 3
    assert label_sets(windows) == [{"SR"}, {"NDT", "SR"}, {"NDT", "SR"}, {"SR"}] * 3
    with pytest.raises(DataError, match=r"card .*card.yaml: task form: no class is held by "
                                        r"min_records 7 or more of the 18 records \(the most, "
                                        r"6, by NDT\)"):
        load(tmp_path, ptbxl_tiny, task="form", min_records=7)


# --------------------------------------------------------------------------- channels
def test_channels_give_leads_in_the_card_s_order(tmp_path, ptbxl_tiny):
    windows, _ = load(tmp_path, ptbxl_tiny, channels=["v1", "II", 0])
    assert windows.x.shape == (9, 3, 1000) and windows.leads == ("V1", "II", "I")
    amplitude = windows.x[0].max(-1) - windows.x[0].min(-1)  # lead j: (j + 1) sin
    np.testing.assert_allclose(amplitude, [2 * 7, 2 * 2, 2 * 1], rtol=0.01)
    every, _ = load(tmp_path, ptbxl_tiny, channels="all", multilabel=True)
    assert every.x.shape == (15, 12, 1000) and every.leads == LEADS
    np.testing.assert_allclose(every.x[0, :, 0], np.full(12, 1.0), atol=1e-3)  # record 1 at t=0
    single, _ = load(tmp_path, ptbxl_tiny)
    assert single.x.shape == (9, 1, 1000) and single.leads == ()  # channel II, as ever


def test_channels_at_another_rate_and_length(tmp_path, ptbxl_tiny):
    windows, _ = load(tmp_path, ptbxl_tiny, fs=50.0, channels=["I", "V6"], window_s=2.0)
    assert windows.x.shape == (9, 2, 100)


@pytest.mark.parametrize("keys, match", [
    ({"channels": ["II", "V7"]}, r"channels: unknown lead 'V7'; PTB-XL's leads are \['I', "),
    ({"channels": [12]}, r"channels: unknown lead 12"),
    ({"channels": ["all", "II"]}, r"channels: 'all' stands alone"),
    ({"channels": ["II", "ii"]}, r"channels: lead\(s\) \['ii'\] listed twice"),
    ({"channels": [True]}, r"channels: True is neither a lead name nor an index"),
    ({"channels": ["II"], "channel": "II"}, r"give channel \(one lead\) or channels"),
    ({"task": "rhythms"}, r"task must be one of \['superdiagnostic', 'subdiagnostic', "),
    ({"multilabel": "yes"}, r"multilabel must be true or false, got 'yes'"),
    ({"min_records": 0}, r"min_records must be a whole number >= 1, got 0"),
])
def test_card_keys_are_checked_when_read(tmp_path, keys, match):
    with pytest.raises(DataError, match=r"card .*card.yaml: " + match) as error:
        cards.read_card(_card(tmp_path, tmp_path, **keys))
    assert "\n" not in str(error.value)


def test_a_lead_a_record_lacks_names_the_record(tmp_path):
    root = write_ptbxl(tmp_path / "ptbxl", lacking=3)
    with pytest.raises(DataError, match=r"card .*: record records100/00000/00003_lr: unknown "
                                        r"lead 'V6' \(leads: \['I', 'II', .*'V5'\]\)"):
        load(tmp_path, root, channels=["II", "V6"], multilabel=True)
    with pytest.raises(DataError, match=r"card .*: record records100/00000/00003_lr has leads "
                                        r"\[.*'V5'\] where record records100/00000/00001_lr has "
                                        r"\[.*'V6'\]: channels \['all'\] need the same leads"):
        load(tmp_path, root, channels="all", multilabel=True)


def test_a_task_without_its_statement_columns_is_an_error(tmp_path, ptbxl_tiny):
    statements = pd.read_csv(ptbxl_tiny / "scp_statements.csv", index_col=0)
    statements.drop(columns=["rhythm"]).to_csv(ptbxl_tiny / "scp_statements.csv")
    with pytest.raises(DataError, match=r"scp_statements.csv: columns rhythm needed \(task "
                                        r"rhythm\)"):
        load(tmp_path, ptbxl_tiny, task="rhythm")


# --------------------------------------------------------------------------- the embedded sample
def digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    meta = f"{a.dtype}{a.shape}".encode()
    return hashlib.sha256(a.tobytes() + meta).hexdigest()[:16]


# The single-label windows of embedded-ptbxl.yaml at fs 100 (x, y, groups), as they were before
# the multi-label patients joined the sample: the single-label task must not see them.
SINGLE_LABEL_DIGESTS = ("0982e01e67c165fa", "45dd70ffb0f6cd4f", "9ef44b866ea6b2d5")


def _embedded(ptbxl_sample, name, **keys):
    import dataclasses

    card = cards.read_card(f"params/datasets/{name}.yaml", kind="target")
    card = dataclasses.replace(card, embedded="", root=str(ptbxl_sample), **keys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return cards.load_target(card, 100.0)


def test_the_embedded_single_label_task_is_byte_identical(ptbxl_sample):
    windows, given = _embedded(ptbxl_sample, "embedded-ptbxl")
    assert (digest(windows.x), digest(windows.y), digest(windows.groups)) == SINGLE_LABEL_DIGESTS
    assert windows.x.shape == (152, 1, 200) and [len(v) for v in given.values()] == [101, 29, 22]


def test_the_embedded_12_lead_multilabel_card(ptbxl_sample):
    windows, given = _embedded(ptbxl_sample, "embedded-ptbxl-12lead")
    db = pd.read_csv(ptbxl_sample / "ptbxl_database.csv")
    assert windows.x.shape == (len(db), 12, 1000)  # every record has a superclass
    assert windows.classes == ("NORM", "MI", "STTC", "CD", "HYP") and windows.leads == LEADS
    n_classes = windows.y.sum(1)
    assert (n_classes >= 1).all() and (n_classes >= 2).sum() >= 40 and (n_classes == 3).any()
    for split, idx in given.items():  # every superclass in train, validation and test
        assert (windows.y[idx].sum(0) >= 2).all(), split
    seen = [set(windows.groups[v]) for v in given.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


@pytest.mark.slow
def test_the_multilabel_patients_leave_the_rest_of_the_sample_as_it_was(tmp_path, ptbxl_sample,
                                                                        monkeypatch):
    from ecgnb.data import simulate_ptbxl

    monkeypatch.setattr(simulate_ptbxl, "COMBINATIONS", ())
    alone = simulate_ptbxl.make_ptbxl(tmp_path / "alone", seed=0)
    db = pd.read_csv(alone / "ptbxl_database.csv")
    full = pd.read_csv(ptbxl_sample / "ptbxl_database.csv")
    pd.testing.assert_frame_equal(full.iloc[:len(db)], db)
    for name in db["filename_lr"].tolist() + db["filename_hr"].tolist():
        for suffix in (".hea", ".dat"):
            assert (alone / f"{name}{suffix}").read_bytes() == \
                (ptbxl_sample / f"{name}{suffix}").read_bytes()
    assert set(full["patient_id"].iloc[len(db):]).isdisjoint(db["patient_id"])


def test_a_corpus_card_reads_every_lead_as_its_own_series(tmp_path, ptbxl_tiny):
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump({"kind": "corpus", "format": "wfdb", "channels": "all",
                                    "root": str(ptbxl_tiny / "records100"), "window_s": 2.0}))
    windows = cards.load_corpus_card(cards.read_card(path, kind="corpus"), 100.0)
    assert windows.x.shape == (18 * 5 * 12, 1, 200) and set(windows.domains) == set(LEADS)
    assert (windows.y == -1).all() and len(set(windows.groups)) == 18
