"""The committed notebooks are clean: no outputs, no execution counts (`make strip` cleans them)."""
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def committed_text(path: Path) -> str:
    """The notebook as staged in git (the work tree's copy outside a git checkout)."""
    relative = path.relative_to(ROOT).as_posix()
    try:
        out = subprocess.run(["git", "show", f":{relative}"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return path.read_text(encoding="utf-8")
    return out.stdout if out.returncode == 0 else path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebooks_have_no_outputs(path):
    cells = json.loads(committed_text(path))["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; run "
                       "`make strip` (and `make install` once: its git filter strips them)")


def test_notebooks_are_filtered_on_commit():
    assert "*.ipynb filter=nbstripout" in (ROOT / ".gitattributes").read_text()
