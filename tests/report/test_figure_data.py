"""The points of the key figures: which labelled share, which head and mode, in which order."""
import numpy as np
import pandas as pd

from ecgnb.report import comparisons, figure_data


def test_label_efficiency_is_against_the_realised_share_where_recorded(known):
    two = pd.concat([known, known.assign(label_fraction=0.1, macro_f1=known["macro_f1"] - 0.2)])
    assert figure_data.label_efficiency_points(known) is None  # one fraction: no curve
    requested = figure_data.label_efficiency_points(two)
    assert set(requested["x"]) == {10.0, 100.0} and set(requested["fraction"]) == {"requested"}
    assert "realised not recorded" in figure_data.label_axis(requested)
    realised = figure_data.label_efficiency_points(
        two.assign(label_fraction_realised=np.where(two["label_fraction"] == 1.0, 1.0, 0.12)))
    assert set(realised["x"].round(9)) == {12.0, 100.0}
    assert figure_data.label_axis(realised) == "labelled training fragments (% realised)"
    # per fraction the mode with the higher validation score (LP), the baseline by its name
    ssl = realised[~realised["is_baseline"]]
    assert set(ssl["mode"]) == {"lp"} and list(ssl["scenario"]) == ["ECG", "ECG",
                                                                   "ECG continued1", "ECG continued1"]
    assert set(realised.loc[realised["is_baseline"], "series"]) == {"H-InceptionTime"}
    cell = ssl[(ssl["scenario"] == "ECG") & (ssl["label_fraction"] == 1.0)].iloc[0]
    assert np.isclose(cell["y"], 52.0)  # mean over the five seeds, in %


def test_pretrained_vs_untrained_takes_the_head_chosen_on_validation(known, cells):
    frame = pd.concat([known, pd.DataFrame(cells("ECG", "lp", 0.70, 0.10, head="fcn"))])
    points = figure_data.pretrained_vs_untrained_points(frame)
    assert list(zip(points["scenario"], points["mode"], points["head"])) == [
        ("ECG", "lp", "mlp"), ("ECG", "ft", "mlp"), ("ECG continued1", "lp", "mlp"),
        ("ECG continued1", "ft", "mlp")]
    assert figure_data.pretrained_vs_untrained_points(known[known["mode"] == "supervised"]) is None


def test_study_table_cells_keep_the_table_order(known):
    table = comparisons.study_table(known, n_boot=100)
    cells = figure_data.study_table_cells(table)
    assert list(figure_data.as_grid(cells, "text").index) == table.rows
    assert list(figure_data.as_grid(cells, "text").columns) == table.columns
    assert figure_data.as_grid(cells, "text").equals(table.text("plain"))
    value = figure_data.as_grid(cells, "value")
    assert np.isclose(value.loc["ECG", "ts2vec / mlp"], 52.0)
    assert np.isnan(value.loc["H-InceptionTime", "ts2vec / mlp"])
