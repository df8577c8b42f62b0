"""The results report on tables with known answers: choice on validation, marks, paired tests."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from ecgnb import cli, results, runs
from ecgnb.evaluation import stats, tables
from ecgnb.config import code_identity, write_json
from ecgnb.evaluation import tables as tables_module

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
    assert markdown.startswith("**recipe: not recorded**\n\n|  | ts2vec / mlp | supervised |")
    assert "validation" in markdown and "smallest attainable p: 0.0625" in markdown
    assert "checkpoints, not strategies" in markdown  # one pretraining seed: say what varies


def test_paired_comparison_against_ecg(known):
    tests = results.compare_to_reference(known, n_boot=999)
    assert list(tests["mode"]) == ["lp", "ft"] and set(tests["scenario"]) == {"ECG continued1"}
    for row in tests.itertuples():
        assert row.n == 5 and row.mean_diff == pytest.approx(0.05)
        assert row.p == row.p_min == pytest.approx(0.0625)  # the smallest possible with 5 pairs
        assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx((0.05, 0.05))
        assert row.reference_mean == pytest.approx(0.52 if row.mode == "lp" else 0.62)
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
    report = results.report_markdown(results.recipe_reports(frame, n_boot=99), frame)
    assert "Pretrained vs the same network untrained" in report


def test_intervals_over_records_where_the_cells_have_them(known):
    frame = known.assign(macro_f1_seed_mean_ci_low=known["macro_f1"] - 0.1,
                         macro_f1_seed_mean_ci_high=known["macro_f1"] + 0.2)
    summary = results.interval_summary(frame, n_boot=99)
    assert set(summary["interval"]) == {"records and seeds"}
    assert np.allclose(summary["ci_high"] - summary["mean"], 0.2)
    assert set(results.interval_summary(known, n_boot=99)["interval"]) == {"seeds"}


def test_best_ssl_cell_against_hinception_is_chosen_on_validation(known):
    versus = results.best_vs_baseline(known, n_boot=999)
    assert list(versus["metric"]) == ["macro_f1", "accuracy"]
    row = versus.iloc[0]
    assert (row["scenario"], row["mode"]) == ("ECG continued1", "lp")
    assert row["mean_diff"] == pytest.approx(0.10)
    # unrelated seeds: unpaired permutation test, 5 vs 5 wholly separated -> 2 / C(10, 5)
    assert row["test"] == "permutation (unpaired)" and row["p"] == pytest.approx(2 / 252)
    assert row["p_min"] == pytest.approx(2 / 252)


def test_no_difference_gives_p_one():
    out = stats.paired_test([0.5] * 5, [0.5] * 5, n_boot=99)
    assert out["p"] == 1.0 and out["mean_diff"] == 0.0


def test_mixed_signs_are_not_significant():
    out = stats.paired_test([0.6, 0.4, 0.6, 0.4, 0.6], [0.5] * 5, n_boot=999)
    assert out["p"] > 0.5
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
        runs.write_cell_metrics(folder, {
            "accuracy": 0.7, "balanced_accuracy": 0.6, "macro_f1": 0.55, "weighted_f1": 0.65,
            "macro_auroc": 0.8, "n_test": 90, "best_epoch": 4,
            "ci": {"macro_f1": [0.45, 0.65]}, "val_metrics": {"macro_f1": 0.5}})


def test_results_only_from_complete_cells_of_complete_runs(tmp_path, complete_run):
    root = tmp_path / "outputs"
    done = root / "g" / "finetuning" / "ts2vec-ecg-f1.0"
    write_cell(done, "mlp-lp-f1-s0")
    write_cell(done, "mlp-lp-f1-s1", with_metrics=False, seed=1)  # interrupted cell
    complete_run(done, "abc")
    write_cell(root / "g" / "finetuning" / "tstcc-ecg-f1.0", "mlp-lp-f1-s0")  # run not finished
    rows = results.collect_results(root / "g", root=root)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (row["run"], row["cell"], row["params_hash"]) == ("g/finetuning/ts2vec-ecg-f1.0",
                                                              "mlp-lp-f1-s0", "abc")
    assert (row["macro_f1"], row["val_macro_f1"], row["macro_f1_ci_low"]) == (0.55, 0.5, 0.45)
    assert (row["accuracy"], row["weighted_f1"], row["wall_s"]) == (0.7, 0.65, 2.0)
    assert row["code_hash"] == code_identity()["source_hash"] and results.code_note(rows) is None

    csv = root / "g" / "results.csv"
    results.write_csv(rows, csv)
    results.write_csv(results.collect_results(root / "g", root=root), csv)
    assert len(pd.read_csv(csv)) == 1  # rebuilt, never appended


def test_continuation_drift_is_collected_from_complete_runs(tmp_path, complete_run):
    root = tmp_path / "outputs"
    record = {"backbone": "ts2vec", "scenario": "ECG continued1", "step": "continued1",
              "drift": {"wesad_ecg": {"linear_cka": 0.9, "mean_cosine": 0.8, "n_windows": 64}},
              "probe": {"parent": {"val_macro_f1": 0.4}, "child": {"val_macro_f1": 0.5}}}
    for name, finished in (("ts2vec-ecg-continued1", True), ("tstcc-ecg-continued1", False)):
        write_json(root / "g" / "regularization" / name / "regularization.json", record)
        if finished:
            complete_run(root / "g" / "regularization" / name)
    rows = results.collect_summaries(root / "g", "regularization.json", root=root)
    assert rows.to_dict("records") == [{
        "run": "g/regularization/ts2vec-ecg-continued1", "backbone": "ts2vec",
        "scenario": "ECG continued1", "step": "continued1", "drift_wesad_ecg_linear_cka": 0.9,
        "drift_wesad_ecg_mean_cosine": 0.8, "drift_wesad_ecg_n_windows": 64,
        "probe_parent_val_macro_f1": 0.4, "probe_child_val_macro_f1": 0.5}]


def test_report_command_writes_the_tables(tmp_path, monkeypatch, known, capsys, complete_run):
    root = tmp_path / "outputs"
    monkeypatch.setenv("ECGNB_OUTPUTS", str(root))
    for i, row in known.iterrows():
        run = root / "g" / "finetuning" / row["run"].split("/")[-1]
        write_json(run / "cells" / row["cell"] / "cell.json", {
            **{k: row[k] for k in results.KEYS}, "label_fraction": 1.0, "seed": int(row["seed"])})
        runs.write_cell_metrics(run / "cells" / row["cell"], {
            **{m: row[m] for m in results.METRICS},
            "val_metrics": {m: row[f"val_{m}"] for m in results.METRICS}})
    for run in {root / "g" / "finetuning" / r.split("/")[-1] for r in known["run"]}:
        complete_run(run)
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
    frame["label_fraction_realised"] = [1.0, 1.0, 0.12, 1.0, 1.0]
    frame["n_train"] = [300, 300, 36, 300, 300]
    table = tables.cell_table(frame)
    assert list(table.columns) == ["100 % requested, 100.0 % realised (n_train 300)",
                                   "10 % requested, 12.0 % realised (n_train 36)"]
    # per-seed intervals are not averaged into an "interval": without the interval of the seed
    # mean (records and seeds resampled, from the predictions) only the mean is shown
    assert table.loc["ECG / ts2vec / mlp / LP"].tolist() == ["50.5 (2)", "30.0 (1)"]
    frame["macro_f1_seed_mean_ci_low"] = frame["macro_f1"].where(frame["seed"] > 9, 0.41)
    frame["macro_f1_seed_mean_ci_high"] = 0.62
    table = tables.cell_table(frame)
    assert table.loc["ECG / ts2vec / mlp / LP"].iloc[0] == "50.5 [41.0, 62.0] (2)"
    assert table.loc["supervised hinception"].tolist() == ["45.5 [41.0, 62.0] (2)", ""]
    assert table.index.name.endswith("recipe: not recorded")


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


# --------------------------------------------------------------------------- honest statistics
def test_a_row_is_compared_with_ecg_in_its_own_mode_and_says_so():
    """ECG is shown in LP (validation prefers it), continued1 in FT: its p is against ECG FT."""
    rows = (cells("ECG", "lp", 0.50, 0.60) + cells("ECG", "ft", 0.40, 0.40)
            + cells("ECG continued1", "lp", 0.55, 0.40) + cells("ECG continued1", "ft", 0.65, 0.65))
    table = results.study_table(pd.DataFrame(rows), n_boot=200)
    text = table.text("markdown")
    assert text.loc["ECG", "ts2vec / mlp"] == "52.0 ± 1.6 (LP)"
    assert text.loc["ECG continued1", "ts2vec / mlp"] == "**67.0 ± 1.6** (FT) p=0.0625 vs FT 42.0"
    assert "same backbone, head and mode as the entry" in table.caption()


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
def test_no_p_value_below_what_the_seeds_allow(n_seeds):
    frame = results.synthetic_results(seed=2, n_seeds=n_seeds)
    frame = frame[frame["scenario"].isin(["ECG", "ECG continued1", "none"])]
    floor = 2 / 2 ** n_seeds
    versus = results.compare_to_reference(frame, n_boot=200)
    assert (versus["p"] >= floor).all() and (versus["p_min"] == floor).all()
    table = results.study_table(frame, n_boot=200)
    assert (table.entries["p_vs_reference"].dropna() >= floor).all()
    assert f"smallest attainable p: {floor:.3g}" in table.caption()
    base = results.best_vs_baseline(frame, n_boot=200)
    assert (base["test"] == "permutation (unpaired)").all() and (base["p"] >= base["p_min"]).all()


def test_pretraining_seeds_become_the_unit_of_the_tests():
    """Three pretraining seeds x two downstream seeds: units are the pretraining seeds (their
    downstream means), so n = 3 and the smallest p is 0.25; rows of the cell table name them."""
    rows = []
    for p in range(3):
        for scenario, test in (("ECG", 0.50), ("ECG continued1", 0.55)):
            part = pd.DataFrame(cells(scenario, "lp", test + 0.01 * p, 0.6)[:2])
            rows.append(part.assign(pretrain_seed=p, run=f"g/ts2vec-{scenario}-p{p}"))
    frame = pd.concat(rows, ignore_index=True)
    versus = results.compare_to_reference(frame, n_boot=200)
    (row,) = versus.itertuples()
    assert (row.unit, row.n, row.p, row.p_min) == ("pretraining seed", 3, 0.25, 0.25)
    summary = results.summarize(frame, n_boot=200)
    assert set(summary["n"]) == {3} and set(summary["unit"]) == {"pretraining seed"}
    assert "ECG / ts2vec / mlp / LP / p2" in tables.cell_table(frame).index
    assert "pretraining seeds" in results.study_table(frame, n_boot=200).caption()


def test_every_table_names_its_recipe(known, tmp_path):
    assert tables.recipe_of(known) == "not recorded"
    mixed = pd.concat([known.assign(recipe="study"),
                       known.assign(recipe="ecgnb", macro_f1=known["macro_f1"] + 0.1)])
    with pytest.raises(ValueError, match="one table per recipe"):
        results.study_table(mixed, n_boot=100)
    paths = results.write_report(mixed, tmp_path, n_boot=100)
    study = paths["study_table.md"].read_text()
    assert study.startswith("**recipe: study**") and "**recipe: ecgnb**" in study
    report = paths["report.md"].read_text()
    assert "## The study table (recipe: study)" in report and "(recipe: ecgnb)" in report
    assert set(pd.read_csv(paths["vs_reference.csv"])["recipe"]) == {"study", "ecgnb"}
    assert "(study)" in pd.read_csv(paths["cells.csv"]).iloc[0, 0]


def test_collect_records_labels_pretraining_seed_and_the_seed_mean_interval(tmp_path,
                                                                          complete_run):
    root = tmp_path / "outputs"
    run = root / "g" / "finetuning" / "ts2vec-ecg-f0.2"
    for seed in (0, 1):
        write_cell(run, f"mlp-lp-f1-s{seed}", with_metrics=False, seed=seed)
        folder = run / "cells" / f"mlp-lp-f1-s{seed}"
        record = runs.read_json(folder / "cell.json")
        labels = {"n_train": 80, "n_train_available": 383, "label_fraction_realised": 80 / 383}
        write_json(folder / "cell.json", {**record, "pretrain_seed": 0, **labels})
        y = np.tile([0, 1], 20)
        pd.DataFrame({"index": range(40), "group": np.repeat([f"r{g}" for g in range(10)], 4),
                      "y_true": y, "y_pred": y if seed else 1 - y}).to_csv(
            folder / "predictions.csv", index=False)
        runs.write_cell_metrics(folder, {"accuracy": 0.5, "macro_f1": 0.5, "n_test": 40,
                                         "val_metrics": {"macro_f1": 0.5}})
    complete_run(run, "abc")
    rows = results.collect_results(root / "g", root=root)
    assert rows["pretrain_seed"].tolist() == [0, 0] and rows["n_train"].tolist() == [80, 80]
    assert rows["label_fraction_realised"].iloc[0] == pytest.approx(0.209, abs=1e-3)
    # one seed right, one wrong everywhere: the mean over seeds may be anything in [0, 1]
    assert rows["accuracy_seed_mean_ci_low"].tolist() == [0.0, 0.0]
    assert rows["accuracy_seed_mean_ci_high"].tolist() == [1.0, 1.0]
    assert "20.9 % realised (n_train 80)" in tables.label_line(rows)
