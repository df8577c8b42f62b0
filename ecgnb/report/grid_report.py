"""The report of a grid (``ecgnb report``): ``results.csv`` rebuilt from its run folders, then the
report rendered by executing notebooks/06_results.ipynb into ``<grid folder>/report``.

:func:`build_report` collects ``results.csv`` (:mod:`ecgnb.report.collect`) and the summaries of
notebooks 02 and 03 into the grid folder; the report itself is :mod:`ecgnb.report.build`'s (by
the notebook, or directly with ``use_notebook=False``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ecgnb.report.build import write_report
from ecgnb.report.collect import (code_note, collect_results, collect_summaries, collect_warnings,
                                  write_csv)
from ecgnb.report.tables import encoder_tables
from ecgnb.runs import (NOTEBOOKS, PROJECT_ROOT, code_change, completion_record, is_complete,
                        outputs_root)
from ecgnb.workflow.grid import load_grid
from ecgnb.workflow.runner import execute, params_hash

# Stage -> the summary its runs write (``<stage>.json`` per run, ``<stage>.csv`` per grid).
STAGE_SUMMARIES = ("pretraining", "regularization")
REPORT_NOTEBOOK = PROJECT_ROOT / NOTEBOOKS["results"]
REPORT_RUN = "report"  # the report's run folder inside a grid folder


def grid_folder(target: str) -> Path:
    """The results folder of a grid file, a folder path, or a name under the outputs root."""
    path = Path(target).expanduser()
    if path.suffix in (".yaml", ".yml"):
        return outputs_root() / load_grid(path, validate=False).name
    for candidate in (path, outputs_root() / target):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no results folder '{target}' (nor {outputs_root() / target})")


def grid_runs(target: str) -> set[str] | None:
    """The run names (``<grid>/<run>``) of a grid file; None when ``target`` is a folder."""
    if Path(target).suffix not in (".yaml", ".yml"):
        return None
    grid = load_grid(Path(target).expanduser(), validate=False)
    return {grid.run_id(name) for name in grid.runs}


def build_report(target: str, use_notebook: bool = True) -> Path:
    """Rebuild ``results.csv`` (grid folder and outputs root), then the report; returns its folder.

    Given a grid file, only the runs of that grid are reported (runs left in its folder by an
    earlier version of the grid are not)."""
    folder = grid_folder(target)
    table = collect_results(folder, root=outputs_root())
    in_grid = grid_runs(target)
    if in_grid is not None and not table.empty:
        dropped = sorted(set(table["run"]) - in_grid)
        table = table[table["run"].isin(in_grid)].reset_index(drop=True)
        if dropped:
            print(f"note: {len(dropped)} run(s) in {folder} are not in {target} and are left out, "
                  f"e.g. {dropped[0]}")
    if table.empty:
        raise FileNotFoundError(f"no complete downstream cell under {folder}; run the grid first")
    warned = [f"{run}: {message}" for run, message in collect_warnings(folder, outputs_root())
              if in_grid is None or run in in_grid]
    for line in [code_note(table)] + warned:
        if line:
            print(f"note: {line}")
    csv, _ = write_csv(table, folder / "results.csv", outputs_root() / "results.csv")
    for stage in STAGE_SUMMARIES:  # probes and drift of notebooks 02 and 03
        summaries = collect_summaries(folder, f"{stage}.json", root=outputs_root())
        if in_grid is not None and not summaries.empty:
            summaries = summaries[summaries["run"].isin(in_grid)]
        if not summaries.empty:
            write_csv(summaries, folder / f"{stage}.csv")
    out = folder / REPORT_RUN
    if not use_notebook:
        write_report(table, out, encoder_tables=encoder_tables(csv))
        return out
    return _report_notebook(csv, out)


def _report_notebook(csv: Path, out: Path) -> Path:
    """Execute notebook 06 on ``csv`` unless it already rendered exactly this table."""
    params = {"results_csv": str(csv.resolve())}
    tables = [csv] + [csv.parent / f"{stage}.csv" for stage in STAGE_SUMMARIES]
    content = tuple(hashlib.sha256(t.read_bytes()).hexdigest()[:16] for t in tables if t.is_file())
    digest = params_hash(params, content)
    if is_complete(out, digest) and code_change(completion_record(out), REPORT_NOTEBOOK) is None:
        return out
    run_name = out.relative_to(outputs_root()).as_posix()
    return execute(REPORT_NOTEBOOK, params, run_name=run_name, overwrite=True,
                   parents_hash=content)
