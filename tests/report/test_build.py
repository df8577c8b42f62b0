"""The report of a results table: the tables and figures.html, one study table per recipe."""
import pandas as pd
import pytest

from ecgnb.report import build, comparisons, tables


def test_every_table_names_its_recipe(known, tmp_path):
    assert tables.recipe_of(known) == "not recorded"
    mixed = pd.concat([known.assign(recipe="study"),
                       known.assign(recipe="ecgnb", macro_f1=known["macro_f1"] + 0.1)])
    with pytest.raises(ValueError, match="one table per recipe"):
        comparisons.study_table(mixed, n_boot=100)
    paths = build.write_report(mixed, tmp_path, n_boot=100)
    study = paths["study_table.md"].read_text()
    assert study.startswith("**recipe: study**") and "**recipe: ecgnb**" in study
    report = paths["report.md"].read_text()
    assert "## The study table (recipe: study)" in report and "(recipe: ecgnb)" in report
    assert set(pd.read_csv(paths["vs_reference.csv"])["recipe"]) == {"study", "ecgnb"}
    assert "(study)" in pd.read_csv(paths["cells.csv"]).iloc[0, 0]


@pytest.mark.parametrize("multilabel", [False, True])
def test_the_reports_sentences_name_the_metric_used(known, tmp_path, multilabel):
    results = known.assign(macro_f1=float("nan"), val_macro_f1=float("nan")) if multilabel \
        else known
    used, other = ("macro-AUROC", "macro-F1") if multilabel else ("macro-F1", "macro-AUROC")
    paths = build.write_report(results, tmp_path, n_boot=100)
    report = paths["report.md"].read_text()
    assert f"metric: test {used} (each entry's mode chosen on validation {used})" in report
    assert f"{used} (%) mean ± std" in report and f"chosen on mean validation {used}" in report
    assert f"(test {used}, both modes)" in report
    assert other not in report and other not in paths["study_table.md"].read_text()
