"""The embedding explorer: interactive in JupyterLab, and its offline export for batch runs.

:class:`Explorer` shows two maps side by side (run A and run B, e.g. "ECG" vs "ECG continued1")
with Dropdowns for the runs, the layer, the split and the colouring (class, domain, source
record, correct/incorrect prediction, split); clicking a point shows that window's waveform in a
third figure (of a multi-lead window, lead II where the leads are named so, else the first:
:func:`ecgnb.plots.shown_lead`) and marks the same window on both maps. The callback logic is
the plain method :meth:`Explorer.select`, so it can be called (and tested) without a browser.

:func:`write_static` writes the same views into one offline HTML file (no network; plotly.js
embedded, or one copy shared by a batch run's pages): per layer, the runs side by side with a
colouring menu, and a waveform panel that follows clicks (waveforms stored at display precision). :func:`write_thumbnails` writes matplotlib PNGs of the same coordinates.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import html
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from ecgnb.files import write_text
from ecgnb.maps import (COLOR_BY, EmbeddingMap, comparison_figure, label_colors, panel_traces,
                        split_legend, thumbnail)
from ecgnb.plots import lead_note, plotlyjs_for, shown_lead

ALL_POINTS = "all"  # split option: training and placed points together
# Every figure has a fixed size and the boxes wrap: plotly's widget sizes a figure once, before
# JupyterLab attaches it (so "autosize" gives plotly's 700 px default, wider than a 34 % column),
# and never again. 440 px: three side by side in a 1600-px window, two or one in a 1000-px one.
PANEL_WIDTH = 440
MAP_HEIGHT = 420
PANEL_LAYOUT = dict(width=PANEL_WIDTH, height=MAP_HEIGHT + 150, autosize=False,
                    title=dict(font=dict(size=12)), margin=dict(l=10, r=10, t=60, b=10),
                    xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False),
                    legend=dict(orientation="h", y=-0.02, yanchor="top", font=dict(size=10),
                                traceorder="normal"))  # "normal": entries flow, not one per row
WAVEFORM_LAYOUT = dict(width=PANEL_WIDTH, height=MAP_HEIGHT, autosize=False,
                       title=dict(text="click a point to see its window", font=dict(size=12)),
                       xaxis_title="s", margin=dict(l=40, r=10, t=60, b=40))


def split_options(maps: Sequence[EmbeddingMap]) -> list[str]:
    """The split choices: train, each placed split, ``all`` (target maps) and ``corpus``."""
    target = [s for m in maps if m.view == "target" for s in m.points["split"].unique()]
    options = list(dict.fromkeys(sorted(target, key=lambda s: s != "train")))
    options += [ALL_POINTS] if options else []
    return options + (["corpus"] if any(m.view == "corpus" for m in maps) else [])


def window_title(m: EmbeddingMap, row: int, with_prediction: bool = True) -> str:
    """E.g. ``#12 · 3_Threatening_VT · ECG · group 418 · test`` (a multi-lead window: then the
    lead shown, `` (lead II)``), then (``with_prediction``) ``<br>predicted 6_Sinus_rhythm
    (incorrect)``."""
    p = m.points.loc[row]
    text = (f"#{p['window']} · {p['class']} · {p['domain']} · group {p['group']} · {p['split']}"
            f"{lead_note(m.windows)}")
    if with_prediction and p["correct"] != "n/a":
        predicted = p["prediction"]  # multi-label: the label set's name
        name = predicted if isinstance(predicted, str) else m.windows.classes[int(predicted)]
        text += f"<br>predicted {name} ({p['correct']})"
    return text


class Explorer:
    """Two UMAP panels and a waveform panel, driven by Dropdowns (see module docstring).

    ``maps``: :class:`~ecgnb.maps.EmbeddingMap` objects from :func:`ecgnb.maps.build_maps`.
    ``widget()`` returns the ipywidgets layout to display.
    """

    def __init__(self, maps: Sequence[EmbeddingMap], color_by: str = "class"):
        import ipywidgets as widgets

        self.maps = list(maps)
        if not self.maps:
            raise ValueError("the explorer needs at least one map")
        sources = list(dict.fromkeys(m.source for m in self.maps))
        splits = split_options(self.maps)
        self.controls = {
            "run_a": widgets.Dropdown(options=sources, value=sources[0], description="run A"),
            "run_b": widgets.Dropdown(options=sources, value=sources[-1], description="run B"),
            "layer": widgets.Dropdown(options=list(dict.fromkeys(m.layer for m in self.maps)),
                                      description="layer"),
            "split": widgets.Dropdown(options=splits, description="split",
                                      value=ALL_POINTS if ALL_POINTS in splits else splits[0]),
            "color": widgets.Dropdown(options=COLOR_BY, value=color_by, description="colour"),
        }
        self.panels = [go.FigureWidget(layout=PANEL_LAYOUT) for _ in range(2)]
        self.waveform = go.FigureWidget(go.Scatter(x=[], y=[], mode="lines", line=dict(width=1)),
                                        layout=WAVEFORM_LAYOUT)
        self.selected_: tuple[str, int] | None = None  # (view, window) of the last click
        for control in self.controls.values():
            control.observe(lambda _change: self.redraw(), names="value")
        self.redraw()

    # ----------------------------------------------------------------- state
    def value(self, name: str) -> str:
        return self.controls[name].value

    def panel_map(self, panel: int) -> EmbeddingMap | None:
        """The map shown in ``panel`` (0: run A, 1: run B) for the current choices."""
        view = "corpus" if self.value("split") == "corpus" else "target"
        source = self.value("run_a" if panel == 0 else "run_b")
        hits = [m for m in self.maps if (m.source, m.layer, m.view) ==
                (source, self.value("layer"), view)]
        return hits[0] if hits else None

    def _shown(self, m: EmbeddingMap) -> EmbeddingMap:
        """``m`` restricted to the chosen split (rows keep their index in ``m.points``)."""
        split = self.value("split")
        if split in (ALL_POINTS, "corpus"):
            return m
        return dataclasses.replace(m, points=m.points[m.points["split"] == split])

    # ----------------------------------------------------------------- drawing
    def redraw(self) -> None:
        """Rebuild both panels for the current Dropdown values."""
        shown_maps = [self.panel_map(p) for p in range(2)]
        color = self.value("color")
        colors = label_colors([m for m in shown_maps if m is not None], color)
        for panel, (fig, m) in enumerate(zip(self.panels, shown_maps)):
            fig.data = []
            if m is None:
                fig.layout.title.text = (f"no {self.value('layer')} map for this run "
                                         f"({self.value('split')})")
                continue
            shown = self._shown(m)
            fig.add_traces(panel_traces(shown, color, colors) + split_legend([shown])
                           + [_marker_trace()])
            fig.layout.title.text = f"{m.source}<br>{m.layer}"
            fig.layout.legend.title.text = color
            for index, trace in enumerate(fig.data[:-1]):
                trace.on_click(functools.partial(self._on_click, panel, index))
        self._mark_selected()

    def _on_click(self, panel: int, trace_index: int, _trace, points, _selector) -> None:
        if points.point_inds:
            self.select(panel, trace_index, points.point_inds[0])

    def select(self, panel: int, trace_index: int, point_index: int) -> int:
        """Show the waveform of point ``point_index`` of trace ``trace_index`` in ``panel`` and
        mark that window on both maps; returns the window's index (the click callback)."""
        m = self.panel_map(panel)
        row, window = (int(v) for v in self.panels[panel].data[trace_index].customdata[point_index])
        self.selected_ = (m.view, window)
        t = np.arange(m.windows.n_timesteps) / m.windows.fs
        with self.waveform.batch_update():
            self.waveform.data[0].x = t
            self.waveform.data[0].y = m.windows.x[window, shown_lead(m.windows)]
            self.waveform.layout.xaxis.range = (0.0, m.windows.n_timesteps / m.windows.fs)
            self.waveform.layout.title.text = window_title(m, row)
        self._mark_selected()
        return window

    def _mark_selected(self) -> None:
        for panel, fig in enumerate(self.panels):
            m = self.panel_map(panel)
            if m is None or not fig.data:
                continue
            hit = (m.points.iloc[0:0] if self.selected_ is None or self.selected_[0] != m.view
                   else m.points[m.points["window"] == self.selected_[1]])
            fig.data[-1].x, fig.data[-1].y = hit["x"].to_numpy(), hit["y"].to_numpy()

    def widget(self):
        """Controls on top; map A, map B and the waveform side by side, wrapping onto the next
        line where the window is narrower (no horizontal scrolling)."""
        import ipywidgets as widgets

        wrap = dict(display="flex", flex_flow="row wrap", width="100%")
        boxes = [widgets.Box([f], layout=widgets.Layout(width=f"{PANEL_WIDTH + 4}px",
                                                        overflow="hidden"))
                 for f in self.panels + [self.waveform]]
        controls = [widgets.Box(list(self.controls.values()), layout=widgets.Layout(**wrap))]
        return widgets.VBox(controls + [widgets.Box(boxes, layout=widgets.Layout(**wrap))],
                            layout=widgets.Layout(width="100%"))

    def to_html(self, path) -> Path:
        """The explorer's current state (choices, both maps, the waveform) as an offline page."""
        controls = "".join(f"<label>{c.description} <select disabled><option>"
                           f"{html.escape(str(c.value))}</option></select></label>"
                           for c in self.controls.values())
        figures = [go.Figure(f) for f in self.panels + [self.waveform]]
        plotlyjs = plotlyjs_for(path)
        body = "".join(f"<div>{_figure_div(f, plotlyjs if i == 0 else False)}</div>"
                       for i, f in enumerate(figures))
        page = (f"<p><b>Embedding explorer</b> (snapshot)</p><div class='controls'>{controls}"
                f"</div><div class='snapshot'>{body}</div>")
        return _write_page(path, "ecgnb embedding explorer", page)


def _marker_trace() -> go.Scatter:
    return go.Scatter(x=[], y=[], mode="markers", name="selected", showlegend=False,
                      hoverinfo="skip", marker=dict(symbol="star", size=18, color="gold",
                                                    line=dict(width=1.5, color="black")))


# --------------------------------------------------------------------------- offline export
def comparison_figures(maps: Sequence[EmbeddingMap],
                       color_bys: Sequence[str] = COLOR_BY) -> dict[str, go.Figure]:
    """``"<view> · <layer>"`` -> the runs' maps side by side, with a menu of the colourings
    that tell its points apart."""
    figures = {}
    for view, layer in dict.fromkeys((m.view, m.layer) for m in maps):
        row = [m for m in maps if (m.view, m.layer) == (view, layer)]
        usable = [c for c in color_bys
                  if len({v for m in row for v in m.points[c]}) > 1] or list(color_bys[:1])
        figures[f"{view} · {layer}"] = comparison_figure(row, usable, title=f"{view} · {layer}")
    return figures


def write_static(maps: Sequence[EmbeddingMap], path, scores: pd.DataFrame | None = None,
                 color_bys: Sequence[str] = COLOR_BY, title: str = "Embedding maps",
                 share_plotlyjs: bool | None = None) -> Path:
    """One offline HTML page: per view and layer, the runs side by side (colouring menu), the
    scores table, and a waveform panel that shows any clicked window (or the one linked as
    ``maps.html#<view>:<window>``). plotly.js embedded or shared as in
    :func:`ecgnb.plots.plotlyjs_for`; waveforms at display precision (:func:`quantize`)."""
    plotlyjs = plotlyjs_for(path, share_plotlyjs)
    sections = [f"<section class='ecgnb-map' data-view='{name.split(' · ')[0]}'>"
                f"{_figure_div(fig, plotlyjs if i == 0 else False)}</section>"
                for i, (name, fig) in enumerate(comparison_figures(maps, color_bys).items())]
    table = "" if scores is None else scores.round(3).to_html(index=False, border=0)
    page = (f"<h1>{html.escape(title)}</h1><div class='layout'><div class='maps'>"
            f"{''.join(sections)}<h2>Scores</h2>{table}</div><div class='side'><div class='sticky'>"
            "<p>Click a point to see its window.</p><div id='waveform'></div></div></div></div>"
            f"<script>const WINDOWS = {json.dumps(_waveforms(maps))};{_CLICK_JS}</script>")
    return _write_page(path, title, page)


def _waveforms(maps: Sequence[EmbeddingMap]) -> dict:
    """Per view: ``fs`` and, per window shown, its samples (of :func:`~ecgnb.plots.shown_lead`)
    at display precision (:func:`quantize`) and its title."""
    out: dict[str, dict] = {}
    for m in maps:
        view = out.setdefault(m.view, {"fs": m.windows.fs, "x": {}, "title": {}})
        lead = shown_lead(m.windows)
        for row, window in zip(m.points.index, m.points["window"]):
            if str(window) not in view["x"]:
                view["x"][str(window)] = quantize(m.windows.x[window, lead])
                view["title"][str(window)] = window_title(m, row, with_prediction=False)
    return out


def quantize(y: np.ndarray) -> list:
    """``[offset, step, base64 of int16 little-endian]``: ``y ~ offset + step * q``, 65,535
    levels over the window's range (far below a pixel; a quarter of the size of 3-decimal
    JSON numbers). :func:`dequantize` and the page's script read it back."""
    y = np.asarray(y, dtype=np.float64)
    low, high = float(y.min()), float(y.max())
    step = (high - low) / 65534 or 1.0
    q = np.round((y - low) / step - 32767).astype("<i2")
    return [low + 32767 * step, step, base64.b64encode(q.tobytes()).decode("ascii")]


def dequantize(packed: list) -> np.ndarray:
    offset, step, data = packed
    return offset + step * np.frombuffer(base64.b64decode(data), dtype="<i2").astype(np.float64)


_CLICK_JS = r"""
window.addEventListener('load', function () {
  function samples(packed) {  // [offset, step, base64 int16 little-endian], see quantize()
    const bytes = Uint8Array.from(atob(packed[2]), c => c.charCodeAt(0));
    const q = new DataView(bytes.buffer), y = new Array(bytes.length / 2);
    for (let i = 0; i < y.length; i++) y[i] = packed[0] + packed[1] * q.getInt16(2 * i, true);
    return y;
  }
  function show(view, w) {
    const d = WINDOWS[view], y = samples(d.x[w]);
    Plotly.react('waveform', [{x: y.map((_, i) => i / d.fs), y: y, mode: 'lines',
      line: {width: 1}}], {title: {text: d.title[w], font: {size: 12}}, height: 320,
      margin: {l: 40, r: 10, t: 50, b: 40}, xaxis: {title: {text: 's'}}},
      {displayModeBar: false});
  }
  const linked = /^#(\w+):(\d+)$/.exec(window.location.hash);  // e.g. maps.html#target:12
  if (linked && WINDOWS[linked[1]] && WINDOWS[linked[1]].x[linked[2]]) show(linked[1], linked[2]);
  document.querySelectorAll('.ecgnb-map').forEach(function (section) {
    const div = section.querySelector('.plotly-graph-div');
    div.on('plotly_click', function (ev) {
      show(section.dataset.view, String(ev.points[0].customdata[1]));
    });
  });
});
"""
# Grid tracks exist before the figures render, so plotly sizes each figure to its column.
_STYLE = ("body{font-family:sans-serif;margin:12px}"
          ".layout{display:grid;grid-template-columns:minmax(0,1fr) 360px;gap:12px}"
          ".snapshot{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:8px}"
          ".sticky{position:sticky;top:8px} #waveform{border:1px solid #ddd;min-height:320px}"
          ".controls label{margin-right:14px;font-size:13px} .controls select{color:#000}"
          "table{border-collapse:collapse;font-size:12px} td,th{padding:2px 6px}")


def _figure_div(fig: go.Figure, include_plotlyjs: bool | str) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=include_plotlyjs,
                       config={"displaylogo": False})


def _write_page(path, title: str, body: str) -> Path:
    """Write a full HTML page atomically."""
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>")
    return write_text(path, page, durable=False)


def write_thumbnails(maps: Sequence[EmbeddingMap], folder, dpi: int = 110) -> list[Path]:
    """PNG thumbnails: target maps by class and corpus maps by domain (rows: layers, columns:
    runs), drawn with matplotlib from the same coordinates."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for view, color_by in (("target", "class"), ("corpus", "domain")):
        chosen = [m for m in maps if m.view == view]
        if not chosen:
            continue
        grid = [[m for m in chosen if m.layer == layer]
                for layer in dict.fromkeys(m.layer for m in chosen)]
        fig = thumbnail(grid, color_by)
        fig.savefig(folder / f"maps_{view}.png", dpi=dpi)
        written.append(folder / f"maps_{view}.png")
    return written
