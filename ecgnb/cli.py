"""The ``ecgnb`` command line: ``execute``, ``data``, ``demo`` (and later ``run``, ``report``)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ecgnb.paths import PROJECT_ROOT, outputs_root

DEMO_STEPS = (("notebooks/01_data_exploration.ipynb", "params/01_data_exploration/embedded.yaml"),)


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


def _demo(args) -> int:
    from ecgnb.paths import data_root
    from ecgnb.runner import execute, is_complete, read_params
    from ecgnb.simulate import embedded_data

    start = time.time()
    embedded_data(data_root(), seed=0)
    print(f"embedded data ready under {data_root()} ({time.time() - start:.1f} s)")
    for notebook, params in DEMO_STEPS:
        run_name = f"{Path(notebook).stem}/{Path(params).stem}"
        folder = outputs_root() / run_name
        if is_complete(folder) and not args.overwrite:
            print(f"skip (finished): {run_name}")
            continue
        read_params(PROJECT_ROOT / params)
        execute(PROJECT_ROOT / notebook, PROJECT_ROOT / params, run_name=run_name,
                overwrite=True, progress=True)
        print(f"done: {run_name} -> {folder}")
    print(f"demo finished in {time.time() - start:.1f} s; results under {outputs_root()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgnb", description=__doc__)
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

    p = sub.add_parser("demo", help="the main job on the embedded data")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileExistsError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"ecgnb: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
