"""Stage 01, data exploration: its typed config and an interactive window browser."""
from __future__ import annotations

import dataclasses

import numpy as np

from ecgnb.config import check_ranges
from ecgnb.data import DataConfig, Windows
from ecgnb.plots import labels_of, waveform


@dataclasses.dataclass(frozen=True)
class ExploreConfig:
    """Parameters of notebooks/01_exploration.ipynb (same names as its parameters cell)."""

    target: str = ""  # a target card (params/datasets/*.yaml); empty: the Fragment DB
    fragment_root: str = ""  # empty: the embedded default data
    wesad_root: str = ""
    data_seed: int = 0
    use_small_data: bool = False
    fs: float = 360.0
    channels: tuple[str, ...] = ("ECG", "EMG", "EDA", "Temp", "Resp")
    split_seed: int = 0
    val_share: float = 0.15
    test_share: float = 0.2
    n_examples: int = 3

    def __post_init__(self):
        check_ranges(self)

    @property
    def data(self) -> DataConfig:
        """The data to read, not normalised: exploration shows the windows as recorded."""
        return DataConfig(target=self.target, fragment_root=self.fragment_root,
                          wesad_root=self.wesad_root, data_seed=self.data_seed,
                          use_small_data=self.use_small_data, fs=self.fs,
                          split_seed=self.split_seed, normalization="none")


def browse(windows: Windows, by: str = "class"):
    """ipywidgets browser: pick a class/domain, then a group (record/subject), then a window.

    A class/domain change selects its first group and shows that group's first window.
    """
    import ipywidgets as widgets
    import plotly.graph_objects as go

    names = labels_of(windows, by)
    kind = widgets.Dropdown(options=list(dict.fromkeys(names)), description=by)
    group = widgets.Dropdown(description="group")
    index = widgets.IntSlider(description="window", min=0)
    fig = go.FigureWidget(waveform(windows, 0))

    def on_kind(_=None):  # a class change shows its first group at once
        options = sorted(set(windows.groups[names == kind.value]))
        with group.hold_trait_notifications():
            group.options = options
        if options and group.value != options[0]:
            group.value = options[0]  # fires on_group
        else:
            on_group()

    def on_group(_=None):
        hits = np.flatnonzero((names == kind.value) & (windows.groups == group.value))
        index.max, index.value = max(len(hits) - 1, 0), 0
        on_index()

    def on_index(_=None):
        hits = np.flatnonzero((names == kind.value) & (windows.groups == group.value))
        if len(hits):
            new = waveform(windows, int(hits[min(index.value, len(hits) - 1)]))
            fig.data[0].y = new.data[0].y
            fig.layout.title = new.layout.title

    kind.observe(on_kind, names="value")
    group.observe(on_group, names="value")
    index.observe(on_index, names="value")
    on_kind()
    return widgets.VBox([widgets.HBox([kind, group, index]), fig])
