"""The embedded PTB-XL sample: 12-lead, 10-s records at 500 and 100 Hz in PTB-XL's download layout.

``make_ptbxl`` writes ``ptbxl_database.csv`` (ecg_id, patient_id, age, sex, scp_codes as a Python
dict literal, strat_fold, filename_lr, filename_hr), ``scp_statements.csv`` (code index, diagnostic,
diagnostic_class, ...), ``records500/<thousands>/<ecg_id>_hr.hea|.dat`` and the same records
decimated to 100 Hz in ``records100/<thousands>/<ecg_id>_lr`` (leads I, II, III, AVR, AVL, AVF,
V1-V6, mV): the layout the ``ptbxl`` card format reads.

Beats are sums of Gaussian waves (:mod:`ecgnb.data.rhythms`). Leads I, II and V1-V6 are drawn; III,
AVR, AVL and AVF follow from I and II (Einthoven and Goldberger). The five diagnostic superclasses
change the morphology in simple, physiologically motivated ways:

- NORM: normal axis, R-wave progression across V1-V6, upright T;
- MI: deep, wide Q waves, small R, ST elevation and T inversion in one territory (inferior: II, so
  III and AVF; anteroseptal: V1-V3);
- STTC: ST depression and inverted T in the inferolateral leads (I, II, V4-V6);
- CD: a wide QRS (bundle-branch-like: a deep broad S in V1-V3 and a notched broad R laterally for
  LBBB, a late R' in V1 and a broad S laterally for RBBB) with discordant T;
- HYP: high voltage (tall R in I, II and V4-V6, deep S in V1-V2) with strain (flat or inverted T).

Every patient of the first 60 has one class; a few extra records carry two classes' codes (a
single-label task drops them). Folds 1-10 are drawn per patient, two patients of every class in
fold 9 and two in fold 10. Three in four MI records are inferior (seen in lead II), one in four
anteroseptal.

Then, from a random stream of their own (the records above are the same with or without them),
come the multi-label patients: each has one of :data:`COMBINATIONS` of statements of two or three
superclasses in each of its 1-2 records (so a single-label task drops every one of them), with a
rhythm (sinus rhythm, sinus bradycardia or tachycardia) and, for some, low QRS voltage (a form
statement). Each combination has a patient in fold 9, one in fold 10 and two in folds 1-8, so every
class of every task (superclasses, subclasses, statements, forms, rhythms) is in every split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from ecgnb.data.signals import decimate
from ecgnb.data.simulate import GENERATOR_FILES, generate_once, generator_digest
from ecgnb.data.rhythms import AMP, OFFSET, Q, R, S, SIGMA, T1, T2, beat_times, draw_patient, \
    nuisance, render_beats

GENERATOR_VERSION = "2"  # bump when the generated sample changes
LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
DRAWN = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")  # the limb leads follow from I and II
FS = 500  # drawn and written at 500 Hz (records500), decimated to 100 Hz (records100)
FS_LR = 100
DURATION_S = 10.0
ADC_GAIN = 1000.0  # adu per mV, as PTB-XL's headers
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
# code: (description, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass)
STATEMENTS = {
    "NORM": ("normal ECG", True, False, False, "NORM", "NORM"),
    "IMI": ("inferior myocardial infarction", True, False, False, "MI", "IMI"),
    "ASMI": ("anteroseptal myocardial infarction", True, False, False, "MI", "AMI"),
    "NDT": ("non-diagnostic T abnormalities", True, True, False, "STTC", "STTC"),
    "ISC_": ("non-specific ischemic", True, False, False, "STTC", "ISC_"),
    "CLBBB": ("complete left bundle branch block", True, False, False, "CD", "CLBBB"),
    "CRBBB": ("complete right bundle branch block", True, False, False, "CD", "CRBBB"),
    "LVH": ("left ventricular hypertrophy", True, False, False, "HYP", "LVH"),
    "SR": ("sinus rhythm", False, False, True, "", ""),
    "SBRAD": ("sinus bradycardia", False, False, True, "", ""),
    "STACH": ("sinus tachycardia", False, False, True, "", ""),
    "LVOLT": ("low QRS voltages in the frontal and horizontal leads", False, True, False, "", ""),
}
CODES = {c: [k for k, s in STATEMENTS.items() if s[4] == c] for c in SUPERCLASSES}
CODE_WEIGHTS = {"IMI": 3.0}  # relative to 1 for the other codes of a class
# Normal wave amplitudes (mV) per drawn lead: P, Q, R, S, T.
NORMAL = {"I": (0.08, -0.05, 0.6, -0.1, 0.2), "II": (0.12, -0.05, 1.0, -0.2, 0.3),
          "V1": (0.05, 0.0, 0.2, -0.9, 0.05), "V2": (0.06, 0.0, 0.4, -1.2, 0.4),
          "V3": (0.06, -0.02, 0.7, -0.8, 0.45), "V4": (0.06, -0.05, 1.2, -0.4, 0.4),
          "V5": (0.06, -0.08, 1.1, -0.2, 0.3), "V6": (0.06, -0.08, 0.8, -0.1, 0.25)}
# The multi-label patients: (diagnostic statements of two or three superclasses, rhythm, forms).
COMBINATIONS = (
    (("IMI", "NDT"), "SR", ()),               # MI + STTC
    (("ASMI", "CRBBB"), "SBRAD", ()),         # MI + CD
    (("LVH", "ISC_"), "STACH", ()),           # HYP + STTC
    (("CLBBB", "LVH"), "SR", ()),             # CD + HYP
    (("IMI", "LVH", "ISC_"), "SBRAD", ()),    # MI + HYP + STTC
    (("ASMI", "CLBBB", "NDT"), "STACH", ()),  # MI + CD + STTC
    (("CRBBB", "ISC_"), "SR", ("LVOLT",)),    # CD + STTC
    (("IMI", "CRBBB"), "SBRAD", ("LVOLT",)),  # MI + CD
)
MULTILABEL_FOLDS = (9, 10, 0, 0)  # per combination; 0: one of folds 1-8
RATES_BPM = {"SBRAD": (42.0, 54.0), "STACH": (105.0, 130.0)}  # else the patient's own rate


def make_ptbxl(root, seed: int = 0, n_patients: int = 60) -> Path:
    """Write the sample under ``root``: ``n_patients`` single-class patients (about 2.5 records
    each), then 4 multi-label patients per combination (1-2 records each); returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng([seed, 7])
    rows = []
    patients = _patients(n_patients, rng)
    for patient_id, cls, fold in patients:
        shape = _patient_shape(rng)
        n_records = int(rng.integers(1, 5))
        extra = [str(rng.choice([c for c in SUPERCLASSES if c not in (cls, "NORM")]))] \
            if rng.random() < 0.2 and cls != "NORM" else []
        for classes in [[cls]] * n_records + [[cls] + extra] * bool(extra):
            codes = {_draw_code(c, rng): float(rng.choice([50.0, 80.0, 100.0])) for c in classes}
            codes["SR"] = 0.0
            _add_record(root, rows, _record(shape, codes, rng), patient_id, codes, fold, rng)
    rng = np.random.default_rng([seed, 8])  # the multi-label patients' own stream
    for patient_id, (diagnostic, rhythm, forms), fold in _multilabel_patients(
            [p for p, _, _ in patients], rng):
        shape = _patient_shape(rng)
        if rhythm in RATES_BPM:
            shape["rate_bpm"] = rng.uniform(*RATES_BPM[rhythm])
        for _ in range(int(rng.integers(1, 3))):
            codes = {c: float(rng.choice([50.0, 80.0, 100.0])) for c in diagnostic}
            codes.update({c: 0.0 for c in (rhythm, *forms)})
            _add_record(root, rows, _record(shape, codes, rng), patient_id, codes, fold, rng)
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    _statements().to_csv(root / "scp_statements.csv")
    return root


def _add_record(root: Path, rows: list, x: np.ndarray, patient_id: int, codes: dict, fold: int,
                rng: np.random.Generator) -> None:
    """Write record ``len(rows) + 1`` at 500 and 100 Hz and append its database row."""
    ecg_id = len(rows) + 1
    lr = f"records100/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_lr"
    hr = f"records500/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_hr"
    _write_record(root / hr, x, FS)
    _write_record(root / lr, decimate(x.T, FS // FS_LR).T, FS_LR)
    rows.append({"ecg_id": ecg_id, "patient_id": float(patient_id),
                 "age": float(rng.integers(25, 90)), "sex": int(rng.integers(0, 2)),
                 "scp_codes": repr(codes), "strat_fold": fold, "filename_lr": lr,
                 "filename_hr": hr})


def _multilabel_patients(taken: list[int], rng: np.random.Generator) -> list[tuple]:
    """(patient_id, combination, strat_fold) per multi-label patient: for each combination, one
    patient per entry of :data:`MULTILABEL_FOLDS`; ids other than ``taken``."""
    plan = [(combination, fold or int(rng.integers(1, 9))) for combination in COMBINATIONS
            for fold in MULTILABEL_FOLDS]
    free = np.setdiff1d(np.arange(10_000, 99_999), taken)
    ids = rng.choice(free, size=len(plan), replace=False)
    return [(int(i), combination, fold) for i, (combination, fold) in zip(ids, plan)]


def _draw_code(cls: str, rng: np.random.Generator) -> str:
    weights = np.array([CODE_WEIGHTS.get(c, 1.0) for c in CODES[cls]])
    return str(rng.choice(CODES[cls], p=weights / weights.sum()))


def _patients(n_patients: int, rng: np.random.Generator) -> list[tuple[int, str, int]]:
    """(patient_id, class, strat_fold) per patient: classes in turn; of each class two patients
    in fold 9, two in fold 10, the others in folds 1-8."""
    ids = rng.choice(np.arange(10_000, 99_999), size=n_patients, replace=False)
    classes = [SUPERCLASSES[i % len(SUPERCLASSES)] for i in range(n_patients)]
    folds = np.zeros(n_patients, dtype=int)
    for cls in SUPERCLASSES:
        members = rng.permutation([i for i, c in enumerate(classes) if c == cls])
        for k, i in enumerate(members):
            folds[i] = (9, 9, 10, 10)[k] if k < 4 else int(rng.integers(1, 9))
    return [(int(i), c, int(f)) for i, c, f in zip(ids, classes, folds)]


def _patient_shape(rng: np.random.Generator) -> dict:
    """A patient's morphology: QRS width, wave timing, gain per lead, noise levels."""
    return {"qrs_s": rng.uniform(0.08, 0.1), "t_off": rng.uniform(0.26, 0.32),
            "p_off": rng.uniform(0.14, 0.18), "rate_bpm": rng.uniform(55, 90),
            "gain": {lead: rng.lognormal(0.0, 0.15) for lead in DRAWN},
            "nuisance": draw_patient(0, rng)}


def _templates(shape: dict) -> dict[str, np.ndarray]:
    """Normal (6, 3) beat templates (:mod:`ecgnb.data.rhythms` rows P, Q, R, S, T1, T2)."""
    qrs, t_off, p_off = shape["qrs_s"], shape["t_off"], shape["p_off"]
    out = {}
    for lead, (p, q, r, s, t) in NORMAL.items():
        g = shape["gain"][lead]
        out[lead] = np.array([[g * p, -p_off, 0.025], [g * q, -0.3 * qrs, qrs / 10],
                              [g * r, 0.0, qrs / 7.5], [g * s, 0.3 * qrs, qrs / 9],
                              [g * t, t_off, 0.05], [0.4 * g * t, t_off + 0.05, 0.03]])
    return out


def _record(shape: dict, codes: dict, rng: np.random.Generator) -> np.ndarray:
    """One record ``[n, 12]`` in mV with the morphology of ``codes``' diagnostic statements."""
    templates = _templates(shape)
    for code in codes:
        if code in MORPHOLOGY:
            MORPHOLOGY[code](templates, rng.uniform(0.8, 1.2))
    n = int(DURATION_S * FS)
    t, rr = beat_times(DURATION_S, shape["rate_bpm"] * rng.uniform(0.9, 1.1), rng, jitter=0.02,
                       rsa=0.03)
    drawn = {lead: render_beats(n, FS, templates[lead], t, rr, np.ones(t.size), rng)
             + 0.5 * nuisance(n, FS, shape["nuisance"], rng) for lead in DRAWN}
    i, ii = drawn["I"], drawn["II"]
    limb = {"III": ii - i, "AVR": -(i + ii) / 2, "AVL": i - ii / 2, "AVF": ii - i / 2}
    return np.stack([{**drawn, **limb}[lead] for lead in LEADS], axis=1)


def _infarct(leads):
    def change(tpl: dict, k: float) -> None:
        for lead in leads:
            w = tpl[lead]
            w[Q, AMP] -= k * 0.45 * abs(w[R, AMP]) + 0.1
            w[Q, SIGMA] *= 2.0
            w[R, AMP] *= 0.4
            w[T1] = [k * 0.2, 0.12, 0.06]  # ST elevation
            w[T2] = [-k * 0.25, w[T2, OFFSET] + 0.02, 0.05]  # inverted T
    return change


def _st_t(tpl: dict, k: float) -> None:
    for lead in ("I", "II", "V4", "V5", "V6"):
        w = tpl[lead]
        w[T1, AMP] = -k * 0.7 * abs(w[T1, AMP])
        w[T2] = [-k * 0.12, 0.11, 0.05]  # ST depression


def _bundle_branch(left: bool):
    def change(tpl: dict, k: float) -> None:
        for lead, w in tpl.items():
            w[[Q, R, S], SIGMA] *= 1.8 * k
            w[[Q, R, S], OFFSET] *= 1.8 * k
            if left and lead in ("V1", "V2", "V3"):
                w[R, AMP] *= 0.3
                w[S, AMP] *= 1.5
            if left and lead in ("I", "V5", "V6"):
                w[R, SIGMA] *= 1.4
                w[Q, AMP] = 0.0
            if not left and lead == "V1":
                w[S] = [0.6 * k, 0.08, 0.02]  # R'
            if not left and lead in ("I", "V5", "V6"):
                w[S, AMP] -= 0.3 * k
                w[S, SIGMA] *= 1.6
            qrs = w[R, AMP] + w[S, AMP]
            w[[T1, T2], AMP] = -np.sign(qrs) * np.abs(w[[T1, T2], AMP]) * 1.2  # discordant
    return change


def _hypertrophy(tpl: dict, k: float) -> None:
    for lead in ("I", "II", "V4", "V5", "V6"):
        tpl[lead][R, AMP] *= 2.2 * k
        tpl[lead][[T1, T2], AMP] *= -0.5  # strain
    for lead in ("V1", "V2"):
        tpl[lead][S, AMP] *= 2.2 * k


def _low_voltage(tpl: dict, k: float) -> None:
    for w in tpl.values():
        w[[Q, R, S], AMP] *= 0.35 * k


MORPHOLOGY = {"NORM": lambda tpl, k: None, "IMI": _infarct(("II",)),
              "ASMI": _infarct(("V1", "V2", "V3")), "NDT": _st_t, "ISC_": _st_t,
              "CLBBB": _bundle_branch(left=True), "CRBBB": _bundle_branch(left=False),
              "LVH": _hypertrophy, "LVOLT": _low_voltage}


def _write_record(path: Path, x_mv: np.ndarray, fs: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(x_mv * ADC_GAIN), -32767, 32767).astype(np.int32)
    wfdb.wrsamp(path.name, fs=fs, units=["mV"] * len(LEADS), sig_name=list(LEADS),
                d_signal=digital, fmt=["16"] * len(LEADS), adc_gain=[ADC_GAIN] * len(LEADS),
                baseline=[0] * len(LEADS), write_dir=str(path.parent))


def _statements() -> pd.DataFrame:
    rows = {code: {"description": d, "diagnostic": 1.0 if diag else np.nan,
                   "form": 1.0 if form else np.nan, "rhythm": 1.0 if rhythm else np.nan,
                   "diagnostic_class": cls or np.nan, "diagnostic_subclass": sub or np.nan}
            for code, (d, diag, form, rhythm, cls, sub) in STATEMENTS.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def embedded_ptbxl(cache_dir="data", seed: int = 0) -> Path:
    """Generate (once) and return the sample's folder, ``cache_dir/embedded-ptbxl-v<version>-<code>-
    seed<seed>/``; built in a temporary folder and renamed into place."""
    code = generator_digest(GENERATOR_FILES + ("data/simulate_ptbxl.py",))
    final = Path(cache_dir) / f"embedded-ptbxl-v{GENERATOR_VERSION}-{code}-seed{seed}"

    def write(tmp: Path) -> dict:
        make_ptbxl(tmp, seed=seed)
        return {"generator_version": GENERATOR_VERSION, "seed": seed}
    return generate_once(final, write, "embedded PTB-XL sample")
