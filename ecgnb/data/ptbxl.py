"""PTB-XL as a target card (``format: ptbxl``) on its official download layout.

The root holds ``ptbxl_database.csv`` (ecg_id, patient_id, scp_codes, strat_fold, filename_lr,
filename_hr), ``scp_statements.csv`` (index = SCP code; diagnostic, form, rhythm,
diagnostic_class, diagnostic_subclass) and the WFDB records under ``records100/`` and
``records500/``. The split is the recommended one: ``strat_fold`` 1-8 train, 9 validation, 10
test; the group is the patient.

A record's classes follow the PTB-XL benchmark (Strodthoff et al. 2021): the keys of its
``scp_codes`` (likelihoods ignored) mapped by the card's ``task``:

- ``superdiagnostic``: the diagnostic statements' ``diagnostic_class`` (NORM, MI, STTC, CD, HYP);
- ``subdiagnostic``: the diagnostic statements' ``diagnostic_subclass``;
- ``diagnostic``: the diagnostic statements themselves; ``form``, ``rhythm``: the statements
  flagged ``form`` or ``rhythm``; ``all``: every statement.

A class is kept when at least ``min_records`` records of the database hold it (the benchmark's
``min_samples = 0``: at least one). Single-label cards keep the records with exactly one kept
class; ``multilabel: true`` keeps every record with at least one, with all of them (``y`` an
``[N, K]`` indicator matrix). A warning counts the records left out. Class order: the five
superclasses as above, the codes and subclasses of the other tasks sorted.
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
LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
DATABASE, STATEMENTS = "ptbxl_database.csv", "scp_statements.csv"
DATABASE_COLUMNS = ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr",
                    "filename_hr")
FOLDS = {"train": tuple(range(1, 9)), "val": (9,), "test": (10,)}
# Per task: the statements' flag column that selects its codes (None: every code) and the column
# that names a code's class (None: the code itself).
TASK_COLUMNS = {"superdiagnostic": ("diagnostic", "diagnostic_class"),
                "subdiagnostic": ("diagnostic", "diagnostic_subclass"),
                "diagnostic": ("diagnostic", None), "form": ("form", None),
                "rhythm": ("rhythm", None), "all": (None, None)}
TASKS = tuple(TASK_COLUMNS)


def read_database(card, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The database (its columns checked) and the statements."""
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
    needed = [c for c in TASK_COLUMNS[card.task] if c is not None]
    if not set(needed) <= set(statements.columns):
        raise card.error(f"{paths[STATEMENTS]}: columns {' and '.join(needed)} needed (task "
                         f"{card.task})")
    return db, statements


def code_classes(card, statements: pd.DataFrame) -> dict | None:
    """SCP code -> its class in the card's task (None: every code is its own class)."""
    flag, name = TASK_COLUMNS[card.task]
    if flag is None:
        return None
    chosen = statements[statements[flag] == 1]
    if name is None:
        return {code: code for code in chosen.index}
    return chosen[name].dropna().to_dict()


def label_sets(card, root: Path) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The database with ``classes`` (each record's set of the task's kept classes) and the kept
    classes in order: those held by at least ``min_records`` records."""
    db, statements = read_database(card, root)
    mapping = code_classes(card, statements)
    found = [_classes(card, ecg_id, codes, mapping)
             for ecg_id, codes in zip(db["ecg_id"], db["scp_codes"])]
    counts = pd.Series([c for s in found for c in s], dtype=object).value_counts()
    kept = set(counts[counts >= card.min_records].index)
    if not kept:
        held = f"the most, {counts.iloc[0]}, by {counts.index[0]}" if len(counts) else "none"
        raise card.error(f"task {card.task}: no class is held by min_records "
                         f"{card.min_records} or more of the {len(db)} records ({held})")
    db["classes"] = [s & kept for s in found]
    first = SUPERCLASSES if card.task == "superdiagnostic" else ()
    order = [c for c in first if c in kept] + sorted(kept - set(first))
    return db, tuple(order)


def _classes(card, ecg_id, codes: str, mapping: dict | None) -> frozenset:
    try:
        parsed = ast.literal_eval(codes)
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, dict):
        raise card.error(f"record {ecg_id}: scp_codes {codes!r} is not a dict literal")
    if mapping is None:
        return frozenset(str(c) for c in parsed)
    return frozenset(mapping[c] for c in parsed if c in mapping)


def load_ptbxl(card, root: Path, fs: float) -> tuple[Windows, dict[str, np.ndarray]]:
    """The windows of the card's task and the split given by ``strat_fold``."""
    db, order = label_sets(card, root)
    n_classes = db["classes"].map(len)
    chosen = db[n_classes >= 1] if card.multilabel else db[n_classes == 1]
    if len(chosen) < len(db):
        rule = "no class of the task" if card.multilabel else \
            "no class of the task or with more than one"
        warnings.warn(f"card {card.path}: task {card.task} keeps {len(chosen)} of {len(db)} "
                      f"records, dropping {len(db) - len(chosen)} with {rule}", DataWarning,
                      stacklevel=3)
    column = "filename_lr" if card.sampling == 100 else "filename_hr"
    named, rates = [], {}
    for row in chosen.itertuples(index=False):
        name = str(getattr(row, column))
        header = root / f"{name}.hea"
        if not header.is_file():
            raise card.error(f"record {name} (ecg_id {row.ecg_id}) of {DATABASE} is not on disk "
                             f"under {root}")
        named.append((name, header))
        rates[name] = records.record_rate(card, name, header)
    x, rows, leads = records.read_windows(card, named, rates, fs)
    kept = chosen.iloc[rows]
    if card.multilabel:
        classes = order
        y = records.indicator(kept["classes"].tolist(), classes)
    else:
        held = {next(iter(s)) for s in kept["classes"]}
        classes = tuple(c for c in order if c in held)
        y = np.array([classes.index(next(iter(s))) for s in kept["classes"]], dtype=np.int64)
    groups = np.array([str(int(p)) for p in kept["patient_id"]])
    windows = Windows(x=x, y=y, groups=groups, domains=np.full(len(y), "ECG"), fs=float(fs),
                      classes=classes, leads=leads)
    folds = kept["strat_fold"].to_numpy()
    return windows, {s: np.flatnonzero(np.isin(folds, f)) for s, f in FOLDS.items()}
