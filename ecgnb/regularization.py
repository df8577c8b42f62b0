"""Stage 03, data-driven regularization: continue SSL training of a saved encoder on another corpus.

A continuation starts from the parent checkpoint with a fresh optimiser and the unchanged SSL
objective (docs/deviations.md, rows 18-19). Checkpoint selection looks only at a grouped validation part of the
*continuation* corpus (or takes the last epoch); the target task's validation and test fragments
are never seen. Every choice is written into the child's lineage.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ecgnb import recipes
from ecgnb.data import DataConfig, Windows, corpora, scenarios
from ecgnb.data.corpora import corpus_record
from ecgnb.models.base import CONTINUATIONS, Encoder
from ecgnb.models.best import BestState, loss_callback
from ecgnb.models.checkpoint import checkpoint_args, resumed_from
from ecgnb.models.leads import split_leads
from ecgnb.models.lineage import lineage_record, timestamp

# "last" epoch, lowest loss on the continuation corpus's held-out part ("val") or lowest
# training loss ("train_loss"); each recipe's per backbone in ecgnb.recipes.CONTINUATION.
CONTINUATION_SELECTIONS = ("last", "val", "train_loss")


@dataclasses.dataclass(frozen=True)
class RegularizationConfig(DataConfig):
    """Parameters of notebooks/03_regularization.ipynb (same names as its parameters cell)."""

    parent_run: str = "pretraining/interactive"
    scenario: str = "ECG continued1"
    n_epochs: int | None = None  # None: the scenario step's epochs (1, 30 or 60)
    lr: float | None = None  # None: the backbone's pretraining learning rate
    batch_size: int = 64
    channels: tuple[str, ...] = ()  # perturbing domains; empty: the step's whole corpus
    corpus_fraction: float | None = None  # share of each subject's windows; None: the study's
    n_windows: int | None = None  # cap on continuation windows; 0: all; None: the recipe's
    selection: str | None = None  # "last" epoch, lowest loss on the continuation corpus's "val"
    # (held-out subject / records) or "train_loss"; None: the recipe's for the parent's backbone
    continuation: str = "genuine"  # TS2Vec: "genuine" (ours) or "study" (averaged network only)
    target_holdout: bool | None = None  # "extended": hold back 20 % of the target's training
    # records as validation (True) or train on all (False); None: the recipe's (study: False)
    use_amp: bool | None = None  # float16 autocast on CUDA; None: the recipe's (study: off)
    recipe: str = "ecgnb"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        recipes.check_recipe(self.recipe)
        recipes.resolve(self, "continuation")  # the selection, set per backbone: see resolved
        if self.continuation not in CONTINUATIONS:
            raise ValueError(f"continuation must be one of {CONTINUATIONS}, "
                             f"got '{self.continuation}'")
        if self.selection is not None and self.selection not in CONTINUATION_SELECTIONS:
            raise ValueError(f"selection must be one of {CONTINUATION_SELECTIONS}, "
                             f"got '{self.selection}'")
        if not scenarios.get(self.scenario).steps:
            raise ValueError(f"scenario '{self.scenario}' has no continuation step; "
                             "base scenarios are produced by notebook 02")
        allowed = corpora.CORPUS_CHANNELS["no-ECG"] if self.step.corpus == "no-ECG" else ()
        if set(self.channels) - set(allowed):
            raise ValueError(f"channels {sorted(set(self.channels) - set(allowed))} cannot perturb "
                             f"a '{self.step.corpus}' step; choose from {list(allowed)}")

    def resolved(self, backbone: str) -> "RegularizationConfig":
        """These settings with the recipe's values for ``backbone`` (the parent's) filled in."""
        return recipes.resolve(dataclasses.replace(self), "continuation", backbone)

    @property
    def step(self) -> scenarios.Step:
        step = scenarios.get(self.scenario).last_step
        return step if self.n_epochs is None else dataclasses.replace(step, n_epochs=self.n_epochs)


def continue_training(encoder: Encoder, train: Windows, val: Windows | None, step: scenarios.Step,
                      parent_path: Path | str, scenario: str, cfg: RegularizationConfig,
                      verbose: bool = True, checkpoint_dir=None) -> Encoder:
    """Continue SSL in place for ``step.n_epochs``; select the checkpoint; append lineage.
    A parent trained with another target normalisation than ``cfg``'s is refused.
    ``checkpoint_dir``: as :func:`ecgnb.pretraining.pretrain`'s (a killed run resumes)."""
    corpora.check_encoder_data(encoder.lineage, cfg, what=f"parent {parent_path}")
    parent_hash = encoder.weights_hash()
    parent_checkpoint = encoder.lineage[-1].get("selection") if encoder.lineage else None
    started = timestamp()
    cfg = cfg.resolved(encoder.name)
    rule = cfg.selection
    use_val = rule == "val" and val is not None and len(val) > 1
    key = "val_loss" if use_val else "loss" if rule == "train_loss" else None
    best, n_before = BestState("min"), len(encoder.history_)
    encoder.set_params(use_amp=cfg.use_amp)
    start_from = encoder.begin_continuation(cfg.continuation)
    if cfg.lr is not None:  # the child's config records the rate it was trained at
        encoder.set_params(lr=cfg.lr)
    encoder.fit(train.x, n_epochs=step.n_epochs, batch_size=cfg.batch_size,
                lr=cfg.lr, x_val=val.x if use_val else None, seed=cfg.seed, verbose=verbose,
                callback=loss_callback(best, n_before, key) if key else None,
                **checkpoint_args(checkpoint_dir, "continuation"))
    if key is not None and best.is_finite:
        best.restore(encoder)
        what = (f"continuation-corpus validation loss (val = "
                f"{corpus_record('val', val)['n_groups']} held-out groups of the continuation "
                "corpus)" if use_val else "training loss")
        selection = f"lowest {what}: epoch {best.epoch} of {step.n_epochs}"
    else:
        selection = f"last epoch ({step.n_epochs})" + ("" if rule == "last" else
                                                       ": no held-out part to select on")
    encoder.lineage.append(lineage_record(
        encoder, cfg, train, val, stage=step.name, scenario=scenario, corpus=step.corpus,
        epochs=step.n_epochs, seed=cfg.seed, recipe=cfg.recipe, selection=selection,
        started=started, parent=str(parent_path), parent_hash=parent_hash,
        history_from_epoch=n_before + 1, lr=cfg.lr or encoder.settings.lr,
        parent_checkpoint=parent_checkpoint, start_from=start_from,
        continuation=cfg.continuation, selection_rule=rule,
        target_holdout=cfg.target_holdout if step.corpus == "target" else None,
        training=encoder.training_record(), resumed_from=resumed_from(encoder)))
    return encoder


def lineage_tree(lineage: list[dict]) -> str:
    """The chain of a checkpoint as an indented text tree, root first."""
    lines = []
    for depth, rec in enumerate(lineage):
        corpus = rec["corpus"]
        domains = ", ".join(f"{k} {v}" for k, v in corpus["domains"].items())
        prefix = "" if depth == 0 else "   " * (depth - 1) + "└─ "
        lines.append(f"{prefix}{rec['stage']} [{rec['scenario']}] on {corpus['name']} "
                     f"({corpus['n_windows']} windows: {domains}), {rec['epochs']} epochs, "
                     f"seed {rec['seed']}, selection: {rec['selection']}, "
                     f"weights {rec['weights_hash']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ what the perturbation does
def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear centred kernel alignment of two representations ``[N, D1]``, ``[N, D2]`` (0..1)."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a, axis=0)
    b = np.asarray(b, dtype=np.float64) - np.mean(b, axis=0)
    cross = np.linalg.norm(b.T @ a, "fro") ** 2
    norm = np.linalg.norm(a.T @ a, "fro") * np.linalg.norm(b.T @ b, "fro")
    return float(cross / norm) if norm > 0 else float("nan")


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity between paired rows of two embeddings of the same width."""
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def drift(parent: Encoder, child: Encoder, x: np.ndarray) -> dict[str, float]:
    """Representation drift between two encoders on the same windows ``x [N, C, T]``: each lead
    is its own series, so linear CKA and the mean cosine run over the ``N*C`` per-lead
    embeddings (``n_windows``: N)."""
    series = split_leads(x)
    a, b = parent.encode(series), child.encode(series)
    return {"linear_cka": linear_cka(a, b), "mean_cosine": mean_cosine(a, b),
            "n_windows": int(len(x))}
