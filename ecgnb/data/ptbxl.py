"""PTB-XL as a target card (``format: ptbxl``) on its official download layout.

The root holds ``ptbxl_database.csv`` (ecg_id, patient_id, scp_codes, strat_fold, filename_lr,
filename_hr), ``scp_statements.csv`` (index = SCP code; diagnostic, diagnostic_class) and the WFDB
records under ``records100/`` and ``records500/``. Task ``superdiagnostic``: each record's SCP
codes mapped through the diagnostic statements to their ``diagnostic_class`` (NORM, MI, STTC, CD,
HYP); records with exactly one class are kept, the others dropped (a warning counts them). The
split is the recommended one: ``strat_fold`` 1-8 train, 9 validation, 10 test; the group is the
patient.
"""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ecgnb.config import DataWarning
from ecgnb.data import records
from ecgnb.data.windows import Windows

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
DATABASE, STATEMENTS = "ptbxl_database.csv", "scp_statements.csv"
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr",
                    "filename_hr")
FOLDS = {"train": tuple(range(1, 9)), "val": (9,), "test": (10,)}


def superclasses(card, root: Path) -> pd.DataFrame:
    """The database with ``classes`` (the set of diagnostic superclasses of each record)."""
    paths = {name: root / name for name in (DATABASE, STATEMENTS)}
    for name, path in paths.items():
        if not path.is_file():
            raise card.error(f"{path} not found: a ptbxl root holds {DATABASE}, {STATEMENTS}, "
                             "records100/ and records500/")
    db = pd.read_csv(paths[DATABASE])
    missing = [c for c in DATABASE_COLUMNS if c not in db.columns]
    if missing:
        raise card.error(f"{paths[DATABASE]}: column(s) {missing} missing")
    statements = pd.read_csv(paths[STATEMENTS], index_col=0)
    if not {"diagnostic", "diagnostic_class"} <= set(statements.columns):
        raise card.error(f"{paths[STATEMENTS]}: columns diagnostic and diagnostic_class needed")
    diagnostic = statements[statements["diagnostic"] == 1]["diagnostic_class"].dropna().to_dict()
    db["classes"] = [_classes(card, ecg_id, codes, diagnostic)
                     for ecg_id, codes in zip(db["ecg_id"], db["scp_codes"])]
    return db


def _classes(card, ecg_id, codes: str, diagnostic: dict) -> frozenset:
    try:
        parsed = ast.literal_eval(codes)
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, dict):
        raise card.error(f"record {ecg_id}: scp_codes {codes!r} is not a dict literal")
    return frozenset(diagnostic[c] for c in parsed if c in diagnostic)


def load_ptbxl(card, root: Path, fs: float) -> tuple[Windows, dict[str, np.ndarray]]:
    """The windows of the card's task and the split given by ``strat_fold``."""
    db = superclasses(card, root)
    single = db[db["classes"].map(len) == 1]
    if len(single) < len(db):
        warnings.warn(f"card {card.path}: task {card.task} keeps {len(single)} of {len(db)} "
                      f"records, dropping {len(db) - len(single)} with no diagnostic class or "
                      "with more than one", DataWarning, stacklevel=3)
    column = "filename_lr" if card.sampling == 100 else "filename_hr"
    xs, rows = [], []
    for i, row in enumerate(single.itertuples(index=False)):
        name = str(getattr(row, column))
        header = root / f"{name}.hea"
        if not header.is_file():
            raise card.error(f"record {name} (ecg_id {row.ecg_id}) of {DATABASE} is not on disk "
                             f"under {root}")
        rate = records.record_rate(card, name, header)
        parts = records.cut(card, records.read_lead(card, name, header, card.channel), rate, fs)
        xs += parts
        rows += [i] * len(parts)
    kept = single.iloc[rows]
    present = [c for c in SUPERCLASSES if c in {next(iter(s)) for s in kept["classes"]}]
    y = np.array([present.index(next(iter(s))) for s in kept["classes"]], dtype=np.int64)
    groups = np.array([str(int(p)) for p in kept["patient_id"]])
    windows = Windows(x=np.stack(xs).astype(np.float32)[:, None, :], y=y, groups=groups,
                      domains=np.full(len(y), "ECG"), fs=float(fs), classes=tuple(present))
    folds = kept["strat_fold"].to_numpy()
    return windows, {s: np.flatnonzero(np.isin(folds, f)) for s, f in FOLDS.items()}
