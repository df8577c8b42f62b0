"""The package's architecture: no import circles, and no import that runs back up a layer."""
import ast
import pathlib

import ecgnb

PACKAGE = pathlib.Path(ecgnb.__file__).parent
# Lowest first. A module may import modules of its own layer or of lower ones only.
LAYERS = (
    ("ecgnb.files", "ecgnb.provenance", "ecgnb.config", "ecgnb.recipes", "ecgnb.runs"),
    ("ecgnb.data",),
    ("ecgnb.models",),
    ("ecgnb.evaluation",),
    ("ecgnb.plots", "ecgnb.report", "ecgnb.workflow"),
    ("ecgnb.exploration", "ecgnb.pretraining", "ecgnb.regularization", "ecgnb.finetuning",
     "ecgnb.embeddings", "ecgnb.results", "ecgnb.maps", "ecgnb.map_explorer"),
    ("ecgnb.cli", "ecgnb.bench"),
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: place it")


def imports(with_packages: bool = False) -> dict[str, set[str]]:
    """Module -> the modules it imports; a package's ``__init__`` (which re-exports) counts only
    ``with_packages`` (for layers, not for circles)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = {m for m, p in paths.items() if with_packages or p.name != "__init__.py"}
    edges = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths
                          else node.module for a in node.names}
        edges[name] = {m for m in found if m in modules and m not in (name, "ecgnb")}
    return edges


def test_every_import_points_down_or_sideways():
    upward = [(a, b) for a, targets in imports(with_packages=True).items() for b in targets
              if layer_of(b) > layer_of(a)]
    assert not upward, f"imports that run back up a layer: {upward}"


def test_no_import_circles():
    edges = imports()

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = sorted({tuple(sorted((a, b))) for a in edges for b in reach(a)
                      if a != b and a in reach(b) and not b.startswith(a + ".")
                      and not a.startswith(b + ".")})
    assert not circles, f"import circles: {circles}"
