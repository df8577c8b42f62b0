"""ecgnb.map_explorer: the widget wiring (click -> waveform) and the offline exports."""
import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from ecgnb import map_explorer as X
from ecgnb import maps as M
from ecgnb.data import Windows

T = 50


def fake_map(source: str, layer: str, view: str, seed: int) -> M.EmbeddingMap:
    """A map without UMAP: random coordinates over 12 windows (8 train, 4 test, or corpus)."""
    rng = np.random.default_rng(seed)
    windows = Windows(rng.normal(size=(12, 1, T)).astype(np.float32), np.arange(12) % 3,
                      np.array([f"r{i % 4}" for i in range(12)]),
                      np.array(["ECG", "EDA"] * 6 if view == "corpus" else ["ECG"] * 12),
                      25.0, ("VF", "VT", "sinus"))
    split = np.array(["corpus"] * 12 if view == "corpus" else ["train"] * 8 + ["test"] * 4)
    prediction = (np.arange(12) + (np.arange(12) % 4 == 0)) % 3
    points = pd.DataFrame({
        "x": rng.normal(size=12), "y": rng.normal(size=12), "window": np.arange(12),
        "split": split, "class": np.array(windows.classes)[windows.y], "domain": windows.domains,
        "group": windows.groups, "prediction": prediction,
        "correct": np.where(prediction == windows.y, "correct", "incorrect")})
    return M.EmbeddingMap(source, layer, view, points, rng.normal(size=(12, 4)), windows, 0.1)


@pytest.fixture()
def maps():
    return [fake_map(src, layer, "target", i) for i, (src, layer) in enumerate(
        [("A", "encoder"), ("B", "encoder"), ("A", "head"), ("B", "head")])] + [
        fake_map("A", "encoder", "corpus", 7), fake_map("B", "encoder", "corpus", 8)]


def test_click_callback_updates_the_waveform(maps):
    ex = X.Explorer(maps)
    assert ex.value("run_a") == "A" and ex.value("run_b") == "B"
    assert [len(f.data) for f in ex.panels] == [6, 6]  # 3 classes, 2 shapes, the selection
    trace = ex.panels[1].data[2]
    window = ex.select(1, 2, 1)
    assert window == int(trace.customdata[1][1])
    m = maps[1]
    np.testing.assert_allclose(ex.waveform.data[0].y, m.windows.x[window, 0])
    np.testing.assert_allclose(ex.waveform.data[0].x[-1], (T - 1) / 25.0)
    assert ex.waveform.layout.title.text.startswith(f"#{window} · ")
    row = m.points[m.points["window"] == window].iloc[0]
    np.testing.assert_allclose(ex.panels[1].data[-1].x, [row["x"]])  # marked on both maps
    np.testing.assert_allclose(ex.panels[0].data[-1].x, [maps[0].points.loc[window, "x"]])


def test_a_multilead_window_shows_lead_ii(maps):
    leads = np.array([1.0, 2.0, 3.0], np.float32)[None, :, None]
    windows = dataclasses.replace(maps[0].windows, x=maps[0].windows.x * leads,
                                  leads=("I", "II", "V1"))
    ex = X.Explorer([dataclasses.replace(maps[0], windows=windows)])
    window = ex.select(0, 0, 0)
    np.testing.assert_allclose(ex.waveform.data[0].y, windows.x[window, 1])
    assert "(lead II)" in ex.waveform.layout.title.text


def test_plotly_click_event_reaches_select(maps):
    ex = X.Explorer(maps)
    calls = []
    ex.select = lambda *args: calls.append(args)

    class Points:
        point_inds = [3]
    ex._on_click(0, 1, None, Points(), None)
    assert calls == [(0, 1, 3)]


def test_dropdowns_redraw_the_panels(maps):
    ex = X.Explorer(maps)
    ex.controls["split"].value = "test"
    assert sum(len(t.x) for t in ex.panels[0].data[:-1] if t.legendgroup != "__shape") == 4
    ex.controls["color"].value = "correct"
    assert {t.name for t in ex.panels[0].data[:-1]} <= {"correct", "incorrect", "train (fitted)",
                                                         "test (placed)"}
    ex.controls["split"].value = "corpus"
    assert ex.panel_map(0).view == "corpus" and len(ex.panels[0].data) > 1
    ex.controls["layer"].value = "head"  # no corpus map for the head layer
    assert len(ex.panels[0].data) == 0 and "no head map" in ex.panels[0].layout.title.text
    ex.controls["run_b"].value = "A"
    ex.controls["split"].value = X.ALL_POINTS
    assert ex.panel_map(1) is maps[2]
    assert isinstance(ex.widget().children, tuple)


def no_network(text: str) -> bool:
    return re.search(r"<script[^>]+src=[\"']?(https?:)?//", text) is None


def test_static_export_is_offline_and_clickable(maps, tmp_path):
    scores = M.scores_table(maps, k=3)
    path = X.write_static(maps, tmp_path / "maps.html", scores, share_plotlyjs=False)
    text = path.read_text(encoding="utf-8")
    assert no_network(text) and '<script src="http' not in text
    assert text.count("Plotly.newPlot") == 3  # target encoder, target head, corpus encoder
    assert "plotly_click" in text and "const WINDOWS" in text and "knn_accuracy" in text
    assert len(text) > 1_000_000  # plotly.js embedded, not fetched
    snapshot = X.Explorer(maps).to_html(tmp_path / "explorer.html").read_text(encoding="utf-8")
    assert no_network(snapshot) and snapshot.count("Plotly.newPlot") == 3


def test_batch_pages_share_one_plotlyjs(maps, tmp_path, monkeypatch):
    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path))
    pages = [X.write_static(maps, tmp_path / "g" / "embeddings" / name / "maps.html")
             for name in ("one", "two")]
    bundles = list(tmp_path.glob("plotly-*.min.js"))
    assert len(bundles) == 1 and bundles[0].stat().st_size > 1_000_000
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert len(text) < 200_000 and no_network(text)
        assert f'src="../../../{bundles[0].name}"' in text
    interactive = X.write_static(maps, tmp_path / "embeddings" / "interactive" / "maps.html")
    assert interactive.stat().st_size > 1_000_000  # a run by hand embeds its copy


def test_waveforms_are_stored_at_display_precision(maps):
    y = maps[0].windows.x[3, 0]
    packed = X.quantize(y)
    assert np.abs(X.dequantize(packed) - y).max() < 1e-4 * np.ptp(y)
    assert len(packed[2]) == 4 * ((2 * len(y) + 2) // 3)  # 2 bytes per sample, base64
    assert X._waveforms(maps)["target"]["x"]["3"] == packed


def test_thumbnails_are_pngs(maps, tmp_path):
    paths = X.write_thumbnails(maps, tmp_path)
    assert [p.name for p in paths] == ["maps_target.png", "maps_corpus.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_comparison_figure_menu_switches_colourings(maps):
    fig = M.comparison_figure(maps[:2], ["class", "correct"])
    visible = [t.visible for t in fig.data]
    shapes = [t.name for t in fig.data if t.legendgroup == "__shape"]
    assert shapes == ["train (fitted)", "test (placed)"]  # dots vs diamonds, in the legend
    assert visible.count(False) == 4 and visible[:10].count(True) == 6  # 3 classes x 2, 2 x 2
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["class", "correct"]
    assert buttons[1].args[0]["visible"] == [not v for v in visible[:10]] + [True, True]
