"""The ``ecgnb`` command line: ``execute``, ``data``, ``run``, ``report`` and ``demo``.

- ``ecgnb run GRID``: a grid file's runs as a resumable DAG (``ecgnb.grid``, ``ecgnb.sweep``),
  on this machine or, with ``--ray [ADDRESS]``, on a Ray cluster (``ecgnb.ray_backend``);
- ``ecgnb report GRID_OR_FOLDER``: ``results.csv`` rebuilt from the cell folders, then
  notebooks/06_results.ipynb renders the study table, statistics and figures;
- ``ecgnb demo``: embedded data, notebook 01, ``params/grids/demo.yaml``, the report.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

from ecgnb.paths import PROJECT_ROOT, outputs_root

DEMO_STEPS = (("notebooks/01_data_exploration.ipynb", "params/01_data_exploration/embedded.yaml"),)
DEMO_GRID = PROJECT_ROOT / "params" / "grids" / "demo.yaml"
REPORT_NOTEBOOK = PROJECT_ROOT / "notebooks" / "06_results.ipynb"
REPORT_RUN = "report"  # the report's run folder inside a grid folder
LOCAL_RAY = "local"  # ``--ray`` without an address: start a local Ray instance


def _execute(args) -> int:
    from ecgnb.runner import execute

    folder = execute(args.notebook, args.params, run_name=args.run_name,
                     overwrite=args.overwrite, progress=not args.quiet)
    print(f"finished: {folder}")
    return 0


def _data(args) -> int:
    from ecgnb.simulate import embedded_data

    paths = embedded_data(args.cache_dir, seed=args.seed, small=args.small)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


# --------------------------------------------------------------------------- run
def _run(args) -> int:
    from ecgnb.grid import load_grid
    from ecgnb.sweep import format_plan, plan

    if args.outputs:  # before anything reads the outputs root (kernels inherit it)
        os.environ["ECGNB_OUTPUTS"] = str(Path(args.outputs).expanduser().resolve())
    grid = load_grid(args.grid)  # every run validated against its notebook before anything runs
    if args.dry_run:
        print(format_plan(grid, plan(grid, args.only, args.retry_failed)))
        return 0
    if args.ray is not None:
        if args.devices:
            raise ValueError("--devices is for the local scheduler; with --ray, Ray assigns "
                             "the GPUs asked for by the grid's resources")
        return _sweep(grid, args.jobs, only=args.only, retry_failed=args.retry_failed,
                      ray_address=args.ray)
    devices = [d.strip() for d in args.devices.split(",")] if args.devices else []
    return _sweep(grid, args.jobs or 1, devices, args.only, args.retry_failed)


def _sweep(grid, jobs: int | None, devices=(), only=None, retry_failed: bool = False,
           ray_address: str | None = None) -> int:
    from ecgnb.sweep import count_states, run_sweep

    start = time.time()
    if ray_address is None:
        statuses = run_sweep(grid, jobs=jobs, devices=devices, only=only,
                             retry_failed=retry_failed)
    else:
        from ecgnb.ray_backend import run_sweep_on_ray

        statuses, _ = run_sweep_on_ray(grid, ray_address, jobs=jobs, only=only,
                                       retry_failed=retry_failed)
    print(f"sweep '{grid.name}' in {time.time() - start:.1f} s: {count_states(statuses)}")
    for status in statuses.values():
        if status.state in ("failed", "skipped"):
            print(f"  {status.state}: {status.name}: {status.error}")
            if status.state == "failed":
                print(f"    executed notebook and _FAILED.json in {status.folder}")
    print(f"status file: {outputs_root() / grid.name / 'sweep.json'}")
    return 1 if any(s.state == "failed" for s in statuses.values()) else 0


# --------------------------------------------------------------------------- report
def grid_folder(target: str) -> Path:
    """The results folder of a grid file, a folder path, or a name under the outputs root."""
    path = Path(target).expanduser()
    if path.suffix in (".yaml", ".yml"):
        from ecgnb.grid import load_grid
        return outputs_root() / load_grid(path, validate=False).name
    for candidate in (path, outputs_root() / target):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no results folder '{target}' (nor {outputs_root() / target})")


def build_report(target: str, use_notebook: bool = True) -> Path:
    """Rebuild ``results.csv`` (grid folder and outputs root), then the report; returns its folder."""
    from ecgnb import report
    from ecgnb.summaries import STAGE_SUMMARIES, collect_summaries, encoder_tables

    folder = grid_folder(target)
    results = report.collect_results(folder, root=outputs_root())
    if results.empty:
        raise FileNotFoundError(f"no complete downstream cell under {folder}; run the grid first")
    csv, _ = report.write_csv(results, folder / "results.csv", outputs_root() / "results.csv")
    for stage in STAGE_SUMMARIES.values():  # probes and drift of notebooks 02 and 03
        summaries = collect_summaries(folder, f"{stage}.json", root=outputs_root())
        if not summaries.empty:
            report.write_csv(summaries, folder / f"{stage}.csv")
    out = folder / REPORT_RUN
    if not use_notebook:
        report.write_report(results, out, encoder_tables=encoder_tables(csv))
        return out
    return _report_notebook(csv, out)


def _report_notebook(csv: Path, out: Path) -> Path:
    """Execute notebook 06 on ``csv`` unless it already rendered exactly this table."""
    from ecgnb.runner import execute, is_complete, params_hash
    from ecgnb.summaries import STAGE_SUMMARIES

    params = {"results_csv": str(csv.resolve())}
    tables = [csv] + [csv.parent / f"{stage}.csv" for stage in STAGE_SUMMARIES.values()]
    content = tuple(hashlib.sha256(t.read_bytes()).hexdigest()[:16] for t in tables if t.is_file())
    if is_complete(out, params_hash(params, content)):
        return out
    run_name = out.relative_to(outputs_root()).as_posix()
    return execute(REPORT_NOTEBOOK, params, run_name=run_name, overwrite=True,
                   parents_hash=content)


def _report(args) -> int:
    out = build_report(args.target, use_notebook=not args.no_notebook)
    print(f"results table: {out.parent / 'results.csv'} (copy: {outputs_root() / 'results.csv'})")
    print(f"report: {out / 'report.md'}\nfigures: {out / 'figures.html'}")
    from ecgnb.summaries import STAGE_SUMMARIES

    for notebook, stage in STAGE_SUMMARIES.items():  # probes (02), drift and probes (03)
        if (out.parent / f"{stage}.csv").is_file():
            print(f"{notebook} summaries: {out.parent / f'{stage}.csv'}")
    return 0


# --------------------------------------------------------------------------- demo
def _demo(args) -> int:
    from ecgnb.grid import load_grid
    from ecgnb.paths import data_root
    from ecgnb.simulate import embedded_data

    start = time.time()
    embedded_data(data_root(), seed=0)
    print(f"embedded data ready under {data_root()} ({time.time() - start:.1f} s)")
    _demo_exploration()
    grid = load_grid(DEMO_GRID)
    status = _sweep(grid, args.jobs)
    out = build_report(str(DEMO_GRID))
    print(f"demo finished in {time.time() - start:.1f} s; report: {out / 'report.md'} "
          f"(figures: {out / 'figures.html'}); results: {out.parent / 'results.csv'}")
    return status


def _demo_exploration() -> None:
    from ecgnb.runner import execute, is_complete

    for notebook, params in DEMO_STEPS:
        run_name = f"{Path(notebook).stem}/{Path(params).stem}"
        if is_complete(outputs_root() / run_name):
            print(f"skip (finished): {run_name}")
            continue
        execute(PROJECT_ROOT / notebook, PROJECT_ROOT / params, run_name=run_name,
                overwrite=True, progress=True)
        print(f"done: {run_name} -> {outputs_root() / run_name}")


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgnb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("execute", help="run one notebook with one params file (papermill)")
    p.add_argument("notebook")
    p.add_argument("params")
    p.add_argument("--run-name", default=None, help="default: <notebook-stem>/<params-stem>")
    p.add_argument("--overwrite", action="store_true", help="re-run a finished run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_execute)

    p = sub.add_parser("data", help="generate the embedded default data (cached)")
    p.add_argument("--cache-dir", default=str(PROJECT_ROOT / "data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--small", action="store_true")
    p.set_defaults(func=_data)

    p = sub.add_parser("run", help="run a grid file's experiments (resumable DAG)")
    p.add_argument("grid", help="a grid YAML, e.g. params/grids/demo.yaml")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time (default 1; with --ray: every ready run, Ray queues them)")
    p.add_argument("--devices", default="", help="e.g. cuda:0,cuda:1: one run per GPU at a time")
    p.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, metavar="ADDRESS",
                   help="run on Ray: alone, a local Ray instance; 'auto', HOST:PORT or "
                        "ray://HOST:PORT join a running cluster (see the grid's resources)")
    p.add_argument("--outputs", default=None,
                   help="outputs root (default $ECGNB_OUTPUTS or ./outputs); with --ray, a "
                        "folder every node sees at the same path")
    p.add_argument("--dry-run", action="store_true", help="print the DAG and counts, run nothing")
    p.add_argument("--only", default=None, help="glob on run names; their missing ancestors too")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the runs that failed with the same parameters")
    p.set_defaults(func=_run)

    p = sub.add_parser("report", help="results.csv and the study's tables and figures")
    p.add_argument("target", help="a grid YAML, a grid folder, or its name under outputs/")
    p.add_argument("--no-notebook", action="store_true",
                   help="write the tables and figures without executing notebook 06")
    p.set_defaults(func=_report)

    p = sub.add_parser("demo", help="the main job on the embedded data")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("ecgnb: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (FileExistsError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"ecgnb: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
