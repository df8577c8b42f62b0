"""2-D UMAP maps of embeddings: fitting, placing, scoring, and their figures.

A target map is fitted on the *training* fragments' embeddings; the validation or test fragments
are placed on it with ``transform`` (never fitted). A corpus map is fitted on pretraining-corpus
windows to show domains (for a multi-lead source only at the layers that read one lead,
:func:`ecgnb.embeddings.reads_one_lead`). Every map is seeded (umap's ``random_state``, which
also makes it single-threaded, and the eigensolver of its spectral start, :func:`seeded_eigsh`)
and keeps its rows in :attr:`EmbeddingMap.points`. Multi-label
windows are labelled, scored and judged correct by label set (:mod:`ecgnb.embeddings`).

numba: umap-learn jit-compiles its functions on first use in every process (tens of seconds on a
CPU), and only one of them asks numba for an on-disk cache (pynndescent's do). :func:`prepare_umap`
turns on numba's on-disk cache for the others, so compilation is paid once per machine; the cache
lands next to the package (``__pycache__``) or in numba's user cache folder when that is read-only,
or in ``NUMBA_CACHE_DIR`` when set before umap is imported.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from ecgnb.data import Windows
from ecgnb.data.windows import label_names
from ecgnb.embeddings import (EmbeddingConfig, RunSource, domain_mixing, ecg_or_other, embed,
                              knn_accuracy, knn_macro_auroc, predict, reads_one_lead,
                              silhouette_by_class)
from ecgnb.plots import PALETTE

COLOR_BY = ("class", "domain", "group", "correct", "split")
CORRECT_COLORS = {"correct": "#2ca02c", "incorrect": "#d62728", "n/a": "#7f7f7f"}
CORPUS_LAYERS = ("encoder", "finetuned")  # head outputs are class scores: not mapped on corpora
UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.distances", "umap.utils", "umap.spectral",
                "umap.sparse")


@dataclasses.dataclass(frozen=True)
class UMAPSettings:
    """umap-learn's parameters that the study set (n_neighbors 5, min_dist 0.2)."""

    n_neighbors: int = 5
    min_dist: float = 0.2
    metric: str = "euclidean"


def prepare_umap():
    """Import umap-learn with numba's on-disk cache on for all its jitted functions (idempotent).

    Returns the ``umap`` module.
    """
    import importlib

    import umap
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name in UMAP_MODULES:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (isinstance(obj, Dispatcher) and obj.__module__ == name
                    and isinstance(getattr(obj, "_cache", None), NullCache)):
                obj.enable_caching()
    return umap


@contextlib.contextmanager
def seeded_eigsh(seed: int):
    """Within the block, ``scipy.sparse.linalg.eigsh`` draws from a generator seeded with
    ``seed`` when its caller gives it none.

    umap's spectral start solves each connected component of the k-NN graph with ``eigsh``
    and passes no ``rng``; scipy then draws ARPACK's restart vectors from fresh OS entropy. A
    component with a repeated eigenvalue needs such restarts: identical windows (a flat EDA
    trace, z-scored to zeros, is common in a corpus) form a complete graph whose eigenvalues
    all coincide, and the map differed between two calls with the same seed.
    """
    import scipy.sparse.linalg
    import sklearn.manifold._spectral_embedding  # umap's layout of > 4 components

    original = scipy.sparse.linalg.eigsh

    @functools.wraps(original)
    def eigsh(*args, rng=None, **kwargs):
        return original(*args, rng=np.random.default_rng(seed) if rng is None else rng, **kwargs)

    holders = [m for m in (scipy.sparse.linalg, sklearn.manifold._spectral_embedding)
               if getattr(m, "eigsh", None) is original]
    for module in holders:
        module.eigsh = eigsh
    try:
        yield
    finally:
        for module in holders:
            module.eigsh = original


def fit_umap(vectors: np.ndarray, settings: UMAPSettings, seed: int):
    """A seeded ``umap.UMAP`` fitted on ``vectors [N, D]`` (``embedding_`` holds ``[N, 2]``)."""
    umap = prepare_umap()
    reducer = umap.UMAP(n_neighbors=max(2, min(settings.n_neighbors, len(vectors) - 1)),
                        min_dist=settings.min_dist, metric=settings.metric, n_components=2,
                        random_state=seed, transform_seed=seed, n_jobs=1)
    with warnings.catch_warnings(), seeded_eigsh(seed):
        warnings.filterwarnings("ignore", message=".*(spectral|disconnected|connected comp).*")
        return reducer.fit(np.asarray(vectors, dtype=np.float32))


def place(reducer, vectors: np.ndarray) -> np.ndarray:
    """Coordinates ``[M, 2]`` of new ``vectors [M, D]`` on a fitted map (never refitted)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(disconnected|connected comp).*")
        return reducer.transform(np.asarray(vectors, dtype=np.float32))


# --------------------------------------------------------------------------- maps
@dataclasses.dataclass
class EmbeddingMap:
    """One run's embeddings at one layer, on a 2-D map.

    ``points``: one row per window with ``x, y`` (map coordinates), ``window`` (row of
    ``windows``), ``split`` (train, val, test or corpus), ``class`` (multi-label: the label set,
    :func:`~ecgnb.data.windows.label_names`), ``domain``, ``group`` (source record or subject),
    ``prediction`` (the class index; multi-label: the predicted label set's name) and ``correct``
    (correct, incorrect or n/a).
    ``vectors [N, D]``: the embeddings, in the rows' order. ``view``: target or corpus.
    """

    source: str
    layer: str
    view: str
    points: pd.DataFrame
    vectors: np.ndarray
    windows: Windows
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return f"{self.source} · {self.layer}"


def target_map(source: RunSource, layer: str, fragments: Windows, splits: dict[str, np.ndarray],
               split: str, settings: UMAPSettings, seed: int) -> EmbeddingMap:
    """Fit on the training fragments' embeddings, place ``split`` (val or test) with transform."""
    start = time.perf_counter()
    train_idx, placed_idx = splits["train"], splits[split]
    train_vec = embed(source, layer, fragments.x[train_idx])
    placed_vec = embed(source, layer, fragments.x[placed_idx])
    reducer = fit_umap(train_vec, settings, seed)
    coords = np.vstack([reducer.embedding_, place(reducer, placed_vec)])
    idx = np.concatenate([train_idx, placed_idx])
    names = np.repeat(["train", split], [len(train_idx), len(placed_idx)])
    points = _points(fragments, idx, names, coords, predict(source, fragments.x[idx]))
    return EmbeddingMap(source.label, layer, "target", points, np.vstack([train_vec, placed_vec]),
                        fragments, time.perf_counter() - start)


def corpus_map(source: RunSource, layer: str, corpus: Windows, settings: UMAPSettings,
               seed: int) -> EmbeddingMap:
    """Fit on pretraining-corpus windows (every domain) to see how domains sit."""
    start = time.perf_counter()
    vectors = embed(source, layer, corpus.x)
    reducer = fit_umap(vectors, settings, seed)
    idx = np.arange(len(corpus))
    points = _points(corpus, idx, np.full(len(corpus), "corpus"), reducer.embedding_, None)
    return EmbeddingMap(source.label, layer, "corpus", points, vectors, corpus,
                        time.perf_counter() - start)


def _points(windows: Windows, idx: np.ndarray, split: np.ndarray, coords: np.ndarray,
            prediction: np.ndarray | None) -> pd.DataFrame:
    """The map's rows; a multi-label ``prediction [N, K]`` is correct when it equals the label
    set, and is shown by its name."""
    y = windows.y[idx]
    classes = label_names(y, windows.classes)
    labelled = y.any(axis=1) if windows.is_multilabel else y >= 0
    if prediction is None or not labelled.any():
        correct = np.full(len(idx), "n/a")
        prediction = np.full(len(idx), -1)
    else:
        hit = (prediction == y).all(axis=1) if windows.is_multilabel else prediction == y
        correct = np.where(~labelled, "n/a", np.where(hit, "correct", "incorrect"))
        if windows.is_multilabel:
            prediction = label_names(prediction, windows.classes)
    return pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "window": idx, "split": split,
                         "class": classes, "domain": windows.domains[idx].astype(str),
                         "group": windows.groups[idx].astype(str), "prediction": prediction,
                         "correct": correct})


def build_maps(sources: Sequence[RunSource], cfg: EmbeddingConfig, fragments: Windows,
               splits: dict[str, np.ndarray], corpus: Windows | None = None) -> list[EmbeddingMap]:
    """Target maps for every source x layer; corpus maps for the layers of :data:`CORPUS_LAYERS`
    that read the corpus's single-lead windows (a warning names those left out)."""
    settings = UMAPSettings(cfg.n_neighbors, cfg.min_dist, cfg.metric)
    jobs = [(s, layer, "target") for s in sources for layer in cfg.layers if layer in s.layers]
    if corpus is not None:
        wanted = [(s, layer) for s in sources for layer in cfg.layers
                  if layer in s.layers and layer in CORPUS_LAYERS]
        skipped = [f"{s.label} · {layer}" for s, layer in wanted if not reads_one_lead(s, layer)]
        if skipped:
            warnings.warn(f"no corpus map for {skipped}: a network over C input leads does not "
                          "read the corpus's single-lead windows", stacklevel=2)
        jobs += [(s, layer, "corpus") for s, layer in wanted if reads_one_lead(s, layer)]
    maps = []
    for source, layer, view in tqdm(jobs, desc="UMAP maps", leave=False):
        if view == "target":
            maps.append(target_map(source, layer, fragments, splits, cfg.split, settings, cfg.seed))
        else:
            maps.append(corpus_map(source, layer, corpus, settings, cfg.seed))
    return maps


# --------------------------------------------------------------------------- scores
def score_map(m: EmbeddingMap, k: int = 5) -> list[dict]:
    """The map's scores in the embedding space and on the 2-D map (one row each).

    Target maps: silhouette by class and kNN accuracy (fitted on train, scored on the placed
    split), plus the classifier's accuracy there; multi-label: silhouette by label set,
    ``knn_macro_auroc`` and ``classifier_exact_match`` (the share of placed windows whose
    predicted label set is theirs). Corpus maps: domain mixing over all domains and ECG vs
    non-ECG, and the silhouette by domain.
    """
    rows = []
    for space, values in (("embedding", m.vectors), ("map", m.points[["x", "y"]].to_numpy())):
        row = {"run": m.source, "layer": m.layer, "view": m.view, "space": space,
               "n_windows": len(m.points), "seconds": m.seconds}
        row.update(_target_scores(m, values, k) if m.view == "target" else
                   _corpus_scores(m, values, k))
        rows.append(row)
    return rows


def _target_scores(m: EmbeddingMap, values: np.ndarray, k: int) -> dict:
    train = (m.points["split"] == "train").to_numpy()
    y = m.points["class"].to_numpy()
    share_correct = float((m.points["correct"][~train] == "correct").mean())
    if m.windows.is_multilabel:
        sets = m.windows.indicator()[m.points["window"].to_numpy()]
        return {"silhouette_class": silhouette_by_class(values[~train], y[~train]),
                "knn_macro_auroc": knn_macro_auroc(values[train], sets[train], values[~train],
                                                   sets[~train], k),
                "classifier_exact_match": share_correct}
    return {"silhouette_class": silhouette_by_class(values[~train], y[~train]),
            "knn_accuracy": knn_accuracy(values[train], y[train], values[~train], y[~train], k),
            "classifier_accuracy": share_correct}


def _corpus_scores(m: EmbeddingMap, values: np.ndarray, k: int) -> dict:
    domains = m.points["domain"].to_numpy()
    return {"mixing_domains": domain_mixing(values, domains, k)["score"],
            "mixing_ecg_vs_other": domain_mixing(values, ecg_or_other(domains), k)["score"],
            "silhouette_domain": silhouette_by_class(values, domains)}


def scores_table(maps: Sequence[EmbeddingMap], k: int = 5) -> pd.DataFrame:
    """One row per map and space (embedding, map); NaN where a score does not apply."""
    return pd.DataFrame([row for m in maps for row in score_map(m, k)])


# --------------------------------------------------------------------------- figures
def label_colors(maps: Sequence[EmbeddingMap], color_by: str) -> dict[str, str]:
    """One colour per label of ``color_by``, the same in every panel."""
    labels = sorted({str(v) for m in maps for v in m.points[color_by]})
    if color_by == "correct":
        return {label: CORRECT_COLORS.get(label, "#7f7f7f") for label in labels}
    palette = PALETTE if len(labels) <= len(PALETTE) else qualitative.Dark24
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def panel_traces(m: EmbeddingMap, color_by: str, colors: dict[str, str],
                 shown: set[str] | None = None) -> list[go.Scatter]:
    """One scatter trace per label; training points are dots, placed points outlined diamonds.

    ``customdata`` holds ``[row in m.points, window]`` per point; a label already in ``shown``
    gets no second legend entry.
    """
    traces, shown = [], set() if shown is None else shown
    for label, rows in m.points.groupby(m.points[color_by].astype(str), sort=True):
        is_train = (rows["split"] == "train").to_numpy() | (rows["split"] == "corpus").to_numpy()
        hover = ("#" + rows["window"].astype(str) + " " + rows["class"] + " · " + rows["group"]
                 + " · " + rows["split"] + np.where(rows["correct"] == "n/a", "",
                                                    " · predicted " + rows["correct"]))
        traces.append(go.Scatter(
            x=rows["x"], y=rows["y"], mode="markers", name=label[:24], legendgroup=label,
            showlegend=label not in shown, text=hover,
            customdata=np.column_stack([rows.index.to_numpy(), rows["window"].to_numpy()]),
            hovertemplate="%{text}<extra></extra>",
            marker=dict(color=colors[label], size=np.where(is_train, 6, 9),
                        symbol=np.where(is_train, "circle", "diamond"),
                        line=dict(width=np.where(is_train, 0, 1), color="black"))))
        shown.add(label)
    return traces


def split_legend(maps: Sequence[EmbeddingMap]) -> list[go.Scatter]:
    """Legend-only entries for the marker shapes: dots (fitted: train or corpus) and diamonds
    (placed with ``transform``), when a map has placed points."""
    placed = sorted({s for m in maps for s in m.points["split"].unique()} - {"train", "corpus"})
    if not placed:
        return []
    style = dict(color="#bbbbbb", line=dict(color="black"))
    return [go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup="__shape",
                       hoverinfo="skip",
                       marker=dict(symbol=symbol, size=size, **style, line_width=width))
            for name, symbol, size, width in (("train (fitted)", "circle", 6, 0),
                                              (f"{'/'.join(placed)} (placed)", "diamond", 9, 1))]


def comparison_figure(maps: Sequence[EmbeddingMap], color_by: str | Sequence[str] = "class",
                      title: str = "") -> go.Figure:
    """The maps side by side (e.g. one run per column), coloured by ``color_by``; several
    colourings give a menu that switches between them (the first one shown)."""
    color_bys = [color_by] if isinstance(color_by, str) else list(color_by)
    fig = make_subplots(rows=1, cols=len(maps), subplot_titles=[m.source for m in maps],
                        horizontal_spacing=0.04)
    owner = []  # the colouring of every trace, in order
    for c in color_bys:
        colors, shown = label_colors(maps, c), set()
        for col, m in enumerate(maps, start=1):
            for trace in panel_traces(m, c, colors, shown):
                fig.add_trace(trace.update(visible=c == color_bys[0]), row=1, col=col)
                owner.append(c)
    for trace in split_legend(maps):
        fig.add_trace(trace, row=1, col=1)
        owner.append(None)  # shown under every colouring
    if len(color_bys) > 1:
        buttons = [dict(label=c, method="update", args=[{"visible": [o in (c, None)
                                                                     for o in owner]},
                                                        {"legend.title.text": c}])
                   for c in color_bys]
        fig.update_layout(updatemenus=[dict(buttons=buttons, x=0, xanchor="left", y=1.16,
                                            yanchor="top", direction="down")])
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(title=dict(text=title or "UMAP (dots: train, diamonds: placed split)",
                                 x=0.5 if len(color_bys) > 1 else 0.05),
                      height=560, legend=dict(title_text=color_bys[0], orientation="h",
                                              y=-0.02, yanchor="top", traceorder="normal"),
                      margin=dict(l=20, r=20, t=100, b=20))
    return fig


def thumbnail(grid: Sequence[Sequence[EmbeddingMap]], color_by: str = "class"):
    """A static matplotlib figure of maps (rows x columns), for PNG thumbnails."""
    from matplotlib.figure import Figure

    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    fig = Figure(figsize=(4.2 * n_cols + 1.8, 3.8 * n_rows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    colors = label_colors([m for row in grid for m in row], color_by)
    for r, row in enumerate(grid):
        for c, m in enumerate(row):
            _draw(axes[r, c], m, color_by, colors)
    handles = [axes[0, 0].scatter([], [], color=v, s=20, label=k[:24]) for k, v in colors.items()]
    fig.legend(handles=handles, loc="outside right upper", title=color_by, fontsize=8)
    return fig


def _draw(ax, m: EmbeddingMap, color_by: str, colors: dict[str, str]) -> None:
    placed = ~m.points["split"].isin(["train", "corpus"]).to_numpy()
    color = m.points[color_by].astype(str).map(colors).to_numpy()
    ax.scatter(m.points["x"][~placed], m.points["y"][~placed], c=color[~placed], s=12)
    ax.scatter(m.points["x"][placed], m.points["y"][placed], c=color[placed], s=30, marker="D",
               edgecolors="black", linewidths=0.6)
    ax.set_title(m.title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
