"""ecgnb.config, the lowest layer, loads no torch: its functions that use torch import it, so the
command line, the runner and the imports of notebook 01 (which trains nothing) go without."""
import ast
import json
import subprocess
import sys

from ecgnb.runs import NOTEBOOKS, PROJECT_ROOT

# Imported in this order by a fresh interpreter: the lowest layer first, then what the command
# line, the runner and the grid load before any run starts.
FIRST_IMPORTS = ("ecgnb.config", "ecgnb.runs", "ecgnb.cli", "ecgnb.workflow.runner",
                 "ecgnb.workflow.grid")
PROBE = """
import importlib, json, sys
loaded = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    loaded[name] = "torch" in sys.modules
print(json.dumps(loaded))
"""


def notebook_imports(stage: str) -> list[str]:
    """The modules a stage's notebook imports, in the order of its cells."""
    cells = json.loads((PROJECT_ROOT / NOTEBOOKS[stage]).read_text())["cells"]
    names = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
    return names


def test_config_the_runner_and_the_exploration_notebook_import_no_torch():
    names = [*FIRST_IMPORTS, *notebook_imports("exploration")]
    assert "ecgnb.exploration" in names
    done = subprocess.run([sys.executable, "-c", PROBE, *names], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert list(loaded) == list(dict.fromkeys(names))
    assert not any(loaded.values()), \
        f"torch loaded by importing {next(n for n, t in loaded.items() if t)}"
