"""The report's plotly figures."""
import pandas as pd
import plotly.graph_objects as go

from ecgnb.report import comparisons, figures


def test_plots_return_figures(known):
    table = comparisons.study_table(known, n_boot=100)
    assert isinstance(figures.table_heatmap(table), go.Figure)
    assert isinstance(figures.scenario_boxes(known), go.Figure)
    assert figures.label_efficiency(known) is None
    two = pd.concat([known, known.assign(label_fraction=0.1, macro_f1=known["macro_f1"] - 0.2)])
    curve = figures.label_efficiency(two)
    assert isinstance(curve, go.Figure) and len(curve.data) >= 2

