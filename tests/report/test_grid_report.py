"""The report of a grid (``ecgnb report``): results.csv rebuilt from the run folders, then the
tables and figures.html."""
import pandas as pd

from ecgnb import cli, runs
from ecgnb.files import write_json
from ecgnb.report.tables import KEYS, METRICS


def test_report_command_writes_the_tables(tmp_path, monkeypatch, known, capsys, complete_run):
    root = tmp_path / "outputs"
    monkeypatch.setenv("ECGNB_OUTPUTS", str(root))
    for i, row in known.iterrows():
        run = root / "g" / "finetuning" / row["run"].split("/")[-1]
        write_json(run / "cells" / row["cell"] / "cell.json", {
            **{k: row[k] for k in KEYS}, "label_fraction": 1.0, "seed": int(row["seed"])})
        runs.write_cell_metrics(run / "cells" / row["cell"], {
            **{m: row[m] for m in METRICS},
            "val_metrics": {m: row[f"val_{m}"] for m in METRICS}})
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
