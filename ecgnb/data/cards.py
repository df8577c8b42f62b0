"""Dataset cards: small YAML files that describe a labelled target task or an unlabelled
pretraining corpus (docs/datasets.md).

A card names its ``kind`` (``target`` or ``corpus``), its ``format`` and where the data are
(``root``, with ``~`` and ``${VARIABLE}`` expanded when the data are read; or ``embedded``, the
embedded sample of a layout, generated from ``data_seed``, with ``root`` then a folder inside it). :func:`read_card` checks the keys and
values and returns a :class:`Card`; :func:`load_target` and :func:`load_corpus_card` read its data
as :class:`~ecgnb.data.windows.Windows` at the workbook's common ``fs``. Every problem is a
:class:`~ecgnb.data.windows.DataError` whose message starts with the card's path.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import yaml

from ecgnb import provenance
from ecgnb.data import ptbxl, records
from ecgnb.data.formats import load_fragment
from ecgnb.data.windows import DataError, Windows
from ecgnb.runs import PROJECT_ROOT, data_root

KINDS = ("target", "corpus")
FORMATS = {"target": ("wfdb", "npz", "ptbxl", "fragment"), "corpus": ("wfdb", "npz")}
# Embedded samples and the formats that read them (both are WFDB trees).
EMBEDDED = {"fragment": ("fragment", "wfdb"), "ptbxl": ("ptbxl", "wfdb")}
LONG = ("crop_center", "crop_start", "windows")
SHORT = ("pad", "drop")
TASKS = ptbxl.TASKS
SAMPLINGS = (100, 500)
ALL_LEADS = "all"  # channels: all, every lead of the record
COMMON_KEYS = ("kind", "format", "root", "embedded", "description")
# The keys each (kind, format) takes besides COMMON_KEYS.
KEYS = {("target", "wfdb"): ("labels", "channel", "channels", "multilabel", "window_s", "fs",
                             "classes", "long", "short"),
        ("target", "npz"): ("labels", "channel", "channels", "multilabel", "window_s", "fs",
                            "classes", "long", "short"),
        ("target", "ptbxl"): ("task", "channel", "channels", "multilabel", "min_records",
                              "sampling", "window_s", "long"),
        ("target", "fragment"): (),
        ("corpus", "wfdb"): ("channels", "fs", "window_s", "stride_s"),
        ("corpus", "npz"): ("channels", "fs", "window_s", "stride_s")}
CARD_SUFFIXES = (".yaml", ".yml")


@dataclasses.dataclass(frozen=True)
class Card:
    """One dataset card; ``path`` is the file it came from (named in every error)."""

    path: str
    kind: str
    format: str
    root: str = ""
    embedded: str = ""
    description: str = ""
    labels: str = "labels.csv"  # wfdb/npz targets: CSV under root (record,label,group[,split])
    channel: str | int = 0  # target: lead name or index (ptbxl: II); x [N, 1, T]
    # Lead names or indices, or ("all",): a target's C leads (x [N, C, T]); a corpus's leads,
    # each its own univariate row. None: the target's `channel`, the corpus's lead 0.
    channels: tuple | None = None
    multilabel: bool = False  # target: every class of a record (y an [N, K] indicator matrix)
    window_s: float = 2.0  # the length of one example (the pretraining windows': 2 s)
    stride_s: float | None = None  # corpus: between window starts (None: window_s)
    fs: float | None = None  # for files that do not state their rate; accepts mixed rates
    classes: tuple[str, ...] = ()  # the class order (empty: sorted labels)
    long: str = "crop_center"  # a record longer than window_s: crop_center, crop_start, windows
    short: str = "pad"  # a record shorter than window_s: pad (edge values), drop
    task: str = "superdiagnostic"  # ptbxl: superdiagnostic, subdiagnostic, diagnostic, ...
    min_records: int = 1  # ptbxl: a class of the task holds at least this many records
    sampling: int = 100  # ptbxl: records100 or records500

    @property
    def name(self) -> str:
        """The card's file stem (``params/datasets/ptbxl.yaml`` -> ``ptbxl``)."""
        return Path(self.path).stem

    @property
    def leads(self) -> tuple:
        """The leads read from each record, in order (``("all",)``: every lead it has)."""
        if self.channels is not None:
            return self.channels
        return (self.channel,) if self.kind == "target" else (0,)

    def error(self, problem: str) -> DataError:
        return DataError(f"card {self.path}: {problem}")

    def root_path(self, data_seed: int = 0, small: bool = False) -> Path:
        """The data folder: ``root`` expanded, or the embedded sample (generated on first use)."""
        if self.embedded:
            root = _embedded_root(self.embedded, data_seed, small) / self.root
            if not root.is_dir():
                raise self.error(f"root {self.root} is not a folder of the embedded sample "
                                 f"{root.parent}")
            provenance.note_read(root)
            return root
        expanded = os.path.expanduser(os.path.expandvars(self.root))
        if "$" in expanded:
            raise self.error(f"root '{self.root}' names an unset environment variable; set it "
                             "to the dataset's folder")
        root = Path(expanded)
        if not root.is_dir():
            raise self.error(f"root {root} does not exist or is not a folder")
        provenance.note_read(root)
        return root


def is_card(name: str) -> bool:
    """Whether a corpus or target name is a card path (``*.yaml``) rather than a built-in name."""
    return str(name).endswith(CARD_SUFFIXES)


def card_path(path) -> Path:
    """``path`` with ``~`` and variables expanded; a relative path that does not exist from the
    current folder is taken from the project folder (as notebooks run there)."""
    found = Path(os.path.expanduser(os.path.expandvars(str(path))))
    if not found.is_absolute() and not found.is_file() and (PROJECT_ROOT / found).is_file():
        return PROJECT_ROOT / found
    return found


def read_card(path, kind: str | None = None) -> Card:
    """Parse and check the card at ``path`` (``kind``: the kind it must be)."""
    where = Path(path)
    file = card_path(path)
    if not file.is_file():
        raise DataError(f"card {where}: no such file")
    provenance.note_read(file)
    try:
        spec = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"card {where}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise DataError(f"card {where}: a card is a mapping of keys (kind, format, root, ...)")
    card_kind, card_format = spec.get("kind"), spec.get("format")
    if card_kind not in KINDS:
        raise DataError(f"card {where}: kind must be one of {list(KINDS)}, got {card_kind!r}")
    if kind is not None and card_kind != kind:
        raise DataError(f"card {where}: a {card_kind} card where a {kind} card is needed")
    if card_format not in FORMATS[card_kind]:
        raise DataError(f"card {where}: format of a {card_kind} card must be one of "
                        f"{list(FORMATS[card_kind])}, got {card_format!r}")
    known = COMMON_KEYS + KEYS[(card_kind, card_format)]
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise DataError(f"card {where}: unknown key(s) {unknown} for a {card_kind} card of "
                        f"format {card_format}; known: {sorted(known)}")
    values = {k: v for k, v in spec.items() if v is not None}
    if "channel" in values and "channels" in values:
        raise DataError(f"card {where}: give channel (one lead) or channels (a list of leads, "
                        "or all), not both")
    for key in ("classes", "channels"):
        if key in values:
            values[key] = tuple(values[key]) if isinstance(values[key], list) else (values[key],)
    if card_format == "ptbxl":
        values.setdefault("channel", "II")
    return _checked(Card(path=str(where), **values))


def _checked(card: Card) -> Card:
    if not card.root and not card.embedded:
        raise card.error("root (a folder) or embedded (a sample's name) is needed")
    if card.embedded and card.format not in EMBEDDED.get(card.embedded, ()):
        raise card.error(f"embedded: {card.embedded!r} is not a sample of format {card.format} "
                         f"(embedded samples: {EMBEDDED})")
    for key in ("window_s", "stride_s", "fs"):
        value = getattr(card, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value <= 0):
            raise card.error(f"{key} must be a number > 0, got {value!r}")
    for key, allowed in (("long", LONG), ("short", SHORT), ("task", TASKS),
                         ("sampling", SAMPLINGS)):
        if getattr(card, key) not in allowed:
            raise card.error(f"{key} must be one of {list(allowed)}, got {getattr(card, key)!r}")
    if len(set(card.classes)) != len(card.classes):
        raise card.error(f"classes are listed twice: {list(card.classes)}")
    if not isinstance(card.multilabel, bool):
        raise card.error(f"multilabel must be true or false, got {card.multilabel!r}")
    if isinstance(card.min_records, bool) or not isinstance(card.min_records, int) \
            or card.min_records < 1:
        raise card.error(f"min_records must be a whole number >= 1, got {card.min_records!r}")
    _check_channels(card)
    return card


def _check_channels(card: Card) -> None:
    """``channels``: names or indices, each once, or ``all`` alone; PTB-XL's names are known."""
    if card.channels is None:
        return
    if not card.channels:
        raise card.error("channels: name at least one lead")
    odd = [c for c in card.channels if isinstance(c, bool) or not isinstance(c, (str, int))]
    if odd:
        raise card.error(f"channels: {odd[0]!r} is neither a lead name nor an index")
    folded = [str(c).casefold() for c in card.channels]
    if ALL_LEADS in folded and len(folded) > 1:
        raise card.error(f"channels: '{ALL_LEADS}' stands alone (every lead of the record), got "
                         f"{list(card.channels)}")
    twice = sorted({c for c in folded if folded.count(c) > 1})
    if twice:
        raise card.error(f"channels: lead(s) {twice} listed twice")
    if card.format == "ptbxl" and folded != [ALL_LEADS]:
        known = [lead.casefold() for lead in ptbxl.LEADS]
        unknown = [c for c in card.channels if (str(c).casefold() not in known if
                                                isinstance(c, str) else not 0 <= c < len(known))]
        if unknown:
            raise card.error(f"channels: unknown lead {unknown[0]!r}; PTB-XL's leads are "
                             f"{list(ptbxl.LEADS)} (or indices 0-11, or all)")


def _embedded_root(name: str, data_seed: int, small: bool) -> Path:
    if name == "ptbxl":
        from ecgnb.data.simulate_ptbxl import embedded_ptbxl
        return embedded_ptbxl(data_root(), seed=data_seed)
    from ecgnb.data.simulate import embedded_data
    return embedded_data(data_root(), seed=data_seed, small=small)["fragment"]


# --------------------------------------------------------------------------- reading
def load_target(card: Card, fs: float, data_seed: int = 0,
                small: bool = False) -> tuple[Windows, dict[str, np.ndarray] | None]:
    """The labelled windows of a target card at ``fs`` Hz (raw: not normalised), and the splits
    the data give (a ``split`` column, PTB-XL's folds) or None (the workbook splits them)."""
    root = card.root_path(data_seed, small)
    if card.format == "fragment":
        try:
            return load_fragment(root, fs=fs), None
        except DataError as exc:
            raise card.error(str(exc)) from None
    if card.format == "ptbxl":
        windows, given = ptbxl.load_ptbxl(card, root, fs)
    else:
        windows, given = records.load_labelled(card, root, fs)
    check_task(card, windows, given)
    return windows, given


def check_task(card: Card, windows: Windows, given: dict[str, np.ndarray] | None) -> None:
    """At least two classes; with given splits, every class in each split and no group in two;
    without, every class in at least :data:`MIN_GROUPS` groups (one per split). A multi-label
    window counts for each of its classes."""
    indicator = windows.indicator() == 1
    present = np.flatnonzero(indicator.any(axis=0))
    if len(present) < 2:
        raise card.error(f"{len(present)} class ({list(windows.classes)}): a task needs at "
                         "least 2 classes")
    if given is None:
        for k, cls in enumerate(windows.classes):
            n_groups = len(set(windows.groups[indicator[:, k]]))
            if n_groups < MIN_GROUPS:
                raise card.error(f"class '{cls}' has {n_groups} group(s) but the grouped train/"
                                 f"val/test split needs at least {MIN_GROUPS}: add records of "
                                 "other patients, merge or drop the class")
        return
    seen: dict[str, str] = {}
    for name, idx in given.items():
        missing = [c for k, c in enumerate(windows.classes) if not indicator[idx, k].any()]
        if missing:
            raise card.error(f"split '{name}' has no record of class(es) {missing}: every split "
                             "scored needs every class")
        for group in np.unique(windows.groups[idx]):
            if seen.setdefault(str(group), name) != name:
                raise card.error(f"group {group} is in both the '{seen[str(group)]}' and the "
                                 f"'{name}' split: the split column must keep a group together")


MIN_GROUPS = 3  # train, val and test each need a group of every class


def load_corpus_card(card: Card, fs: float, channels=None, fraction: float = 1.0,
                     seed: int = 0, data_seed: int = 0) -> Windows:
    """The unlabelled windows ``[N, 1, window_s*fs]`` of a corpus card, each channel its own row
    (``domains`` = channel, ``groups`` = record), z-scored per window; ``channels`` overrides the
    card's (``all``: every lead of each record); ``fraction`` keeps a seeded share of each
    record's windows; ``data_seed``: of an embedded sample."""
    if channels:
        card = dataclasses.replace(card, channels=tuple(channels))
    return records.load_unlabelled(card, card.root_path(data_seed), fs, fraction, seed)
