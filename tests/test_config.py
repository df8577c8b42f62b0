"""ecgnb.config, the lowest layer, loads no torch: its functions that use torch import it, so the
command line, the runner, notebook 01 (which trains nothing) and notebook 06 (which reads a table)
go without: a kernel that imports torch spends seconds on it."""
import ast
import json
import subprocess
import sys

from ecgnb.runs import NOTEBOOKS, PROJECT_ROOT

# Imported in this order by a fresh interpreter: the lowest layer first, then what the command
# line, the runner and the grid load before any run starts.
FIRST_IMPORTS = ("ecgnb.config", "ecgnb.runs", "ecgnb.cli", "ecgnb.workflow.runner",
                 "ecgnb.workflow.grid", "ecgnb.workflow.sweep")
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


# notebook 06's work, as its cells do it, on the synthetic table, in a fresh interpreter
RESULTS_RUN = """
import sys, tempfile
import ecgnb.report.build, ecgnb.report.tables, ecgnb.results, ecgnb.runs
cfg = ecgnb.results.ResultsConfig(n_boot=50)
out = ecgnb.runs.start_stage(cfg, "results", tempfile.mkdtemp(dir=sys.argv[1]))
results, _ = ecgnb.results.load_results(cfg.results_csv, out, cfg.seed)
reports = ecgnb.report.build.recipe_reports(results, cfg.metric, None, cfg.n_boot, cfg.seed)
ecgnb.report.build.write_report(results, out, cfg.metric, None, cfg.n_boot, cfg.seed,
                                encoder_tables=ecgnb.report.tables.encoder_tables(""))
ecgnb.runs.finish_stage(out, {})
print("torch" in sys.modules)
"""


def test_a_results_run_from_start_to_finish_loads_no_torch(tmp_path):
    assert "ecgnb.report.build" in notebook_imports("results")
    done = subprocess.run([sys.executable, "-c", RESULTS_RUN, str(tmp_path)], capture_output=True,
                          text=True, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False"
