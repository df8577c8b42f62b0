"""Stage 05: embeddings of downstream runs, per layer, and the scores that go with their maps.

A :class:`RunSource` is one cell of a notebook-04 run: the encoder *before* fine-tuning (from the
cell's ``encoder_run``; ``None`` for the supervised baselines) and the trained classifier
(``model.pt``). :func:`embed` gives, for windows ``x [N, C, T]``, vectors ``[N, D]`` at one of
the layers :data:`LAYERS` (notebook 05's parameter ``layers`` and the maps' ``layer`` name them):

- ``encoder``: ``encoder.encode(x)``, the pretrained (or continued) representation; of C > 1
  leads, each lead encoded on its own and joined by the cell's ``lead_pooling`` (concat or
  mean), as the classifier read them;
- ``finetuned``: the classifier's own network, ``network.embed(x)`` (equal to ``encoder`` after
  linear probing; the members' embeddings side by side for an ensemble);
- ``head``: the input of the head's last linear layer (MLP: the hidden layer; FCN: the pooled
  convolutions; linear head: the embedding it reads);
- ``logits``: the classifier's output ``[N, K]``.

Scores are computed in the embedding space (and, by :mod:`ecgnb.maps`, on the 2-D map too):
silhouette by class, kNN accuracy from training to test embeddings, and the domain-mixing score.

Multi-label tasks (a cell's ``multilabel``, windows' ``y [N, K]``): a window's label is its label
set (:func:`~ecgnb.data.windows.label_names`: ``MI+STTC``, ``NORM``; the empty set ``no class``),
and the silhouette groups windows by label set. kNN accuracy over label sets would count a
neighbour with one class of two as wrong, so the kNN score is :func:`knn_macro_auroc` instead:
each placed window scores every class by the share of its k nearest training windows that have
it, and these scores give one AUROC per class (sklearn), averaged (chance 0.5, as the
classifier's headline). A prediction (:func:`predict`) is the set of classes whose sigmoid
reaches the cell's threshold (the one chosen on validation and recorded in its
``metrics.json``; 0.5 where none is), and it is correct when it equals the window's label set.

Multi-lead sources read the pretraining corpus's single-lead windows one way only, as one lead:
at ``encoder`` (the encoder itself) and, for a pretrained cell, at ``finetuned`` (its fine-tuned
per-lead network); :func:`reads_one_lead` says where. A supervised baseline over C input
channels has no corpus map, and a ``+target`` corpus maps without the target's C-lead records
(:func:`corpus_windows`: they are on the target maps).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.special import expit
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from torch import nn

from ecgnb import models, runs
from ecgnb.data import DataConfig, Windows, load_corpus
from ecgnb.data.corpora import check_encoder_data, parse_corpus
from ecgnb.evaluation.multilabel import per_class_auroc
from ecgnb.evaluation.settings import SUPERVISED
from ecgnb.finetuning import CellInput, load_classifier
from ecgnb.models.base import Encoder
from ecgnb.models.hinception import HInceptionTime
from ecgnb.models.leads import LeadWise, encode_leads

LAYERS = ("encoder", "finetuned", "head", "logits")
DEFAULT_THRESHOLD = 0.5  # multi-label prediction where a cell records no threshold


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig(DataConfig):
    """Parameters of notebooks/05_embeddings.ipynb (same names as its parameters cell)."""

    runs: tuple[str, ...] = ("demo/finetuning/ts2vec-ecg-f1.0",
                             "demo/finetuning/ts2vec-ecg-continued1-f1.0")  # `make demo`
    cells: tuple[str, ...] = ("mlp-lp-f1-s0",)  # one per run, one for all, or empty: the first
    layers: tuple[str, ...] = ("encoder", "finetuned", "head")  # layers of LAYERS
    split: str = "test"  # target split placed on the map fitted on the training split
    corpus: str = "All+target"  # pretraining corpus mapped by domain; empty: none
    n_corpus_windows: int = 600  # seeded subsample of the corpus (0: all)
    n_neighbors: int = 5  # UMAP (the study: 5)
    min_dist: float = 0.2  # UMAP (the study: 0.2)
    metric: str = "euclidean"  # UMAP metric
    k_neighbors: int = 5  # k of the kNN accuracy and of the domain-mixing score
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        unknown = sorted(set(self.layers) - set(LAYERS))
        if unknown or not self.layers:
            raise ValueError(f"layers must be a non-empty subset of {LAYERS}, got {self.layers}")
        if self.split not in ("val", "test"):
            raise ValueError(f"split must be 'val' or 'test', got '{self.split}'")
        if not self.runs:
            raise ValueError("runs must name at least one notebook-04 run")
        if len(self.cells) not in (0, 1, len(self.runs)):
            raise ValueError(f"cells: give one per run ({len(self.runs)}), one for all, or none; "
                             f"got {list(self.cells)}")


# --------------------------------------------------------------------------- run sources
@dataclasses.dataclass
class RunSource:
    """One downstream cell to embed.

    ``cell`` is its ``cell.json`` record (``backbone``, ``scenario``, ``head``, ``mode``,
    ``n_leads``, ``lead_pooling``, ``multilabel``, ...); ``encoder`` the encoder before
    fine-tuning (``None`` for a supervised baseline); ``classifier`` maps ``[B, C, T]`` to
    logits ``[B, K]``; ``threshold`` the multi-label decision threshold.
    """

    run: str
    cell_name: str
    cell: dict
    encoder: Encoder | None
    classifier: nn.Module
    title: str = ""  # display name overriding the default label
    threshold: float = DEFAULT_THRESHOLD

    @property
    def label(self) -> str:
        """Display name, by default ``ts2vec ECG continued1 · mlp-ft-f1-s0``."""
        if self.title:
            return self.title
        backbone, scenario = self.cell.get("backbone", "?"), self.cell.get("scenario", "?")
        return f"{backbone} {scenario} · {self.cell_name}"

    @property
    def layers(self) -> tuple[str, ...]:
        return LAYERS if self.encoder is not None else LAYERS[1:]

    @property
    def input(self) -> CellInput:
        return CellInput.of(self.cell)

    @property
    def n_leads(self) -> int:
        return self.input.n_leads

    @property
    def lead_pooling(self) -> str:
        return self.input.lead_pooling

    @property
    def is_multilabel(self) -> bool:
        return self.input.multilabel


def reads_one_lead(source: RunSource, layer: str) -> bool:
    """Whether ``layer`` of ``source`` reads single-lead windows (the corpus's): always for a
    single-lead cell; of a multi-lead cell, the encoder and a pretrained cell's per-lead
    fine-tuned network, never a supervised network over C input channels or a head."""
    return source.n_leads == 1 or layer == "encoder" or (layer == "finetuned"
                                                         and source.encoder is not None)


def load_source(run: str, cell_name: str, windows: Windows, device: str | None = None,
                data: DataConfig | None = None) -> RunSource:
    """The cell ``cell_name`` (empty: the first complete one) of the finished 04 run ``run``.

    With ``data``, warns when the run read other data (roots, size, seeds) than ``data``, and
    refuses an encoder trained with another target normalisation than ``data.normalization``.
    """
    folder = runs.find_run(run)
    if data is not None:
        _check_same_data(folder, data, run)
    cells = runs.complete_cells(folder)
    if not cells:
        raise FileNotFoundError(f"run '{run}' has no complete cell under {folder / runs.CELLS}")
    cell_name = cell_name or cells[0]
    if cell_name not in cells:
        raise FileNotFoundError(f"run '{run}' has no cell '{cell_name}'; it has {cells}")
    cell_dir = runs.cell_folder(folder, cell_name)
    cell = runs.read_json(cell_dir / runs.CELL_RECORD)
    n_leads = CellInput.of(cell).n_leads
    if n_leads != windows.x.shape[1]:
        raise ValueError(f"run '{run}', cell '{cell_name}' read {n_leads}-lead "
                         f"windows, these have {windows.x.shape[1]}: set target (and fs) to the "
                         "run's")
    encoder = None
    if cell["mode"] != SUPERVISED:
        encoder = models.load(runs.find_encoder(cell["encoder_run"]), device=device)
        _check_encoder_hash(encoder, cell, run)
        if data is not None:  # the normalisation the encoder was trained with
            check_encoder_data(encoder.lineage, data, what=f"encoder of run '{run}'")
    classifier = load_classifier(cell_dir, len(windows.classes), windows.n_timesteps, encoder,
                                 device)
    threshold = runs.read_json(cell_dir / runs.CELL_METRICS).get("threshold")
    return RunSource(run, cell_name, cell, encoder, classifier,
                     threshold=DEFAULT_THRESHOLD if threshold is None else float(threshold))


def _check_same_data(folder: Path, data: DataConfig, run: str) -> None:
    theirs = runs.run_params(folder)
    differ = {f.name: (theirs[f.name], getattr(data, f.name))
              for f in dataclasses.fields(DataConfig)
              if f.name in theirs and theirs[f.name] != getattr(data, f.name)}
    if differ:
        warnings.warn(f"run '{run}' read other data than this notebook (parameter: (the run's, "
                      f"this one's)): {differ}; its train/test windows are not the ones mapped "
                      "here: set these parameters to the run's values", stacklevel=3)


def _check_encoder_hash(encoder: Encoder, cell: dict, run: str) -> None:
    expected = cell.get("encoder_hash")
    if expected and expected != encoder.weights_hash():
        warnings.warn(f"run '{run}': encoder run '{cell['encoder_run']}' changed since this cell "
                      "was fine-tuned (weights hash differs); 'encoder' embeddings are not those "
                      "of the encoder it started from", stacklevel=3)


def load_sources(cfg: EmbeddingConfig, fragments: Windows) -> list[RunSource]:
    """Every run of ``cfg.runs`` with its cell (a run that has not finished is an error: "run it
    first"). Sources whose labels coincide are titled by their run names."""
    cells = cfg.cells if len(cfg.cells) == len(cfg.runs) else (cfg.cells or ("",)) * len(cfg.runs)
    sources = [load_source(run, cell, fragments, cfg.device, data=cfg)
               for run, cell in zip(cfg.runs, cells)]
    labels = [s.label for s in sources]
    for source in sources:
        if labels.count(source.label) > 1:
            source.title = f"{source.run} · {source.cell_name}"
    return sources


def corpus_windows(cfg: EmbeddingConfig, fragments: Windows | None = None) -> Windows | None:
    """The training part of pretraining corpus ``cfg.corpus`` (None when empty), subsampled to
    ``cfg.n_corpus_windows`` per :func:`sample_corpus`.

    Multi-lead ``fragments``: a ``+target`` corpus is read without the target (a warning says
    so; the target's C-lead records cannot join single-lead windows), and ``target`` alone is
    None."""
    name = cfg.corpus
    if name and fragments is not None and fragments.x.shape[1] > 1:
        base, with_target = parse_corpus(name)
        if with_target or base == "target":
            name = "" if base == "target" else base
            warnings.warn(f"corpus '{cfg.corpus}': the target's {fragments.x.shape[1]}-lead "
                          "records are on the target maps, not among the single-lead corpus "
                          f"windows; corpus map: {name or 'none'}", stacklevel=2)
    if not name:
        return None
    train, _ = load_corpus(name, cfg, seed=cfg.seed)
    return sample_corpus(train, cfg.n_corpus_windows, cfg.seed)


def sample_corpus(corpus: Windows, n_windows: int, seed: int) -> Windows:
    """A seeded subsample of at most ``n_windows`` windows, stratified by domain (0: all)."""
    if not n_windows or len(corpus) <= n_windows:
        return corpus
    rng = np.random.default_rng(seed)
    share = n_windows / len(corpus)
    keep = [rng.choice(np.flatnonzero(corpus.domains == d), replace=False,
                       size=max(1, round(share * (corpus.domains == d).sum())))
            for d in np.unique(corpus.domains)]
    return corpus.subset(np.sort(np.concatenate(keep)))


# --------------------------------------------------------------------------- extraction
def embed(source: RunSource, layer: str, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Vectors ``[N, D]`` of windows ``x [N, C, T]`` at ``layer`` (see module docstring): C is the
    cell's ``n_leads``, or 1 where :func:`reads_one_lead` (the corpus's windows)."""
    if layer not in source.layers:
        raise ValueError(f"layer '{layer}' is not available for {source.label}; "
                         f"available: {source.layers}")
    n_leads = x.shape[1]
    if n_leads != source.n_leads and not (n_leads == 1 and reads_one_lead(source, layer)):
        raise ValueError(f"{source.label} reads {source.n_leads}-lead windows at layer "
                         f"'{layer}', got {n_leads}")
    if layer == "encoder":
        return encode_leads(source.encoder, x, source.lead_pooling, batch_size)
    model = source.classifier
    fn: Callable[[torch.Tensor], torch.Tensor] = {
        "finetuned": lambda xb: _network_embedding(model, xb),
        "head": lambda xb: _head_input(model, xb),
        "logits": model,
    }[layer]
    return _batched(model, fn, x, max(1, batch_size // n_leads))  # ~batch_size series


def predict(source: RunSource, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Single-label: the predicted class ``[N]`` (arg-max of the logits). Multi-label: the
    predicted label set, int8 ``[N, K]``, 1 where the sigmoid reaches ``source.threshold``."""
    logits = embed(source, "logits", x, batch_size)
    if source.is_multilabel:
        return (expit(logits) >= source.threshold).astype(np.int8)
    return logits.argmax(axis=1)


@torch.no_grad()
def _batched(model: nn.Module, fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = [fn(torch.from_numpy(x[i:i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy()


def _members(model: nn.Module) -> list[nn.Module]:
    """The classifiers inside ``model``: itself, or an ensemble's members."""
    return list(model.members) if isinstance(model, HInceptionTime) else [model]


def _network_embedding(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    return torch.cat([_network(m, xb.shape[1]).embed(xb) for m in _members(model)], dim=1)


def _network(member: nn.Module, n_leads: int) -> nn.Module:
    """The member's network, or the per-lead network inside it for windows of one lead."""
    network = member.network
    return network.network if isinstance(network, LeadWise) and n_leads == 1 else network


def _head_input(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """What the last linear layer of each head receives (captured by a forward hook)."""
    captured: list[torch.Tensor] = []
    handles = [_last_linear(m.head).register_forward_hook(
        lambda _module, inputs, _output: captured.append(inputs[0])) for m in _members(model)]
    try:
        model(xb)
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(captured, dim=1)


def _last_linear(head: nn.Module) -> nn.Linear:
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(head).__name__} has no linear layer to read the head output from")
    return linears[-1]


# --------------------------------------------------------------------------- scores
def silhouette_by_class(vectors: np.ndarray, labels: np.ndarray,
                        metric: str = "euclidean") -> float:
    """sklearn's silhouette of ``vectors [N, D]`` grouped by ``labels [N]`` (-1 .. 1; NaN when
    fewer than two labels or fewer than 3 points)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) <= len(np.unique(labels)):
        return float("nan")
    return float(silhouette_score(vectors, labels, metric=metric))


def knn_accuracy(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray,
                 k: int = 5) -> float:
    """Accuracy on ``test [M, D]`` of a k-nearest-neighbour classifier fitted on
    ``train [N, D]`` (``k`` capped at the number of training points)."""
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train))).fit(train, y_train)
    return float((knn.predict(test) == np.asarray(y_test)).mean())


def knn_macro_auroc(train: np.ndarray, y_train: np.ndarray, test: np.ndarray,
                    y_test: np.ndarray, k: int = 5) -> float:
    """Multi-label kNN score: macro-AUROC on ``test [M, D]`` (indicator ``y_test [M, K]``) of the
    share of each point's ``k`` nearest ``train [N, D]`` points (indicator ``y_train [N, K]``)
    that have each class (``k`` capped at N). Classes present in all or none of ``y_test`` are
    left out of the mean (NaN when none is left); chance is 0.5."""
    _, idx = NearestNeighbors(n_neighbors=min(k, len(train))).fit(train).kneighbors(test)
    share = np.asarray(y_train, dtype=np.float64)[idx].mean(axis=1)
    auroc = [a for a in per_class_auroc(np.asarray(y_test), share) if a is not None]
    return float(np.mean(auroc)) if auroc else float("nan")


def domain_mixing(vectors: np.ndarray, domains: np.ndarray, k: int = 10) -> dict:
    """How well domains mix among each window's ``k`` nearest neighbours (itself excluded).

    Per window: the share of neighbours from another domain, divided by the share expected
    under perfect mixing, ``(N - n_d) / (N - 1)``; averaged within each domain, then over domains
    (each domain weighs the same). 1 = as mixed as a random labelling, 0 = fully separated.
    Returns ``{"score": float, "per_domain": {domain: float}}``.
    """
    domains = np.asarray(domains).astype(str)
    names, codes, counts = np.unique(domains, return_inverse=True, return_counts=True)
    n = len(domains)
    if len(names) < 2:
        return {"score": float("nan"), "per_domain": {}}
    k = min(k, n - 1)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(vectors).kneighbors(vectors)
    is_self = idx == np.arange(n)[:, None]  # the window itself, wherever duplicates put it
    neighbours = np.take_along_axis(idx, np.argsort(is_self, axis=1, kind="stable"), 1)[:, :k]
    observed = (codes[neighbours] != codes[:, None]).mean(axis=1)
    ratio = observed / ((n - counts[codes]) / (n - 1))
    per_domain = {str(name): float(ratio[codes == c].mean()) for c, name in enumerate(names)}
    return {"score": float(np.mean(list(per_domain.values()))), "per_domain": per_domain}


def ecg_or_other(domains: np.ndarray) -> np.ndarray:
    """``ECG`` for ECG windows (WESAD ECG and target fragments), ``non-ECG`` for the rest."""
    domains = np.asarray(domains).astype(str)
    return np.where(np.isin(domains, ("ECG", "target")), "ECG", "non-ECG")
