"""The lowest layer: devices, seeds, typed configs and their ranges, versions, the code's
identity and atomic JSON writes."""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import threading
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

VERSIONED_PACKAGES = ("ecgnb", "torch", "numpy", "scipy", "pandas", "scikit-learn", "wfdb",
                      "neurokit2", "umap-learn", "plotly", "papermill")
CODE_PACKAGES = ("torch", "numpy", "scikit-learn")  # the libraries a result's numbers depend on
PACKAGE_ROOT = Path(__file__).resolve().parent


class DataWarning(UserWarning):
    """Data that load but deserve a look (a subject with no usable window, synthetic data standing
    in for a root that was not set): recorded in the run's ``config.json``, shown by the report."""


# --------------------------------------------------------------------------- parameter ranges
@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric parameter: ``low`` < or <= value < or <= ``high``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: value must be > low (else >= low)

    def contains(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if self.high is None else f"<= {self.high:g}"
        return " and ".join(p for p in (low, high) if p)


COUNT, POSITIVE, NON_NEGATIVE = Range(1), Range(0, low_open=True), Range(0)
SHARE = Range(0, 1, low_open=True)  # a fraction in (0, 1]
# One name, one meaning, everywhere: the range of each numeric parameter of the notebooks and of
# their typed configs (``None``, where a parameter allows it, means "the default": not checked).
PARAMETER_RANGES: dict[str, Range] = {
    "n_epochs": COUNT, "batch_size": COUNT, "n_members": COUNT,
    "n_examples": COUNT, "k_neighbors": COUNT, "n_boot": COUNT, "n_neighbors": Range(2),
    "n_windows": NON_NEGATIVE, "n_corpus_windows": NON_NEGATIVE, "min_dist": NON_NEGATIVE,
    "lr": POSITIVE, "encoder_lr_ratio": POSITIVE, "fs": POSITIVE,
    "label_fraction": SHARE, "corpus_fraction": SHARE,
    "val_share": Range(0, 1, low_open=True), "test_share": Range(0, 1, low_open=True),
    "seed": NON_NEGATIVE, "seeds": NON_NEGATIVE, "data_seed": NON_NEGATIVE,
    "split_seed": NON_NEGATIVE,
    # downstream training (0: no early stopping, no warm-up, no clipping)
    "patience": NON_NEGATIVE, "warmup_epochs": NON_NEGATIVE, "lr_patience": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE, "min_lr": NON_NEGATIVE, "grad_clip": NON_NEGATIVE,
    "lr_factor": Range(0, 1, low_open=True),
}
# Where a stage gives a parameter another range: pretraining for 0 epochs is the "untrained"
# reference (the network at its initial weights).
STAGE_RANGES: dict[str, dict[str, Range]] = {"pretraining": {"n_epochs": NON_NEGATIVE}}


def parameter_range(name: str, stage: str | None = None) -> Range | None:
    """The range of parameter ``name`` in ``stage`` (None: unchecked)."""
    return STAGE_RANGES.get(stage, {}).get(name) or PARAMETER_RANGES.get(name)


def range_problem(name: str, value, stage: str | None = None) -> str | None:
    """Why ``value`` is out of ``name``'s range in ``stage`` (each item of a list), or None."""
    allowed = parameter_range(name, stage)
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values if allowed else ():
        if isinstance(item, (int, float)) and not isinstance(item, bool) \
                and not allowed.contains(item):
            return f"parameter '{name}' must be {allowed}, got {item!r}"
    return None


def check_ranges(config) -> None:
    """``__post_init__`` of the typed configs: every numeric field within its range (of the
    config's ``STAGE``, where it names one)."""
    for field in dataclasses.fields(config):
        problem = range_problem(field.name, getattr(config, field.name),
                                getattr(config, "STAGE", None))
        if problem:
            raise ValueError(f"{type(config).__name__}: {problem}")


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, CPU otherwise; ``device`` overrides ("cpu", "cuda", "cuda:1")."""
    if device in (None, "", "auto"):  # "auto" is spelled only here: everything else passes it on
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def torch_generator(seed: int) -> torch.Generator:
    """A CPU generator for every random draw of a run (crops, masks, augmentations, order)."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def seed_everything(seed: int) -> None:
    """Seed the global RNGs too, for third-party code that reads them (weight init, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def math_threads() -> int:
    """torch's CPU threads in this process: part of a run's record, since the thread count
    changes the last digits of CPU results (see :mod:`ecgnb.workflow.sweep`)."""
    return torch.get_num_threads()


def reject_unknown(values: dict, known: Iterable[str], where: str) -> None:
    """Unknown keys are an error that lists them and the known ones."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise KeyError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")


def from_dict(cls, values: dict, where: str):
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys loudly."""
    reject_unknown(values, {f.name for f in dataclasses.fields(cls)}, where)
    return cls(**values)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def code_identity(notebook: str | Path | None = None) -> dict[str, str]:
    """What produced a result: ``source_hash``, a hash of the code a run executes
    (:func:`code_files` of ``notebook``; every ``ecgnb/**/*.py`` when None), and the versions of
    the numerical libraries (torch, numpy, scikit-learn)."""
    files = code_files(notebook) if notebook is not None else package_files()
    return {"source_hash": source_hash(files), **library_versions()}


def library_versions() -> dict[str, str]:
    """The versions of the libraries a result's numbers depend on (:data:`CODE_PACKAGES`)."""
    versions = package_versions()
    return {k: versions[k] for k in CODE_PACKAGES}


def source_hash(files: dict[str, str]) -> str:
    """One short hash of a ``{path: digest}`` mapping (:func:`code_files`)."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def code_files(notebook: str | Path, root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """The code a run of ``notebook`` executes: the notebook's code cells and every module of
    the package at ``root`` that they import, directly or through other modules of it (package
    ``__init__`` files included). Maps each file's path (relative to the project folder, absolute
    for a notebook outside it) to :func:`file_digest`. An edit to a file outside this closure
    (the command line, the benchmarks, docs, tests) leaves a run's identity as it was."""
    notebook = Path(notebook).resolve()
    modules = _imported_modules(parse_python(notebook_code(notebook)), root.name)
    files = {**{shown_path(p, root.parent): file_digest(p) for p in module_closure(modules, root)},
             shown_path(notebook, root.parent): file_digest(notebook)}
    return dict(sorted(files.items()))


def module_closure(modules: Iterable[str], root: Path = PACKAGE_ROOT) -> list[Path]:
    """The source files of ``modules`` (dotted names inside the package at ``root``) and of every
    module of that package they import, transitively."""
    todo, seen = list(modules), set()
    while todo:
        for path in _module_files(todo.pop(), root):
            if path not in seen:
                seen.add(path)
                stat = path.stat()
                todo.extend(_module_imports(str(path), stat.st_mtime_ns, stat.st_size, str(root)))
    return sorted(seen)


def _module_files(module: str, root: Path) -> list[Path]:
    """``pkg.a.b`` -> ``pkg/__init__.py``, ``pkg/a/__init__.py`` and ``pkg/a/b.py`` (or
    ``pkg/a/b/__init__.py``); a folder without ``__init__.py`` is a namespace package; a name
    that is an attribute, not a module, maps to the files of its package."""
    files, folder = [root / "__init__.py"], root
    for part in module.split(".")[1:]:
        if folder.joinpath(part + ".py").is_file():
            files.append(folder / (part + ".py"))
            break
        folder = folder / part
        if not folder.is_dir():
            break
        files.append(folder / "__init__.py")
    return [f for f in files if f.is_file()]


# CPython 3.11's ast.parse is not thread-safe: two threads parsing at once (a sweep's runs
# computing their code identity) can fail with "SystemError: AST constructor recursion depth
# mismatch". One parse at a time.
_PARSE_LOCK = threading.Lock()


def parse_python(source: str) -> ast.AST:
    """``ast.parse``, one thread at a time."""
    with _PARSE_LOCK:
        return ast.parse(source)


@lru_cache(maxsize=4096)
def _module_imports(path: str, mtime_ns: int, size: int, root: str) -> tuple[str, ...]:
    """The package modules the source file at ``path`` imports (cached per file version)."""
    parts = Path(path).relative_to(Path(root).parent).with_suffix("").parts
    return tuple(_imported_modules(parse_python(Path(path).read_text()), parts[0], parts[:-1]))


def _imported_modules(tree: ast.AST, package: str, here: tuple[str, ...] = ()) -> list[str]:
    """Dotted names of the ``package`` modules a syntax tree imports, in any scope:
    ``import pkg.x``, ``from pkg.x import y`` (``pkg.x`` and ``pkg.x.y``, which may be a module),
    ``from pkg import x`` and relative imports (``here``: the importing module's package)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[:len(here) - node.level + 1]
                base = ".".join(anchor + ((base,) if base else ()))
            found += [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return [name for name in found if name == package or name.startswith(package + ".")]


def notebook_code(notebook: Path) -> str:
    """The code cells of a notebook, joined (IPython magics and shell lines left out)."""
    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c.get("cell_type") == "code"]
    lines = [line for source in sources for line in source.splitlines()
             if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def file_digest(path: Path) -> str:
    """Short SHA-256 of a source file; of a notebook, of its code cells only (outputs, execution
    counts and markdown do not change what it computes)."""
    path = Path(path)
    stat = path.stat()
    return _digest(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    data = notebook_code(Path(path)).encode() if path.endswith(".ipynb") \
        else Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def shown_path(path: Path, project: Path = PACKAGE_ROOT.parent) -> str:
    """``path`` relative to the project folder (absolute when outside it), as recorded."""
    path = Path(path).resolve()
    return path.relative_to(project).as_posix() if path.is_relative_to(project) else str(path)


def package_files() -> dict[str, str]:
    """Every module of the package with its digest (the code of a run outside the stages)."""
    return {shown_path(p): file_digest(p) for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_json(path: str | Path, obj: Any, durable: bool = False) -> Path:
    """Write JSON atomically (temp file + rename), so a killed run never leaves half a file.

    ``durable``: also flush the file and its folder to the disk (``fsync``) before returning, for
    records that vouch for other files (a run's completion record)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per writer: two writers of one file never share (and unlink) a temp file
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    text = json.dumps(obj, indent=2, default=_jsonable)
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full or read-only disk: keep the first error
            tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)
    return path


def fsync_file(path: Path) -> None:
    """Flush a file written by anyone (torch, pandas, papermill) to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")
