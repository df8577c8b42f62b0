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
