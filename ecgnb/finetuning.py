"""Stage 04: evaluate one encoder (or the supervised baselines) over heads x modes x seeds.

Every cell writes ``<run>/cells/<cell>/`` with ``predictions.csv``, ``history.csv``, ``cell.json``,
``model.pt`` and ``metrics.json``, written last and naming the other files with their sizes and
checksums (a cell is complete only when they match, :func:`ecgnb.runs.is_cell_complete`). A run that
is re-executed skips the cells that are already complete.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ecgnb import models, recipes, runs
from ecgnb.config import pick_device
from ecgnb.files import atomic_write, write_json
from ecgnb.data import DataConfig, Windows
from ecgnb.data.corpora import check_encoder_data
from ecgnb.evaluation import metrics
from ecgnb.evaluation.cell import run_cell
from ecgnb.evaluation.settings import SUPERVISED, HeadTraining, TrainConfig
from ecgnb.models.base import CheckpointError, Encoder
from ecgnb.models.heads import Classifier, build_head
from ecgnb.models.checkpoint import array_checksum
from ecgnb.models.hinception import ENSEMBLE_BASELINES, HInceptionTime, build_baseline
from ecgnb.models.leads import LeadWise
from ecgnb.provenance import code_identity
from ecgnb.runs import NO_ENCODER, Cell


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(DataConfig, HeadTraining):
    """Parameters of notebooks/04_finetuning.ipynb (same names as its parameters cell): the data
    (:class:`~ecgnb.data.DataConfig`), the cells (encoder run or baselines, heads, modes, seeds,
    label fraction) and the training knobs of :class:`~ecgnb.evaluation.settings.HeadTraining`
    (``None``: the ``recipe``'s, resolved per cell, :func:`train_config`)."""

    encoder_run: str = "pretraining/interactive"  # or "none": the supervised baselines
    baselines: tuple[str, ...] = ("hinception", "mlp", "fcn")
    heads: tuple[str, ...] = ("mlp", "fcn")
    modes: tuple[str, ...] = ("lp", "ft")
    seeds: tuple[int, ...] = (0,)
    label_fraction: float = 1.0
    device: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        recipes.check_recipe(self.recipe)

    @property
    def is_supervised(self) -> bool:
        return self.encoder_run == NO_ENCODER


def cells(cfg: FinetuneConfig) -> Iterator[Cell]:
    """Every (head, mode, seed) of the run; baselines are ``mode="supervised"``."""
    if cfg.is_supervised:
        pairs = [(b, SUPERVISED) for b in cfg.baselines]
    else:
        pairs = [(h, m) for h in cfg.heads for m in cfg.modes]
    for head, mode in pairs:
        for seed in cfg.seeds:
            yield Cell(head, mode, int(seed), cfg.label_fraction)


def load_encoder(cfg: FinetuneConfig, fragments: Windows | None = None,
                 splits: dict | None = None):
    """(encoder or None, record of where it came from: backbone, scenario, recipe, pretraining
    seed (the seed of the root of its lineage; ``None`` for the baselines), run, weights hash).

    An encoder trained with another target normalisation, or on target records that ``splits``
    puts in validation or test, is refused (:class:`~ecgnb.data.DataError`)."""
    if cfg.is_supervised:
        return None, {"backbone": SUPERVISED, "scenario": NO_ENCODER,
                      "encoder_run": NO_ENCODER, "recipe": cfg.recipe, "pretrain_seed": None}
    encoder = models.load(runs.find_encoder(cfg.encoder_run), device=cfg.device)
    check_encoder_data(encoder.lineage, cfg, fragments, splits,
                       what=f"encoder of run '{cfg.encoder_run}'")
    scenario = encoder.lineage[-1]["scenario"] if encoder.lineage else "unknown"
    pretrain_seed = encoder.lineage[0].get("seed") if encoder.lineage else None
    return encoder, {"backbone": encoder.name, "scenario": scenario, "pretrain_seed": pretrain_seed,
                     "encoder_run": cfg.encoder_run, "encoder_hash": encoder.weights_hash(),
                     "recipe": cfg.recipe,
                     "pretraining_recipe": encoder.lineage[0].get("recipe") if encoder.lineage
                     else None}


def train_config(cfg: FinetuneConfig, cell: Cell, backbone: str | None = None,
                 verbose: bool = False) -> TrainConfig:
    """The cell's training config, resolved from the recipe (``backbone``: the encoder's)."""
    return TrainConfig.for_cell(cfg, head=cell.head, mode=cell.mode, backbone=backbone,
                                label_fraction=cell.label_fraction, seed=cell.seed,
                                device=cfg.device, verbose=verbose)


def run_cells(cfg: FinetuneConfig, encoder, source: dict, fragments: Windows,
              splits: dict, out: Path) -> pd.DataFrame:
    """Run every cell not yet complete under ``out/cells``; returns one summary row per cell."""
    todo = list(cells(cfg))
    data = data_identity(fragments, splits)
    for cell in tqdm(todo, desc="cells", leave=False):
        folder = runs.cell_folder(out, cell)
        config = train_config(cfg, cell, None if encoder is None else encoder.name)
        identity = cell_identity(config, encoder, data)
        if runs.cell_problem(folder, identity) is None:
            continue  # finished by an earlier attempt with these settings, data and code
        shutil.rmtree(folder, ignore_errors=True)  # a finished run's copy is in superseded/
        start = time.time()
        result = run_cell(encoder, fragments, splits, config,
                          checkpoint_dir=out / runs.CHECKPOINTS, name=cell.name)
        folder.mkdir(parents=True, exist_ok=True)
        result.history.to_csv(folder / "history.csv", index=False)
        with atomic_write(folder / runs.CELL_MODEL) as tmp:
            torch.save(result.model.state_dict(), tmp)
        files = runs.run_code()
        record = {**source, **dataclasses.asdict(cell), **result.label_record(),
                  "mlp_head": config.mlp_head, "shortcut": config.shortcut, "cell": cell.name,
                  **input_record(fragments, config),
                  "wall_s": time.time() - start,
                  "identity": identity, "code": code_identity(files), "code_files": files}
        write_json(folder / runs.CELL_RECORD, record)
        metrics.write_run(folder, result.test_metrics, result.predictions,
                          extra={**result.summary(), "cell": record})
    return summarize(out, todo)


def data_identity(fragments: Windows, splits: dict) -> dict:
    """Checksums of the labelled windows and of the split a run's cells train and test on."""
    return {"x": array_checksum(fragments.x), "y": array_checksum(np.asarray(fragments.y)),
            "splits": {k: array_checksum(np.asarray(v)) for k, v in sorted(splits.items())}}


def cell_identity(config: TrainConfig, encoder, data: dict) -> dict:
    """What a cell's result depends on besides the code: its training settings, the encoder's
    weights and the data (:func:`ecgnb.runs.cell_problem` compares it before reusing a cell)."""
    return {"config": dataclasses.asdict(config), "data": data,
            "encoder": None if encoder is None else encoder.weights_hash()}


def input_record(fragments: Windows, config: TrainConfig) -> dict:
    """What :func:`load_classifier` needs besides the head to rebuild a cell's model: the
    leads (``n_leads``; an encoder reads each on its own, joined by ``lead_pooling``), the
    task's classes and whether it is multi-label."""
    return {"n_leads": int(fragments.x.shape[1]), "lead_pooling": config.lead_pooling,
            "classes": list(fragments.classes), "multilabel": bool(fragments.is_multilabel)}


@dataclasses.dataclass(frozen=True)
class CellInput:
    """A cell's input as :func:`input_record` wrote it in ``cell.json`` (a record without these
    keys is a single-lead, single-label cell)."""

    n_leads: int = 1
    lead_pooling: str = "concat"
    multilabel: bool = False

    @classmethod
    def of(cls, cell: dict) -> "CellInput":
        return cls(int(cell.get("n_leads") or 1), cell.get("lead_pooling") or "concat",
                   bool(cell.get("multilabel")))


def headline(is_multilabel: bool) -> str:
    """The metric a cell is judged by: macro-AUROC for a multi-label task, else macro-F1."""
    return "macro_auroc" if is_multilabel else "macro_f1"


def summarize(out: Path, todo: list[Cell]) -> pd.DataFrame:
    """One row per complete cell: validation and test scores with the test CI (macro-F1 and
    accuracy; for a multi-label task macro-AUROC, macro AP and sample-F1)."""
    rows = []
    for cell in todo:
        folder = runs.cell_folder(out, cell)
        if not runs.is_cell_complete(folder):
            continue
        m = runs.read_json(folder / runs.CELL_METRICS)
        row = {"cell": cell.name, "head": cell.head, "mode": cell.mode, "seed": cell.seed}
        row.update(_single_label_scores(m) if "macro_f1" in m else _multilabel_scores(m))
        row.update({"best_epoch": m["best_epoch"], "n_train": m.get("n_train"),
                    "label_fraction_realised": m.get("label_fraction_realised"),
                    "n_test": m["n_test"]})
        rows.append(row)
    return pd.DataFrame(rows)


def _single_label_scores(m: dict) -> dict:
    return {"val_macro_f1": m["val_metrics"]["macro_f1"], "macro_f1": m["macro_f1"],
            "macro_f1_ci": tuple(round(v, 3) for v in m["ci"]["macro_f1"]),
            "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}


def _multilabel_scores(m: dict) -> dict:
    return {"val_macro_auroc": m["val_metrics"]["macro_auroc"], "macro_auroc": m["macro_auroc"],
            "macro_auroc_ci": tuple(round(v, 3) for v in m["ci"]["macro_auroc"]),
            "macro_ap": m["macro_ap"], "sample_f1": m["sample_f1"]}


def choose_mode_on_validation(summary: pd.DataFrame) -> pd.DataFrame:
    """Per head: mean val/test headline metric (macro-F1; multi-label: macro-AUROC) per mode
    over seeds and the mode chosen on validation."""
    metric = headline("macro_auroc" in summary)
    table = summary.groupby(["head", "mode"])[[f"val_{metric}", metric]].mean().reset_index()
    best = table.loc[table.groupby("head")[f"val_{metric}"].idxmax(), ["head", "mode"]]
    chosen = set(map(tuple, best.to_numpy()))
    table["chosen_on_val"] = [(h, m) in chosen for h, m in table[["head", "mode"]].to_numpy()]
    return table


def best_on_validation(summary: pd.DataFrame) -> str:
    """The cell with the best validation headline metric (macro-F1; multi-label: macro-AUROC)."""
    metric = headline("macro_auroc" in summary)
    return summary.sort_values(f"val_{metric}", ascending=False).iloc[0]["cell"]


# --------------------------------------------------------------------------- reading cells back
def load_classifier(cell_dir, n_classes: int, n_timesteps: int, encoder: Encoder | None = None,
                    device: str | None = None) -> nn.Module:
    """Rebuild a cell's trained classifier from ``cell.json`` and ``model.pt`` (strict).

    ``model.pt`` is the classifier's ``state_dict`` (:func:`ecgnb.finetuning.run_cells`). SSL cells
    rebuild :class:`~ecgnb.models.heads.Classifier` on ``encoder.trainable_network()`` (of
    ``n_leads > 1`` leads: wrapped in :class:`~ecgnb.models.leads.LeadWise` with the cell's
    ``lead_pooling``); baselines rebuild from :mod:`ecgnb.models.hinception` on ``n_leads`` input
    channels (an ensemble's size is read from the weights). A cell without ``n_leads`` read one.
    """
    cell_dir = Path(cell_dir)
    cell = runs.read_json(cell_dir / runs.CELL_RECORD)
    state = torch.load(cell_dir / runs.CELL_MODEL, map_location="cpu", weights_only=True)
    variant = {"mlp_head": cell.get("mlp_head", "ecgnb")} if cell["head"] == "mlp" else {}
    read = CellInput.of(cell)
    if cell["mode"] == SUPERVISED:
        model = _baseline(cell["head"], n_classes, n_timesteps, state, variant,
                          cell.get("shortcut") or "conv", read.n_leads, read.multilabel)
    elif encoder is None:
        raise ValueError(f"{cell_dir}: a '{cell['mode']}' cell needs its encoder to be rebuilt")
    else:
        network = encoder.trainable_network()
        if read.n_leads > 1:
            network = LeadWise(network, read.n_leads, read.lead_pooling)
        model = Classifier(network, build_head(cell["head"], network, n_classes, **variant),
                           freeze_network=cell["mode"] == "lp")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{cell_dir / runs.CELL_MODEL} does not fit a {cell['head']} "
                              f"{cell['mode']} classifier: {exc}") from exc
    return model.to(pick_device(device)).eval()


def _baseline(name: str, n_classes: int, n_timesteps: int, state: dict, variant: dict,
              shortcut: str = "conv", n_leads: int = 1, is_multilabel: bool = False) -> nn.Module:
    if name not in ENSEMBLE_BASELINES:
        return build_baseline(name, n_classes, n_timesteps, 0, n_leads, **variant)
    members = {int(k.split(".")[1]) for k in state if k.startswith("members.")}
    ensemble = HInceptionTime.from_seeds(n_classes, n_timesteps, seeds=range(len(members)),
                                         in_channels=n_leads, shortcut=shortcut)
    return HInceptionTime(list(ensemble.members), is_multilabel)
