"""What produced a result: the code a run executed, the libraries that computed it and the data
it read. Every identity in the workbook is built here.

- **Code.** :func:`loaded_code`: the digest of every module of the package that this process has
  loaded, which is exactly the code a run executed (a run builds one backbone, so it loads that
  backbone's module and not the others: the registry imports backbones on lookup).
  :func:`code_files`: the static closure of a notebook's imports, for code that must name a run's
  code before any kernel starts. :func:`changed_files` names what differs now from a record.
- **Libraries.** :data:`LIBRARIES`: the packages whose versions change a result's digits.
- **Data.** :func:`fingerprint`: a content hash of a folder or file, the way DVC keeps one: the
  SHA-256 of each file, cached by resolved path, size and modification time in a small JSON file,
  so a second look at an unchanged dataset costs one ``stat`` per file. :func:`note_read`: the
  data layer names each root it reads; :func:`data_read` fingerprints them for the run's record.
- **Results.** :func:`result_id`: one digest of a finished run's artefacts, which its children
  record, so that a parent that changed under them is seen.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Iterable

from ecgnb.files import write_json

PACKAGE_ROOT = Path(__file__).resolve().parent
# The libraries that compute a result's numbers (a new version can change its digits).
LIBRARIES = ("torch", "numpy", "scipy", "numba", "umap-learn", "pynndescent", "scikit-learn",
             "pandas", "wfdb")
# Recorded in each run's config.json for information; not part of its identity.
VERSIONED_PACKAGES = ("ecgnb",) + LIBRARIES + ("neurokit2", "plotly", "papermill")


# --------------------------------------------------------------------------- libraries
def package_versions(names: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """``{python, <package>: version}``, each read once per process: a package installed anew
    while a kernel runs is not the one that kernel has loaded."""
    return {"python": platform.python_version(), **{name: _version(name) for name in names}}


@lru_cache(maxsize=None)
def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    versions = package_versions(LIBRARIES)
    return tuple((k, versions[k]) for k in LIBRARIES)


def library_versions() -> dict[str, str]:
    """The versions of :data:`LIBRARIES` (read once per process)."""
    return dict(_library_versions())


def git_commit(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or PACKAGE_ROOT, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------- code
def loaded_code(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """``{path: digest}`` of every module of the package at ``root`` loaded in this process."""
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.endswith(".py"):
            resolved = _resolved_under(path, root)
            if resolved is not None:
                files.add(resolved)
    return {shown_path(p, root.parent): file_digest(p) for p in sorted(files)}


@lru_cache(maxsize=None)
def _resolved_under(path: str, root: Path) -> Path | None:
    """``path`` resolved, when it lies under ``root`` (a module's file does not move while it is
    loaded, so each is resolved once per process: a kernel holds about 3,000 modules)."""
    resolved = Path(path).resolve()
    return resolved if resolved.is_relative_to(root) else None


def code_identity(files: dict[str, str]) -> dict[str, str]:
    """``{source_hash, <library>: version}`` of a ``{path: digest}`` mapping."""
    return {"source_hash": source_hash(files), **library_versions()}


def source_hash(files: dict[str, str]) -> str:
    """One short hash of a ``{path: digest}`` mapping."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def changed_files(recorded: dict[str, str], project: Path = PACKAGE_ROOT.parent) -> list[str]:
    """The recorded files whose digest differs now (or that are gone), sorted."""
    changed = []
    for path, digest in sorted(recorded.items()):
        full = Path(path) if Path(path).is_absolute() else project / path
        if not full.is_file() or file_digest(full) != digest:
            changed.append(path)
    return changed


def changed_libraries(recorded: dict) -> list[str]:
    """``torch 2.3.0 -> 2.4.0`` for each library whose recorded version differs."""
    return [f"{k} {recorded.get(k)} -> {v}" for k, v in library_versions().items()
            if recorded.get(k) != v]


def code_files(notebook: str | Path, root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """The static closure of ``notebook``: its code cells and every module of the package at
    ``root`` that they import, directly or through other modules of it (package ``__init__``
    files included), each mapped to :func:`file_digest`."""
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


def modules_digest(modules: Iterable[str], root: Path = PACKAGE_ROOT) -> str:
    """One digest of the static closure of ``modules`` (e.g. the code that windows a corpus)."""
    return source_hash({shown_path(p, root.parent): file_digest(p)
                        for p in module_closure(modules, root)})


def _module_files(module: str, root: Path) -> list[Path]:
    """``pkg.a.b`` -> ``pkg/__init__.py``, ``pkg/a/__init__.py`` and ``pkg/a/b.py`` (or
    ``pkg/a/b/__init__.py``); a name that is an attribute maps to its package's files."""
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
    parts = Path(path).relative_to(Path(root).parent).with_suffix("").parts
    return tuple(_imported_modules(parse_python(Path(path).read_text()), parts[0], parts[:-1]))


def _imported_modules(tree: ast.AST, package: str, here: tuple[str, ...] = ()) -> list[str]:
    """Dotted names of the ``package`` modules a syntax tree imports, in any scope (absolute
    and relative imports; ``from pkg.x import y`` gives ``pkg.x`` and ``pkg.x.y``)."""
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
    """Every module of the package with its digest."""
    return {shown_path(p): file_digest(p) for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


# --------------------------------------------------------------------------- data
_READS: set[str] = set()
_READS_LOCK = threading.Lock()
_CACHE_LOCK = threading.Lock()
SKIPPED = (".tmp", ".lock")  # files under a data root that are no data


def note_read(path) -> None:
    """The data layer reads ``path`` (a dataset folder, a file, a card): recorded for the run."""
    with _READS_LOCK:
        _READS.add(str(Path(path).expanduser().resolve()))


def forget_reads() -> None:
    """A run starts: nothing read yet."""
    with _READS_LOCK:
        _READS.clear()


def data_read(cache_file: Path | None = None) -> dict[str, str]:
    """``{path: fingerprint}`` of everything :func:`note_read` recorded since the run started."""
    with _READS_LOCK:
        paths = sorted(_READS)
    return {p: fingerprint(p, cache_file) for p in paths}


def fingerprint(path, cache_file: Path | None = None) -> str:
    """A content hash of a file or a folder tree (every file under it, by relative path), or
    ``"missing"``. Each file's SHA-256 is cached by (resolved path, size, mtime) in
    ``cache_file`` (JSON), so an unchanged tree costs one ``stat`` per file."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        return "missing"
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not p.name.endswith(SKIPPED))
    cache = _FileHashes(cache_file)
    digest = hashlib.sha256()
    for file in files:
        rel = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{cache.sha256(file)}\n".encode())
    cache.save()
    return digest.hexdigest()[:16]


class _FileHashes:
    """File SHA-256s keyed by ``path|size|mtime_ns``, kept in a JSON file between processes."""

    def __init__(self, cache_file: Path | None):
        self.file = Path(cache_file) if cache_file else None
        self.known, self.dirty = {}, False
        if self.file is not None and self.file.is_file():
            try:
                self.known = json.loads(self.file.read_text())
            except ValueError:  # a torn cache is only a slower look
                self.known = {}

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in self.known:
            self.known[key], self.dirty = file_sha256(file), True
        return self.known[key]

    def save(self) -> None:
        if self.dirty and self.file is not None:
            with _CACHE_LOCK:
                write_json(self.file, self.known)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- results
def result_id(record: dict | None) -> str | None:
    """One digest of a completion record's artefacts (None for no record): what a child records
    of each parent, and compares later."""
    artefacts = (record or {}).get("artefacts")
    if not isinstance(artefacts, dict):
        return None
    text = json.dumps({k: v.get("sha256") for k, v in artefacts.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
