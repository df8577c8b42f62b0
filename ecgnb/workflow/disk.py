"""Room for a sweep: the disk space its runs will take, checked before the first one starts.

Every run to do is estimated from its own parameters in the grid (:func:`run_footprint`): no data
is read and no other grid's runs are looked at. Weights are counted on the networks themselves,
built on the CPU at the run's sizes (backbone and model size, windows of ``window_s x fs``
samples, heads, baselines), at their stored width (float32: 4 bytes) plus torch's framing:

- pretraining, regularization: ``encoder.pt``, every module of the backbone (TS2Vec: its
  network and the averaged copy; TS-TCC and Series2Vec: their training modules too); while the
  run lasts, ``checkpoints/`` holds them twice (the state and the best one kept) and Adam's two
  moments per trained weight;
- finetuning: per cell (heads x modes x seeds, one run per label fraction) ``model.pt``, the
  classifier (the encoder's network and the head), ``predictions.csv`` (a row per test
  window, a probability per class; multi-label: a truth column per class too), ``history.csv``
  and the cell's records; on a card with C leads (:func:`n_leads`) the baselines read C input
  channels and an SSL head reads the joined per-lead embeddings (``lead_pooling``);
  ``checkpoints/`` holds per cell the classifier twice and the moments of what it trains
  (linear probing: the head's);
- baselines: the same per model x seed, H-InceptionTime's ``n_members`` networks each;
- embeddings: the points of every map (runs x layers x the target's and the corpus's windows),
  in ``maps.html`` and in the notebook, each window's waveform, the maps' pictures, and the
  map explorer's widgets saved in the notebook (plotly's bundle in each, about 5 MB);
- every run: its executed notebook, ``figures.html`` and records (:data:`RUN_FILES_BYTES`), and
  pretraining the points it plots (the target's and the held-out corpus's windows).

Window counts are the data's known sizes (:func:`target_windows`), not read from the data. A
sweep needs what its runs keep plus the checkpoints of the ``n_parallel`` largest (a run removes
its own when it completes). Where the sweep's own grid folder holds finished runs of a stage,
no run of that stage is taken below their median size (a cross-check of the estimate;
results set aside under ``superseded/`` are not counted). A sweep whose estimate does not fit
the free space of its grid folder stops before anything runs (:func:`check_space`);
``ecgnb run --no-disk-check`` skips the check.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import json
import shutil
import statistics
import warnings
from pathlib import Path

from typing import TYPE_CHECKING

from ecgnb import recipes, runs
from ecgnb.data import cards, scenarios
from ecgnb.evaluation.settings import SUPERVISED, TrainConfig, training_fields

if TYPE_CHECKING:  # the networks are built, with torch, only when a run is sized
    from torch import nn

    from ecgnb import models

ADAM_MOMENTS = 2  # Adam, AdamW and RAdam keep two moments per trained weight
TENSOR_BYTES = 1_000  # torch.save's framing of one tensor (measured: about 500 bytes)
RUN_FILES_BYTES = 200e3  # executed notebook (its code, tables), config.json, records, the
# frame of figures.html (the demo's: 120-180 kB)
POINT_BYTES = 300  # one plotted point, in the notebook and in figures.html (the demo's: ~200)
ROW_BYTES = 200  # one row of predictions.csv or history.csv
CELL_FILES_BYTES = 50e3  # a cell's cell.json and metrics.json (its code record, its metrics)
PICTURE_BYTES = 500e3  # one PNG of the embedding maps
SAMPLE_BYTES = 3  # one sample of a waveform on the maps' page (int16 in base64: 2.7 bytes)
# The map explorer of notebook 05 (ecgnb.map_explorer.Explorer): two map panels and a waveform,
# three plotly FigureWidgets, each saved in the executed notebook with plotly's widget bundle.
EXPLORER_WIDGETS = 3
N_CLASSES = 10  # classes a head is built for without a card naming them (Fragment DB 6)
# PTB-XL's classes per task with the benchmark's minimum count (Strodthoff et al. 2021)
PTBXL_TASK_CLASSES = {"superdiagnostic": 5, "subdiagnostic": 23, "diagnostic": 44, "form": 19,
                      "rhythm": 12, "all": 71}
VALUE_BYTES = 20  # one probability (or truth) column of a predictions.csv row
CARD_WINDOWS = 25_000  # a target card's examples (PTB-XL: 21,799 records), not counted
HELD_OUT_WINDOWS = 7_000  # the held-out WESAD subject's windows of a channel (docs/data.md)
CORPUS_WINDOWS = 105_000  # the ECG corpus, whole (docs/data.md): n_corpus_windows 0
FRAGMENT_WINDOW_S = 2.0  # the Fragment DB's fragments (ecgnb.data.formats.load_fragment)


class NotEnoughSpace(RuntimeError):
    """The runs of a sweep would not fit the free space of its folder."""


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What one run writes: ``kept``, its result, and ``transient``, its ``checkpoints/``
    (removed when the run completes)."""

    kept: float
    transient: float = 0.0


def human_size(n_bytes: float) -> str:
    """``5.1 GB``, ``354 MB``."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


# --------------------------------------------------------------------------- a run's parameters
@functools.lru_cache(maxsize=None)
def _notebook_defaults(notebook: str, mtime: float) -> dict:
    import papermill
    out = {}
    for name, spec in papermill.inspect_notebook(notebook).items():
        try:
            out[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError, TypeError, KeyError):
            continue
    return out


def run_params(run) -> dict:
    """The parameters ``run`` (a :class:`~ecgnb.workflow.grid.Run`) executes with: its
    notebook's defaults, then the grid's."""
    path = Path(run.notebook)
    defaults = _notebook_defaults(str(path), path.stat().st_mtime) if path.is_file() else {}
    return {**defaults, **run.params}


def target_card(params: dict) -> cards.Card | None:
    """The run's target card (None: the Fragment DB)."""
    return cards.read_card(params["target"], kind="target") if params.get("target") else None


def window_length(params: dict) -> int:
    """Samples per window: the target card's ``window_s`` (the Fragment DB's 2 s) x ``fs``."""
    card = target_card(params)
    window_s = card.window_s if card else FRAGMENT_WINDOW_S
    return round(window_s * float(params.get("fs", 360.0)))


def n_leads(params: dict) -> int:
    """Leads per window: the target card's (``channels: all`` counted as PTB-XL's 12, the most
    a record of any format is taken to hold); 1 without a card."""
    card = target_card(params)
    if card is None:
        return 1
    from ecgnb.data.ptbxl import LEADS
    return len(LEADS) if tuple(card.leads) == (cards.ALL_LEADS,) else len(card.leads)


def n_classes(params: dict) -> tuple[int, bool]:
    """``(classes, multilabel)`` of the target: the card's named classes, PTB-XL's per task
    (:data:`PTBXL_TASK_CLASSES`), else :data:`N_CLASSES`."""
    card = target_card(params)
    if card is None:
        return N_CLASSES, False
    if card.classes:
        return len(card.classes), card.multilabel
    if card.format == "ptbxl":
        return PTBXL_TASK_CLASSES.get(card.task, N_CLASSES), card.multilabel
    return N_CLASSES, card.multilabel


def target_windows(params: dict) -> int:
    """The target's windows: the embedded data's count, the Fragment DB's (its paper size,
    1,000) for a data folder, :data:`CARD_WINDOWS` for a card."""
    if params.get("target"):
        return CARD_WINDOWS
    from ecgnb.data.simulate import embedded_settings
    size = "paper" if params.get("fragment_root") else \
        "small" if params.get("use_small_data", True) else "demo"
    return embedded_settings(size)["fragment"]["n_fragments"]


def split_windows(params: dict) -> int:
    """Windows of one split of the target (validation or test): a fifth of it grouped (the
    Fragment DB's 172 and 209 of 1,000), taken as a quarter."""
    return -(-target_windows(params) // 4)


def recipe_value(params: dict, table: str, name: str, key: str | None = None):
    """The run's ``name``: its own, else its recipe's."""
    if params.get(name) is not None:
        return params[name]
    return recipes.value(table, params.get("recipe") or "ecgnb", name, key)


# --------------------------------------------------------------------------- networks
def state_bytes(module: nn.Module) -> int:
    """Bytes of ``module``'s saved ``state_dict`` (tensors and their framing)."""
    state = module.state_dict().values()
    return sum(t.numel() * t.element_size() + TENSOR_BYTES for t in state)


def trained_bytes(module: nn.Module, frozen_too: bool = False) -> int:
    """Bytes of the weights an optimiser trains in ``module`` (``frozen_too``: every weight)."""
    return sum(p.numel() * p.element_size() for p in module.parameters()
               if p.requires_grad or frozen_too)


@functools.lru_cache(maxsize=None)
def _encoder(backbone: str, config: str, n_timesteps: int) -> models.Encoder:
    from ecgnb import models

    encoder = models.build(backbone, device="cpu", verbose=False, **json.loads(config))
    encoder.build(n_timesteps)
    return encoder


def encoder_of(params: dict, n_timesteps: int) -> models.Encoder:
    """The backbone a pretraining run with ``params`` builds (on the CPU, untrained)."""
    backbone = params.get("backbone", "ts2vec")
    size = recipe_value(params, "pretraining", "model_size", backbone)
    config = {**recipes.backbone_settings(params.get("recipe") or "ecgnb", backbone),
              **(recipes.SMALL_MODELS.get(backbone, {}) if size == "small" else {}),
              **(params.get("model_overrides") or {})}
    if backbone == "series2vec":
        config.setdefault("fs", float(params.get("fs", 360.0)))
    return _encoder(backbone, json.dumps(config, sort_keys=True, default=list), n_timesteps)


@functools.lru_cache(maxsize=None)
def _head_bytes(head: str, in_dim: int, classes: int, mlp_head: str | None) -> tuple[int, int]:
    from ecgnb.models.heads import build_head

    module = build_head(head, in_dim, classes, **({"mlp_head": mlp_head} if mlp_head else {}))
    return state_bytes(module), trained_bytes(module)


@functools.lru_cache(maxsize=None)
def _baseline_bytes(model: str, classes: int, n_timesteps: int, leads: int,
                    variant: str) -> tuple[int, int]:
    from ecgnb.models.hinception import build_baseline

    module = build_baseline(model, classes, n_timesteps, 0, leads, **json.loads(variant))
    return state_bytes(module), trained_bytes(module)


def classifier_bytes(config: TrainConfig, encoder, n_timesteps: int, leads: int = 1,
                     classes: int = N_CLASSES) -> tuple[int, int]:
    """(saved, trained) bytes of one cell's model on windows of ``leads`` leads: the encoder's
    network and the head (reading the per-lead outputs joined by ``lead_pooling``), or the
    baseline on ``leads`` input channels (H-InceptionTime: ``n_members`` networks)."""
    from ecgnb.models.heads import head_input_dim
    from ecgnb.models.hinception import ENSEMBLE_BASELINES
    from ecgnb.models.leads import joined_dim

    if config.mode == SUPERVISED:
        ensemble = config.head in ENSEMBLE_BASELINES
        variant = {"shortcut": config.shortcut} if ensemble else \
            {"mlp_head": config.mlp_head} if config.head == "mlp" else {}
        saved, trained = _baseline_bytes(config.head, classes, n_timesteps, leads,
                                         json.dumps(variant))
        n_members = config.n_members if ensemble else 1
        return saved * n_members, trained * n_members
    network, saved, trainable = _network(encoder)
    in_dim = joined_dim(head_input_dim(config.head, network), leads, config.lead_pooling)
    head = _head_bytes(config.head, in_dim, classes,
                       config.mlp_head if config.head == "mlp" else None)
    return saved + head[0], head[1] + (trainable if config.mode == "ft" else 0)


@functools.lru_cache(maxsize=None)
def _network(encoder) -> tuple[nn.Module, int, int]:
    """The network a cell fine-tunes (a copy of the encoder's), its saved and weight bytes."""
    network = encoder.trainable_network()
    return network, state_bytes(network), trained_bytes(network, frozen_too=True)


# --------------------------------------------------------------------------- runs
def root_run(grid, run):
    """The pretraining run at the root of the encoder that ``run`` (notebook 02, 03 or 04)
    trains or reads."""
    while run.section != "pretraining" and run.parents:
        run = grid.runs[run.parents[0]]
    return run


def history_epochs(grid, run) -> int:
    """Epochs in the history of the encoder of ``run``: its chain's, root first."""
    params = run_params(run)
    if run.section == "pretraining" or not run.parents:
        return int(recipe_value(params, "pretraining", "n_epochs") or 0)
    step = scenarios.get(params.get("scenario", "ECG continued1")).last_step
    own = params.get("n_epochs")
    return history_epochs(grid, grid.runs[run.parents[0]]) + int(own or step.n_epochs)


def encoder_footprint(grid, run) -> Footprint:
    """A pretraining or regularization run: ``encoder.pt``, the history, the plots; while it
    runs, the checkpoint (the modules twice, Adam's moments)."""
    params, root = run_params(run), run_params(root_run(grid, run))
    modules = encoder_of(root, window_length(root)).modules_.values()
    saved = sum(state_bytes(m) for m in modules)
    trained = sum(trained_bytes(m) for m in modules)
    points = history_epochs(grid, run) * (ROW_BYTES + POINT_BYTES)
    if run.section == "pretraining":  # PCA of the target's and the held-out corpus's windows
        n_windows = recipe_value(params, "pretraining", "n_windows") or 0
        held_out = n_windows // 4 if n_windows else HELD_OUT_WINDOWS
        points += POINT_BYTES * (split_windows(params) + held_out)
    return Footprint(RUN_FILES_BYTES + saved + points, 2 * saved + ADAM_MOMENTS * trained)


def cell_configs(params: dict, supervised: bool, backbone: str | None):
    """``(config, n_seeds)`` per (head, mode) of a notebook-04 run (baselines: per model)."""
    pairs = [(b, SUPERVISED) for b in params.get("baselines") or ()] if supervised else \
        [(h, m) for h in params.get("heads") or () for m in params.get("modes") or ()]
    knobs = {k: params[k] for k in training_fields() if k in params}
    for head, mode in pairs:
        with warnings.catch_warnings():  # the run itself warns of doubtful settings
            warnings.simplefilter("ignore")
            config = TrainConfig(recipe=params.get("recipe") or "ecgnb", head=head, mode=mode,
                                 backbone=backbone, device="cpu", verbose=False,
                                 label_fraction=float(params.get("label_fraction", 1.0)),
                                 **knobs)
        yield config, len(params.get("seeds") or (0,))


def cells_footprint(grid, run) -> Footprint:
    """A finetuning (or baselines) run: per cell ``model.pt``, predictions, history and
    records; while it runs, each cell's checkpoint (the model twice, Adam's moments)."""
    from ecgnb.models.hinception import ENSEMBLE_BASELINES

    params = run_params(run)
    supervised = params.get("encoder_run") == runs.NO_ENCODER or not run.parents
    root = None if supervised else run_params(root_run(grid, run))
    encoder = None if supervised else encoder_of(root, window_length(root))
    n_timesteps, leads, (classes, multilabel) = \
        window_length(params), n_leads(params), n_classes(params)  # each reads the card once
    prediction_bytes = ROW_BYTES + VALUE_BYTES * classes * (2 if multilabel else 1)
    kept, transient = RUN_FILES_BYTES, 0.0
    for config, n_seeds in cell_configs(params, supervised, encoder and encoder.name):
        saved, trained = classifier_bytes(config, encoder, n_timesteps, leads, classes)
        n_fits = config.n_members if supervised and config.head in ENSEMBLE_BASELINES else 1
        rows = prediction_bytes * split_windows(params) + ROW_BYTES * n_fits * config.n_epochs
        kept += n_seeds * (saved + CELL_FILES_BYTES + rows)
        transient += n_seeds * (2 * saved + ADAM_MOMENTS * trained)
    return Footprint(kept, transient)


def maps_footprint(grid, run) -> Footprint:
    """An embeddings run: every map's points (runs x layers, target and corpus views) in
    ``maps.html`` and the notebook, each window's waveform once, the two pictures, the map
    explorer's widgets."""
    params = run_params(run)
    corpus = (params.get("n_corpus_windows") or CORPUS_WINDOWS) if params.get("corpus") else 0
    n_windows = target_windows(params) + corpus
    n_maps = len(params.get("runs") or ()) * len(params.get("layers") or ())
    waveforms = n_windows * (SAMPLE_BYTES * window_length(params) + POINT_BYTES)
    return Footprint(RUN_FILES_BYTES + 2 * POINT_BYTES * n_maps * n_windows + waveforms
                     + 2 * PICTURE_BYTES + EXPLORER_WIDGETS * widget_bytes())


@functools.lru_cache(maxsize=None)
def widget_bytes() -> float:
    """What one plotly FigureWidget adds to a saved notebook: its front-end bundle (anywidget's
    ``_esm``), JSON-escaped (about 5 MB)."""
    import plotly.graph_objects as go
    return 1.1 * len(str(go.FigureWidget._esm))


FOOTPRINTS = {"pretraining": encoder_footprint, "regularization": encoder_footprint,
              "finetuning": cells_footprint, "baselines": cells_footprint,
              "embeddings": maps_footprint}


def run_footprint(grid, name: str) -> Footprint:
    """What run ``name`` of ``grid`` (:class:`~ecgnb.workflow.grid.Grid`) will write, from its
    parameters alone (see the module docstring)."""
    run = grid.runs[name]
    return FOOTPRINTS[run.section](grid, run)


# --------------------------------------------------------------------------- the sweep
def finished_sizes(root: Path) -> dict[str, list[int]]:
    """Per stage: the sizes of the finished runs under ``root``, from their completion records
    (not verified: a quick look, not a check of the runs)."""
    sizes: dict[str, list[int]] = {}
    root = Path(root)
    for marker in root.rglob(runs.SUCCESS) if root.is_dir() else ():
        if runs.SUPERSEDED in marker.relative_to(root).parts[:-1]:
            continue
        try:
            record = json.loads(marker.read_text())
            size = sum(int(a.get("size", 0)) for a in record["artefacts"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        sizes.setdefault(str(record.get("stage")), []).append(size)
    return sizes


def space_needed(grid, names: list[str], folder: Path, n_parallel: int = 1) -> float:
    """Bytes the runs ``names`` of ``grid`` need in its ``folder``: what each keeps (at least
    the median of the folder's finished runs of its stage) and the checkpoints of the
    ``n_parallel`` largest."""
    observed = {stage: statistics.median(sizes)
                for stage, sizes in finished_sizes(folder).items() if sizes}
    kept, transient = 0.0, []
    for name in names:
        footprint = run_footprint(grid, name)
        stage = {"baselines": "finetuning"}.get(grid.runs[name].section, grid.runs[name].section)
        kept += max(footprint.kept, observed.get(stage, 0.0))
        transient.append(footprint.transient)
    return kept + sum(sorted(transient, reverse=True)[:max(1, n_parallel)])


def free_space(folder: Path) -> float:
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent)."""
    folder = Path(folder).resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def space_line(grid, names: list[str], folder: Path, n_parallel: int = 1) -> tuple[str, bool]:
    """One line on the space the runs ``names`` of ``grid`` need in ``folder`` (the grid's
    folder) and whether it fits."""
    needed, free = space_needed(grid, names, folder, n_parallel), free_space(folder)
    line = (f"disk: the {len(names)} run(s) to do need about {human_size(needed)} in {folder}, "
            f"{human_size(free)} free")
    return line, needed <= free


def check_space(grid, names: list[str], folder: Path, n_parallel: int = 1) -> None:
    """Raise :class:`NotEnoughSpace`, one line, when the runs ``names`` do not fit."""
    if not names:
        return
    line, fits = space_line(grid, names, folder, n_parallel)
    if not fits:
        raise NotEnoughSpace(f"not enough {line} (estimated from each run's networks, cells and "
                             "windows); free space, use --outputs on another disk, or pass "
                             "--no-disk-check")
