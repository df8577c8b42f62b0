"""The study's comparisons on tables with known answers: choice on validation, marks, paired
tests, and no p below what the seeds allow."""
import numpy as np
import pandas as pd
import pytest

from ecgnb.report import build, comparisons, tables
from ecgnb.report.collect import synthetic_results


def test_mode_is_chosen_on_validation_not_test(known):
    chosen = comparisons.choose_mode(comparisons.summarize(known, n_boot=200))
    modes = set(chosen.loc[chosen["chosen"], "mode"])
    assert modes == {"lp"}  # although fine-tuning scores 10 points higher on test


def test_study_table_marks(known):
    table = comparisons.study_table(known, n_boot=200)
    text = table.text("markdown")
    assert text.loc["ECG", "ts2vec / mlp"] == "52.0 ± 1.6 (LP)"
    assert text.loc["ECG continued1", "ts2vec / mlp"] == "**57.0 ± 1.6** (LP) p=0.0625"
    assert text.loc["H-InceptionTime", "supervised"] == "**47.0 ± 1.6**"
    assert text.loc["H-InceptionTime", "ts2vec / mlp"] == ""
    latex = table.to_latex()
    assert r"\textbf{57.0 $\pm$ 1.6}\textsuperscript{LP}" in latex and "macro-F1 (\\%)" in latex
    markdown = table.to_markdown()
    assert markdown.startswith("**recipe: not recorded**\n\n|  | ts2vec / mlp | supervised |")
    assert "validation" in markdown and "smallest attainable p: 0.0625" in markdown
    assert "checkpoints, not strategies" in markdown  # one pretraining seed: say what varies


def test_paired_comparison_against_ecg(known):
    tests = comparisons.compare_to_reference(known, n_boot=999)
    assert list(tests["mode"]) == ["lp", "ft"] and set(tests["scenario"]) == {"ECG continued1"}
    for row in tests.itertuples():
        assert row.n == 5 and row.mean_diff == pytest.approx(0.05)
        assert row.p == row.p_min == pytest.approx(0.0625)  # the smallest possible with 5 pairs
        assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx((0.05, 0.05))
        assert row.reference_mean == pytest.approx(0.52 if row.mode == "lp" else 0.62)
        assert "0.0625" in row.note


def test_untrained_is_a_reference_row_compared_with_every_pretrained_scenario(cells, known):
    frame = pd.concat([known, pd.DataFrame(cells("untrained", "lp", 0.30, 0.30)
                                           + cells("untrained", "ft", 0.40, 0.35))])
    versus_ecg = comparisons.compare_to_reference(frame, n_boot=99)
    assert set(versus_ecg["scenario"]) == {"ECG continued1"}  # untrained is not a scenario vs ECG
    versus = comparisons.compare_to_reference(frame, reference="untrained", n_boot=99)
    assert list(versus["scenario"]) == ["ECG", "ECG", "ECG continued1", "ECG continued1"]
    assert versus.loc[0, "mean_diff"] == pytest.approx(0.20)  # ECG LP 50 vs untrained LP 30
    table = comparisons.study_table(frame, n_boot=99)
    assert table.rows[:2] == ["untrained", "ECG"]
    assert "untrained" in tables.in_study_order(frame)["scenario"].iloc[0]
    report = build.report_markdown(build.recipe_reports(frame, n_boot=99), frame)
    assert "Pretrained vs the same network untrained" in report


def test_intervals_over_records_where_the_cells_have_them(known):
    frame = known.assign(macro_f1_seed_mean_ci_low=known["macro_f1"] - 0.1,
                         macro_f1_seed_mean_ci_high=known["macro_f1"] + 0.2)
    summary = comparisons.interval_summary(frame, n_boot=99)
    assert set(summary["interval"]) == {"records and seeds"}
    assert np.allclose(summary["ci_high"] - summary["mean"], 0.2)
    assert set(comparisons.interval_summary(known, n_boot=99)["interval"]) == {"seeds"}


def test_best_ssl_cell_against_hinception_is_chosen_on_validation(known):
    versus = comparisons.best_vs_baseline(known, n_boot=999)
    assert list(versus["metric"]) == ["macro_f1", "accuracy"]
    row = versus.iloc[0]
    assert (row["scenario"], row["mode"]) == ("ECG continued1", "lp")
    assert row["mean_diff"] == pytest.approx(0.10)
    # unrelated seeds: unpaired permutation test, 5 vs 5 wholly separated -> 2 / C(10, 5)
    assert row["test"] == "permutation (unpaired)" and row["p"] == pytest.approx(2 / 252)
    assert row["p_min"] == pytest.approx(2 / 252)


# --------------------------------------------------------------------------- honest statistics
def test_a_row_is_compared_with_ecg_in_its_own_mode_and_says_so(cells):
    """ECG is shown in LP (validation prefers it), continued1 in FT: its p is against ECG FT."""
    rows = (cells("ECG", "lp", 0.50, 0.60) + cells("ECG", "ft", 0.40, 0.40)
            + cells("ECG continued1", "lp", 0.55, 0.40) + cells("ECG continued1", "ft", 0.65, 0.65))
    table = comparisons.study_table(pd.DataFrame(rows), n_boot=200)
    text = table.text("markdown")
    assert text.loc["ECG", "ts2vec / mlp"] == "52.0 ± 1.6 (LP)"
    assert text.loc["ECG continued1", "ts2vec / mlp"] == "**67.0 ± 1.6** (FT) p=0.0625 vs FT 42.0"
    assert "same backbone, head and mode as the entry" in table.caption()


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
def test_no_p_value_below_what_the_seeds_allow(n_seeds):
    frame = synthetic_results(seed=2, n_seeds=n_seeds)
    frame = frame[frame["scenario"].isin(["ECG", "ECG continued1", "none"])]
    floor = 2 / 2 ** n_seeds
    versus = comparisons.compare_to_reference(frame, n_boot=200)
    assert (versus["p"] >= floor).all() and (versus["p_min"] == floor).all()
    table = comparisons.study_table(frame, n_boot=200)
    assert (table.entries["p_vs_reference"].dropna() >= floor).all()
    assert f"smallest attainable p: {floor:.3g}" in table.caption()
    base = comparisons.best_vs_baseline(frame, n_boot=200)
    assert (base["test"] == "permutation (unpaired)").all() and (base["p"] >= base["p_min"]).all()


def test_pretraining_seeds_become_the_unit_of_the_tests(cells):
    """Three pretraining seeds x two downstream seeds: units are the pretraining seeds (their
    downstream means), so n = 3 and the smallest p is 0.25; rows of the cell table name them."""
    rows = []
    for p in range(3):
        for scenario, test in (("ECG", 0.50), ("ECG continued1", 0.55)):
            part = pd.DataFrame(cells(scenario, "lp", test + 0.01 * p, 0.6)[:2])
            rows.append(part.assign(pretrain_seed=p, run=f"g/ts2vec-{scenario}-p{p}"))
    frame = pd.concat(rows, ignore_index=True)
    versus = comparisons.compare_to_reference(frame, n_boot=200)
    (row,) = versus.itertuples()
    assert (row.unit, row.n, row.p, row.p_min) == ("pretraining seed", 3, 0.25, 0.25)
    summary = comparisons.summarize(frame, n_boot=200)
    assert set(summary["n"]) == {3} and set(summary["unit"]) == {"pretraining seed"}
    assert "ECG / ts2vec / mlp / LP / p2" in tables.cell_table(frame).index
    assert "pretraining seeds" in comparisons.study_table(frame, n_boot=200).caption()
