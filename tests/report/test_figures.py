"""The report's plotly figures, and that each key figure shows the same points in plotly and in
matplotlib."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ecgnb.report import comparisons, figure_data, figures, static
from ecgnb.report.collect import synthetic_results


def test_plots_return_figures(known):
    table = comparisons.study_table(known, n_boot=100)
    assert isinstance(figures.table_heatmap(table), go.Figure)
    assert isinstance(figures.scenario_boxes(known), go.Figure)
    assert figures.label_efficiency(known) is None
    two = pd.concat([known, known.assign(label_fraction=0.1, macro_f1=known["macro_f1"] - 0.2)])
    curve = figures.label_efficiency(two)
    assert isinstance(curve, go.Figure) and len(curve.data) >= 2


def realised_results():
    """Two label fractions whose realised shares (93 % of the request) are recorded."""
    frame = synthetic_results(n_seeds=3, fractions=(1.0, 0.2))
    return frame.assign(label_fraction_realised=0.93 * frame["label_fraction"])


def plotly_points(fig) -> set:
    return {(round(x, 9), round(y, 9)) for trace in fig.data for x, y in zip(trace.x, trace.y)}


def matplotlib_points(fig) -> set:
    return {(round(x, 9), round(y, 9)) for ax in fig.axes for container in ax.containers
            for x, y in container.lines[0].get_xydata()}


def test_label_efficiency_shows_the_same_points_in_plotly_and_matplotlib():
    frame = realised_results()
    points = figure_data.label_efficiency_points(frame)
    interactive, image = figures.label_efficiency(frame), static.label_efficiency(frame)
    expected = {(round(x, 9), round(y, 9)) for x, y in zip(points["x"], points["y"])}
    assert plotly_points(interactive) == matplotlib_points(image) == expected
    assert set(points["x"].round(9)) == {93.0, 18.6}  # realised, not the requested 100 and 20
    assert interactive.layout.xaxis.title.text == image.axes[0].get_xlabel() \
        == "labelled training fragments (% realised)"


def test_the_study_table_heat_map_is_the_same_in_plotly_and_matplotlib():
    table = comparisons.study_table(realised_results(), n_boot=100)
    interactive, image = figures.table_heatmap(table), static.table_heatmap(table)
    z = np.asarray(interactive.data[0].z, dtype=float)
    assert np.array_equal(z, image.axes[0].images[0].get_array().filled(np.nan), equal_nan=True)
    shown = [t.get_text().replace("\np=", " p=") for t in image.axes[0].texts]
    assert shown == [t for t, v in zip(np.ravel(interactive.data[0].text), z.ravel())
                     if not np.isnan(v)]


def test_pretrained_vs_untrained_draws_the_prepared_points():
    frame = realised_results()
    points = figure_data.pretrained_vs_untrained_points(frame)
    image = static.pretrained_vs_untrained(frame)
    for ax, mode in zip(image.axes, ("lp", "ft")):
        heights = sorted(round(p.get_height(), 9) for p in ax.patches)
        assert heights == sorted(points.loc[points["mode"] == mode, "y"].round(9))
