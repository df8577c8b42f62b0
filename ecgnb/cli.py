"""The ``ecgnb`` command line: ``execute``, ``data``, ``run``, ``params``, ``report`` and ``demo``.

- ``ecgnb run GRID``: a grid file's runs as a resumable DAG (``ecgnb.workflow.grid``,
  ``ecgnb.workflow.sweep``); ``ecgnb params GRID RUN``: one run's parameters as a params file;
  on this machine or, with ``--ray [ADDRESS]``, on a Ray cluster
  (``ecgnb.workflow.ray_backend``);
- ``ecgnb report GRID_OR_FOLDER``: ``results.csv`` rebuilt from the cell folders, then
  notebooks/06_results.ipynb renders the study table, statistics and figures
  (``ecgnb.report.grid_report``); ``--figures DIR`` also writes the key figures as PNG images
  (``ecgnb.report.static``; ``make figures``: docs/);
- ``ecgnb demo``: embedded data, notebook 01, ``params/grids/demo.yaml``, the report.

An error prints one line first (the file, the problem, what to do); ``--verbose`` adds the
traceback.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import time
import traceback
from pathlib import Path

from ecgnb.runs import NOTEBOOKS, PROJECT_ROOT, is_complete, outputs_root, stage_of

DEMO_STEPS = ((NOTEBOOKS["exploration"], "params/exploration/embedded.yaml"),)
DEMO_GRID = PROJECT_ROOT / "params" / "grids" / "demo.yaml"
LOCAL_RAY = "local"  # ``--ray`` without an address: start a local Ray instance


def _execute(args) -> int:
    import yaml

    from ecgnb.workflow.runner import execute, read_params

    params = args.params
    if args.param:  # NAME VALUE pairs (VALUE read as YAML) over the params file's
        stem = Path(args.params).stem if args.params else "interactive"
        args.run_name = args.run_name or f"{stage_of(args.notebook)}/{stem}"
        params = {**(read_params(args.params) if args.params else {}),
                  **{name: yaml.safe_load(value) for name, value in args.param}}
    elif params is None:
        raise ValueError("give a params file, -p NAME VALUE pairs, or both")
    folder = execute(args.notebook, params, run_name=args.run_name,
                     overwrite=args.overwrite, progress=not args.quiet)
    print(f"finished: {folder}")
    return 0


def _data(args) -> int:
    from ecgnb.data.simulate import embedded_data, folder_size
    from ecgnb.runs import data_root

    size = "small" if args.small else args.size
    start = time.time()
    root = args.cache_dir or data_root()
    paths = embedded_data(root, seed=args.seed, size=size)
    if args.ptbxl:
        from ecgnb.data.simulate_ptbxl import embedded_ptbxl

        paths["ptbxl"] = embedded_ptbxl(root, seed=args.seed)
    for name, path in paths.items():
        size_b = folder_size(path)
        print(f"{name}: {path} ({size_b / 1e9:.2f} GB)" if size_b >= 1e8
              else f"{name}: {path} ({size_b / 1e6:.1f} MB)")
    print(f"{size} data ready in {time.time() - start:.1f} s")
    return 0


# --------------------------------------------------------------------------- run
def _run(args) -> int:
    from ecgnb.workflow.grid import load_grid
    from ecgnb.workflow.sweep import format_plan, plan

    if args.outputs:  # before anything reads the outputs root (kernels inherit it)
        os.environ["ECGNB_OUTPUTS"] = str(Path(args.outputs).expanduser().resolve())
    # every run validated against its notebook before anything runs (a cluster's GPUs: by Ray)
    grid = load_grid(args.grid, local_devices=args.ray is None)
    if args.keep_superseded is not None and args.keep_superseded < 0:
        raise ValueError(f"--keep-superseded must be >= 0, got {args.keep_superseded}")
    if args.dry_run:
        statuses = plan(grid, args.only, args.retry_failed, args.accept_old_code)
        print(format_plan(grid, statuses, args.accept_old_code, not args.no_disk_check))
        return 0
    options = {"only": args.only, "retry_failed": args.retry_failed,
               "accept_old_code": args.accept_old_code, "keep_superseded": args.keep_superseded,
               "disk_check": not args.no_disk_check}
    if args.ray is not None:
        if args.devices:
            raise ValueError("--devices is for the local scheduler; with --ray, Ray assigns "
                             "the GPUs asked for by the grid's resources")
        return _sweep(grid, args.jobs, ray_address=args.ray, **options)
    devices = [d.strip() for d in args.devices.split(",")] if args.devices else []
    return _sweep(grid, args.jobs or 1, devices, **options)


def _params(args) -> int:
    import yaml

    from ecgnb.workflow.grid import load_grid

    grid = load_grid(args.grid)
    if args.run not in grid.runs:
        raise KeyError(f"{args.grid}: no run '{args.run}'; runs: {sorted(grid.runs)}")
    run = grid.runs[args.run]
    print(f"# {grid.run_id(args.run)} of {args.grid}: ecgnb execute "
          f"{run.notebook.relative_to(PROJECT_ROOT)} THIS_FILE")
    print(yaml.safe_dump(run.params, sort_keys=False), end="")
    return 0


def _sweep(grid, jobs: int | None, devices=(), only=None, retry_failed: bool = False,
           accept_old_code: bool = False, ray_address: str | None = None,
           keep_superseded: int | None = None, disk_check: bool = True) -> int:
    from ecgnb.workflow.sweep import KEEP_SUPERSEDED, code_note, count_states, run_sweep

    start = time.time()
    keep = KEEP_SUPERSEDED if keep_superseded is None else keep_superseded
    if ray_address is None:
        statuses = run_sweep(grid, jobs=jobs, devices=devices, only=only,
                             retry_failed=retry_failed, accept_old_code=accept_old_code,
                             keep_superseded=keep, disk_check=disk_check)
    else:
        from ecgnb.workflow.ray_backend import run_sweep_on_ray

        statuses, _ = run_sweep_on_ray(grid, ray_address, jobs=jobs, only=only,
                                       retry_failed=retry_failed,
                                       accept_old_code=accept_old_code,
                                       keep_superseded=keep, disk_check=disk_check)
    print(f"sweep '{grid.name}' in {time.time() - start:.1f} s: {count_states(statuses)}")
    note = code_note(statuses, accept_old_code)
    if note:
        print(f"  note: {note}")
    for status in statuses.values():
        if status.state in ("failed", "skipped"):
            print(f"  {status.state}: {status.name}: {status.error}")
            if status.state == "failed" and (Path(status.folder) / "_FAILED.json").is_file():
                print(f"    executed notebook and _FAILED.json in {status.folder}")
            elif status.state == "failed":
                print(f"    see {status.folder} (no _FAILED.json could be written)")
    print(f"status file: {outputs_root() / grid.name / 'sweep.json'}")
    return 1 if any(s.state == "failed" for s in statuses.values()) else 0


# --------------------------------------------------------------------------- report
def _report(args) -> int:
    from ecgnb.report.grid_report import STAGE_SUMMARIES, build_report

    out = build_report(args.target, use_notebook=not args.no_notebook)
    print(f"results table: {out.parent / 'results.csv'} (copy: {outputs_root() / 'results.csv'})")
    print(f"report: {out / 'report.md'}\nfigures: {out / 'figures.html'}")
    if args.figures:
        from ecgnb.report.collect import read_results
        from ecgnb.report.static import write_figures

        for path in write_figures(read_results(out.parent / "results.csv"), args.figures):
            print(f"figure: {path}")
    for stage in STAGE_SUMMARIES:  # probes (02), drift and probes (03)
        if (out.parent / f"{stage}.csv").is_file():
            print(f"{stage} summaries: {out.parent / f'{stage}.csv'}")
    return 0


# --------------------------------------------------------------------------- demo
def _demo(args) -> int:
    from ecgnb.data.simulate import embedded_data
    from ecgnb.report.grid_report import build_report
    from ecgnb.runs import data_root
    from ecgnb.workflow.grid import load_grid

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
    from ecgnb.workflow.runner import execute

    for notebook, params in DEMO_STEPS:
        run_name = f"{stage_of(notebook)}/{Path(params).stem}"
        if is_complete(outputs_root() / run_name):
            print(f"skip (finished): {run_name}")
            continue
        execute(PROJECT_ROOT / notebook, PROJECT_ROOT / params, run_name=run_name,
                overwrite=True, progress=True)
        print(f"done: {run_name} -> {outputs_root() / run_name}")


def _convert_encoder(args) -> int:
    from ecgnb.models import convert_encoder

    old = convert_encoder(args.path)
    print(f"converted {args.path} (the original is kept as {old})")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgnb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("execute", help="run one notebook with one params file (papermill)")
    p.add_argument("notebook")
    p.add_argument("params", nargs="?", default=None, help="a params file (YAML)")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="set one parameter (VALUE read as YAML), over the params file's; e.g. "
                        "-p target params/datasets/ptbxl.yaml")
    p.add_argument("--run-name", default=None,
                   help="default: <stage>/<params-stem> (no params file: <stage>/interactive)")
    p.add_argument("--overwrite", action="store_true", help="re-run a finished run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_execute)

    p = sub.add_parser("data", help="generate the embedded default data (cached)",
                       description="Generate the embedded data in the real formats, once, under "
                                   "the data root ($ECGNB_DATA or ./data) or --cache-dir.")
    p.add_argument("--cache-dir", default=None,
                   help="where to write (default: $ECGNB_DATA, else the project's data/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", choices=("small", "demo", "paper"), default="demo",
                   help="small: tests; demo: 600 fragments, 4 WESAD subjects (default); paper: "
                        "the real sizes, 1,000 fragments and 15 subjects of 100 min at 700 Hz "
                        "(about 4.4 GB on disk, a few minutes, under 1.5 GB of memory)")
    p.add_argument("--small", action="store_true", help="same as --size small")
    p.add_argument("--ptbxl", action="store_true",
                   help="also the embedded PTB-XL sample (params/datasets/embedded-ptbxl.yaml)")
    p.set_defaults(func=_data)

    p = sub.add_parser("run", help="run a grid file's experiments (resumable DAG)")
    p.add_argument("grid", help="a grid YAML, e.g. params/grids/demo.yaml")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time (default 1; with --ray: every ready run, Ray queues them)")
    p.add_argument("--devices", default="",
                   help="e.g. cuda:0,cuda:1: each run on one of them, the least busy first "
                        "(with more --jobs than devices, runs share them round-robin)")
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
    p.add_argument("--accept-old-code", action="store_true",
                   help="keep finished runs recorded by another version of the code they "
                        "executed or of a library that computes (default: run them again; "
                        "--dry-run names the files that changed)")
    p.add_argument("--keep-superseded", type=int, default=None, metavar="N",
                   help="a finished run that runs again is set aside in <run>/superseded/; "
                        "keep the N newest per run, delete older ones (default 3; 0 keeps none)")
    p.add_argument("--no-disk-check", action="store_true",
                   help="start even if the runs to do seem not to fit the free disk space")
    p.set_defaults(func=_run)

    p = sub.add_parser("params", help="print one grid run's parameters as a params file")
    p.add_argument("grid", help="a grid YAML, e.g. params/grids/paper.yaml")
    p.add_argument("run", help="a run name of the grid, e.g. pretraining/ts2vec-ecg")
    p.set_defaults(func=_params)

    p = sub.add_parser("report", help="results.csv and the study's tables and figures")
    p.add_argument("target", help="a grid YAML, a grid folder, or its name under outputs/")
    p.add_argument("--no-notebook", action="store_true",
                   help="write the tables and figures without executing notebook 06")
    p.add_argument("--figures", default=None, metavar="DIR",
                   help="also write the key figures as PNG images into DIR (e.g. docs/)")
    p.set_defaults(func=_report)

    p = sub.add_parser("convert-encoder",
                       help="rewrite an encoder.pt of an older ecgnb as data only (trusted files)",
                       description="Encoders are read as data (torch.load weights_only=True). "
                                   "One written by an older ecgnb holds Python objects: this "
                                   "reads it once with full unpickling, which runs whatever "
                                   "the file asks for, so use it only on files you trust, and "
                                   "writes it back in the current format (the old file is "
                                   "kept as <name>.old.pt).")
    p.add_argument("path", help="the encoder.pt to convert")
    p.set_defaults(func=_convert_encoder)

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
    except Exception as exc:  # noqa: BLE001 - every error gets one line; --verbose the rest
        print(f"ecgnb: error: {error_line(exc)}", file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        else:
            print("(ecgnb --verbose ... prints the traceback)", file=sys.stderr)
        return 2


DISK_HINTS = {errno.ENOSPC: "the disk is full: free space, or point ECGNB_OUTPUTS to another disk",
              errno.EROFS: "read-only file system: point ECGNB_OUTPUTS to a writable folder",
              errno.EACCES: "no permission: point ECGNB_OUTPUTS to a writable folder",
              errno.EDQUOT: "disk quota exceeded: free space, or point ECGNB_OUTPUTS elsewhere"}


def error_line(exc: BaseException) -> str:
    """One line: the file and the problem (and, for a full or read-only disk, what to do)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if not isinstance(exc, (OSError, ValueError, KeyError, RuntimeError)):
        first = f"{type(exc).__name__}: {first}"
    disk = _disk_error(exc)
    return f"{first}; {DISK_HINTS[disk.errno]}" if disk is not None else first


def _disk_error(exc: BaseException | None) -> OSError | None:
    """The full-disk or read-only OSError behind ``exc`` (its causes included), if any."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_HINTS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
