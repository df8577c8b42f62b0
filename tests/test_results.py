"""The results report on tables with known answers: choice on validation, marks, paired tests."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from ecgnb import cli, results
from ecgnb.evaluation import stats, tables
from ecgnb.evaluation import tables as tables_module
from ecgnb.config import write_json

SEEDS = range(5)


def cells(scenario, mode, test, val, backbone="ts2vec", head="mlp", fraction=1.0):
    """Five seeds of one cell: test = ``test`` + 0.01 * seed, validation = ``val`` + 0.01 * seed."""
    rows = []
    for seed in SEEDS:
        row = dict(zip(results.KEYS, (scenario, backbone, head, mode, fraction, seed)))
        row.update({m: test + 0.01 * seed for m in results.METRICS})
        row.update({f"val_{m}": val + 0.01 * seed for m in results.METRICS})
        row.update({"run": f"g/{backbone}-{scenario}", "cell": f"{head}-{mode}-s{seed}"})
        rows.append(row)
    return rows


@pytest.fixture
def known() -> pd.DataFrame:
    """ECG continued1 = ECG + 5 points in both modes; FT wins on test, LP on validation;
    H-InceptionTime = the best SSL cell (continued1, LP) - 10 points."""
    rows = (cells("ECG", "lp", 0.50, 0.60) + cells("ECG", "ft", 0.60, 0.40)
            + cells("ECG continued1", "lp", 0.55, 0.65) + cells("ECG continued1", "ft", 0.65, 0.45)
            + cells("none", "supervised", 0.45, 0.45, backbone="supervised", head="hinception"))
    return pd.DataFrame(rows)


def test_mode_is_chosen_on_validation_not_test(known):
    chosen = results.choose_mode(results.summarize(known, n_boot=200))
    modes = set(chosen.loc[chosen["chosen"], "mode"])
    assert modes == {"lp"}  # although fine-tuning scores 10 points higher on test


def test_study_table_marks(known):
    table = results.study_table(known, n_boot=200)
    text = table.text("markdown")
    assert text.loc["ECG", "ts2vec / mlp"] == "52.0 ± 1.6 (LP)"
    assert text.loc["ECG continued1", "ts2vec / mlp"] == "**57.0 ± 1.6** (LP) p=0.0625"
    assert text.loc["H-InceptionTime", "supervised"] == "**47.0 ± 1.6**"
    assert text.loc["H-InceptionTime", "ts2vec / mlp"] == ""
    latex = table.to_latex()
    assert r"\textbf{57.0 $\pm$ 1.6}\textsuperscript{LP}" in latex and "macro\\_f1" in latex
    markdown = table.to_markdown()
    assert markdown.startswith("|  | ts2vec / mlp | supervised |") and "validation" in markdown


def test_paired_comparison_against_ecg(known):
    tests = results.compare_to_reference(known, n_boot=999)
    assert list(tests["mode"]) == ["lp", "ft"] and set(tests["scenario"]) == {"ECG continued1"}
    for row in tests.itertuples():
        assert row.n == 5 and row.mean_diff == pytest.approx(0.05)
        assert row.p_wilcoxon == pytest.approx(0.0625)  # the smallest possible with 5 pairs
        assert row.p_bootstrap == pytest.approx(1 / 1000)
        assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx((0.05, 0.05))
        assert "0.0625" in row.note


def test_untrained_is_a_reference_row_compared_with_every_pretrained_scenario(known):
    frame = pd.concat([known, pd.DataFrame(cells("untrained", "lp", 0.30, 0.30)
                                           + cells("untrained", "ft", 0.40, 0.35))])
    versus_ecg = results.compare_to_reference(frame, n_boot=99)
    assert set(versus_ecg["scenario"]) == {"ECG continued1"}  # untrained is not a scenario vs ECG
    versus = results.compare_to_reference(frame, reference="untrained", n_boot=99)
    assert list(versus["scenario"]) == ["ECG", "ECG", "ECG continued1", "ECG continued1"]
    assert versus.loc[0, "mean_diff"] == pytest.approx(0.20)  # ECG LP 50 vs untrained LP 30
    table = results.study_table(frame, n_boot=99)
    assert table.rows[:2] == ["untrained", "ECG"]
    assert "untrained" in tables.in_study_order(frame)["scenario"].iloc[0]
    report = results.report_markdown(table, versus_ecg, results.best_vs_baseline(frame, n_boot=99),
                                     frame, versus)
    assert "Pretrained vs the same network untrained" in report


def test_intervals_over_records_where_the_cells_have_them(known):
    frame = known.assign(macro_f1_ci_low=known["macro_f1"] - 0.1,
                         macro_f1_ci_high=known["macro_f1"] + 0.2)
    summary = results.interval_summary(frame, n_boot=99)
    assert set(summary["interval"]) == {"records"}
    assert np.allclose(summary["ci_high"] - summary["mean"], 0.2)
    assert set(results.interval_summary(known, n_boot=99)["interval"]) == {"seeds"}


def test_best_ssl_cell_against_hinception_is_chosen_on_validation(known):
    versus = results.best_vs_baseline(known, n_boot=999)
    assert list(versus["metric"]) == ["macro_f1", "accuracy"]
    row = versus.iloc[0]
    assert (row["scenario"], row["mode"]) == ("ECG continued1", "lp")
    assert row["mean_diff"] == pytest.approx(0.10) and row["p_wilcoxon"] == pytest.approx(0.0625)


def test_no_difference_gives_p_one():
    out = stats.paired_test([0.5] * 5, [0.5] * 5, n_boot=99)
    assert out["p_wilcoxon"] == 1.0 and out["mean_diff"] == 0.0


def test_mixed_signs_are_not_significant():
    out = stats.paired_test([0.6, 0.4, 0.6, 0.4, 0.6], [0.5] * 5, n_boot=999)
    assert out["p_wilcoxon"] > 0.5 and out["p_bootstrap"] > 0.5
    assert out["diff_ci_low"] < 0 < out["diff_ci_high"]


def test_bootstrap_interval_of_the_mean():
    values = np.random.default_rng(0).normal(0.6, 0.05, size=5)
    low, high = stats.bootstrap_mean_ci(values, n_boot=2000)
    assert low < values.mean() < high and high - low < 0.2


def write_cell(run, name, with_metrics=True, seed=0):
    folder = run / "cells" / name
    write_json(folder / "cell.json", {"scenario": "ECG", "backbone": "ts2vec", "head": "mlp",
                                      "mode": "lp", "label_fraction": 1.0, "seed": seed,
                                      "encoder_run": "g/pretraining/ts2vec-ecg", "wall_s": 2.0})
    if with_metrics:
        write_json(folder / "metrics.json", {
            "accuracy": 0.7, "balanced_accuracy": 0.6, "macro_f1": 0.55, "weighted_f1": 0.65,
            "macro_auroc": 0.8, "n_test": 90, "best_epoch": 4,
            "ci": {"macro_f1": [0.45, 0.65]}, "val_metrics": {"macro_f1": 0.5}})


def test_results_only_from_complete_cells_of_complete_runs(tmp_path):
    root = tmp_path / "outputs"
    done = root / "g" / "finetuning" / "ts2vec-ecg-f1.0"
    write_cell(done, "mlp-lp-f1-s0")
    write_cell(done, "mlp-lp-f1-s1", with_metrics=False, seed=1)  # interrupted cell
    write_json(done / "_SUCCESS.json", {"params_hash": "abc", "wall_s": 12.0})
    write_cell(root / "g" / "finetuning" / "tstcc-ecg-f1.0", "mlp-lp-f1-s0")  # run not finished
    rows = results.collect_results(root / "g", root=root)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["run"], row["cell"], row["params_hash"]) == ("g/finetuning/ts2vec-ecg-f1.0",
                                                              "mlp-lp-f1-s0", "abc")
    assert (row["macro_f1"], row["val_macro_f1"], row["macro_f1_ci_low"]) == (0.55, 0.5, 0.45)
    assert (row["accuracy"], row["weighted_f1"], row["wall_s"]) == (0.7, 0.65, 2.0)

    csv = root / "g" / "results.csv"
    results.write_csv(rows, csv)
    results.write_csv(results.collect_results(root / "g", root=root), csv)
    assert len(pd.read_csv(csv)) == 1  # rebuilt, never appended


def test_continuation_drift_is_collected_from_complete_runs(tmp_path):
    root = tmp_path / "outputs"
    record = {"backbone": "ts2vec", "scenario": "ECG continued1", "step": "continued1",
              "drift": {"wesad_ecg": {"linear_cka": 0.9, "mean_cosine": 0.8, "n_windows": 64}},
              "probe": {"parent": {"val_macro_f1": 0.4}, "child": {"val_macro_f1": 0.5}}}
    for name, finished in (("ts2vec-ecg-continued1", True), ("tstcc-ecg-continued1", False)):
        write_json(root / "g" / "regularization" / name / "regularization.json", record)
        if finished:
            write_json(root / "g" / "regularization" / name / "_SUCCESS.json", {"params_hash": "h"})
    rows = results.collect_summaries(root / "g", "regularization.json", root=root)
    assert rows.to_dict("records") == [{
        "run": "g/regularization/ts2vec-ecg-continued1", "backbone": "ts2vec",
        "scenario": "ECG continued1", "step": "continued1", "drift_wesad_ecg_linear_cka": 0.9,
        "drift_wesad_ecg_mean_cosine": 0.8, "drift_wesad_ecg_n_windows": 64,
        "probe_parent_val_macro_f1": 0.4, "probe_child_val_macro_f1": 0.5}]


def test_report_command_writes_the_tables(tmp_path, monkeypatch, known, capsys):
    root = tmp_path / "outputs"
    monkeypatch.setenv("ECGNB_OUTPUTS", str(root))
    for i, row in known.iterrows():
        run = root / "g" / "finetuning" / row["run"].split("/")[-1]
        write_json(run / "cells" / row["cell"] / "cell.json", {
            **{k: row[k] for k in results.KEYS}, "label_fraction": 1.0, "seed": int(row["seed"])})
        write_json(run / "cells" / row["cell"] / "metrics.json", {
            **{m: row[m] for m in results.METRICS},
            "val_metrics": {m: row[f"val_{m}"] for m in results.METRICS}})
        write_json(run / "_SUCCESS.json", {"params_hash": "h"})
    assert cli.main(["report", "g", "--no-notebook"]) == 0
    assert "report.md" in capsys.readouterr().out
    table = pd.read_csv(root / "results.csv")
    assert len(table) == len(known) and table.equals(pd.read_csv(root / "g" / "results.csv"))
    out = root / "g" / "report"
    assert "**57.0 ± 1.6** (LP) p=0.0625" in (out / "study_table.md").read_text()
    assert (out / "study_table.tex").is_file() and (out / "figures.html").stat().st_size > 10_000
    assert "0.0625" in (out / "report.md").read_text()


def test_plots_return_figures(known):
    table = results.study_table(known, n_boot=100)
    assert isinstance(results.table_heatmap(table), go.Figure)
    assert isinstance(results.scenario_boxes(known), go.Figure)
    assert results.label_efficiency(known) is None
    two = pd.concat([known, known.assign(label_fraction=0.1, macro_f1=known["macro_f1"] - 0.2)])
    curve = results.label_efficiency(two)
    assert isinstance(curve, go.Figure) and len(curve.data) >= 2


def test_synthetic_results_have_the_layout_and_the_planted_effect():
    frame = results.synthetic_results(seed=1)
    assert len(frame) == 10 * 3 * 2 * 2 * 5 + 3 * 5  # the nine scenarios and "untrained"
    assert set(results.KEYS) | set(results.METRICS) | {"val_macro_f1"} <= set(frame.columns)
    means = frame[frame["mode"] != "supervised"].groupby("scenario")["macro_f1"].mean()
    assert means["continued1 + extended"] > means["ECG"] + 0.05
    assert means["untrained"] < means["ECG"] - 0.05


def test_cell_table_shows_every_cell_at_every_fraction():
    rows = cells("ECG", "lp", 0.50, 0.60)[:2] + cells("ECG", "lp", 0.30, 0.40, fraction=0.1)[:1] \
        + cells("none", "supervised", 0.45, 0.45, backbone="supervised", head="hinception")[:2]
    frame = pd.DataFrame(rows)
    frame["macro_f1_ci_low"], frame["macro_f1_ci_high"] = frame["macro_f1"] - 0.1, frame["macro_f1"] + 0.1
    table = tables.cell_table(frame)
    assert list(table.columns) == ["f1", "f0.1"]
    assert table.loc["ECG / ts2vec / mlp / LP"].tolist() == ["50.5 [40.5, 60.5] (2)",
                                                             "30.0 [20.0, 40.0] (1)"]
    assert table.loc["supervised hinception"].tolist() == ["45.5 [35.5, 55.5] (2)", ""]


def test_encoder_tables_read_beside_the_results(tmp_path):
    pd.DataFrame([{"backbone": "ts2vec", "corpus": "ECG", "probe_pretrained_val_macro_f1": 0.6,
                   "probe_initial weights_val_macro_f1": 0.4}]).to_csv(tmp_path / "pretraining.csv")
    tables = results.encoder_tables(tmp_path / "results.csv")
    (table,) = tables.values()
    assert table.loc[("ts2vec", "ECG")].tolist() == [60.0, 40.0]
    frame = pd.DataFrame([{"run": f"g/pretraining/ts2vec-{name}", "backbone": "ts2vec", "corpus": "ECG",
                           "probe_pretrained_val_macro_f1": 0.5} for name in ("ecg", "untrained")])
    assert list(tables_module.probe_table(frame).index) == [("ts2vec", "ECG"), ("ts2vec", "untrained")]
    assert results.encoder_tables("") == {}
