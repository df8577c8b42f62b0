"""The README, docs/*.md, the notebooks' markdown cells and the params files' comments: every
link resolves (files and `#anchors`), the README stays short, and the text describes the workbook
as it is (no issue numbers, no work notes, no history of the code)."""
import functools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAMS = sorted((ROOT / "params").rglob("*.yaml"))
README_MAX_LINES = 210

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']?([^\"'\s>]+)", re.IGNORECASE)
# In notebooks and params comments a file is named by its path from the repository root
# (docs/datasets.md, params/grids/paper.yaml), optionally with an anchor, or a page's section by
# its title in quotes (docs/performance.md, "Checkpoints").
MENTION = re.compile(r"(?<![\w/.$-])((?:docs|params|notebooks|ecgnb|tests)/[\w./-]*\w|README\.md)"
                     r"(#[\w-]+)?")
SECTION = re.compile(r"((?:docs/[\w-]+\.md)|README(?:\.md)?),? \"([^\"\n]+)\"")

ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)
WORK_NOTE = re.compile(r"\bbrief\b", re.IGNORECASE)
HISTORY = re.compile(
    r"\b(?:this (?:change|commit|patch|pull request)|previously|no longer|used to be"
    r"|(?:we|it|they) used to|before/after|old code|old and new|commits? (?:earlier|ago|before)"
    r"|earlier commit|(?:was|were|been|now) fixed|we (?:changed|fixed|removed|renamed|replaced)"
    r"|(?:is|are) now)\b", re.IGNORECASE)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def markdown_cells(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def yaml_comments(text: str) -> str:
    """The comments of a YAML file, one line each (a `#` at a line's start or after a blank)."""
    found = (re.search(r"(?:^|\s)#(.*)$", line) for line in text.splitlines())
    return "\n".join(m.group(1) for m in found if m)


def text_of(path: Path) -> str:
    """What a reader reads: a page, a notebook's markdown cells, a params file's comments."""
    if path.suffix == ".ipynb":
        return markdown_cells(path)
    if path.suffix == ".yaml":
        return yaml_comments(path.read_text())
    return path.read_text()


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text (links and code marks dropped),
    lowercased, punctuation but hyphens, underscores and spaces dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """A page's anchors: its headings' slugs (a repeated slug gets -1, -2, ...) and `<a id>`s."""
    found, seen = set(HTML_ANCHOR.findall(text)), {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


@functools.lru_cache(maxsize=None)
def anchors_of(file: Path) -> frozenset[str]:
    return frozenset(anchors(text_of(file)))


def link_targets(text: str) -> list[str]:
    """Relative link targets, anchors kept (`page.md#x`, `#x`)."""
    targets = LINK.findall(prose(text)) + REFERENCE.findall(prose(text))
    return [t for t in targets if not EXTERNAL.match(t)]


def relative_targets(text: str) -> list[str]:
    paths = [t.split("#", 1)[0] for t in link_targets(text)]
    return [p for p in paths if p]  # a pure #anchor leaves nothing to check


def broken(page: Path, base: Path, target: str) -> str | None:
    """Why ``target`` (a path relative to ``base``, or `#anchor` on ``page``) does not resolve."""
    path, _, anchor = target.partition("#")
    file = (base / path) if path else page
    if not file.exists():
        return f"{target}: no such file"
    if anchor and file.suffix in (".md", ".ipynb") and anchor not in anchors_of(file):
        return f"{target}: no heading or anchor '{anchor}' in {file.name}"
    return None


def problems(path: Path) -> list[str]:
    """Every link of ``path`` that does not resolve: markdown links relative to the file; in
    notebooks and params comments also the paths named from the repository root."""
    text = text_of(path)
    found = [broken(path, path.parent, t) for t in link_targets(text)]
    if path.suffix in (".ipynb", ".yaml"):
        found += [broken(path, ROOT, p + a) for p, a in MENTION.findall(text)]
        for page, title in SECTION.findall(text):
            target = ROOT / (page if page.endswith(".md") else "README.md")
            found.append(broken(path, ROOT, f"{target.relative_to(ROOT)}#{slug(title)}"))
    return [p for p in found if p]


def history(text: str) -> list[str]:
    return ISSUE_NUMBER.findall(text) + WORK_NOTE.findall(text) + HISTORY.findall(text)


def file_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


ALL = PAGES + NOTEBOOKS + PARAMS


@pytest.mark.parametrize("path", ALL, ids=file_id)
def test_links_resolve(path):
    found = problems(path)
    assert not found, f"{file_id(path)}: broken links: {found}"


@pytest.mark.parametrize("path", ALL, ids=file_id)
def test_no_issue_numbers_work_notes_or_history(path):
    found = history(text_of(path))
    assert not found, f"{file_id(path)}: describe the code as it is, not its history: {found}"


def test_readme_is_short():
    n_lines = len((ROOT / "README.md").read_text().splitlines())
    assert n_lines <= README_MAX_LINES, f"README.md has {n_lines} lines (at most {README_MAX_LINES})"


def test_link_parsing():
    text = ("[a](docs/a.md#x) ![b](b.png \"t\") [c](https://x.org) [d](#top) [e](mailto:a@b)\n"
            "`[f](no.md)`\n```\n[g](no.md)\n```\n[h]: ref.md\n")
    assert relative_targets(text) == ["docs/a.md", "b.png", "ref.md"]
    assert link_targets(text) == ["docs/a.md#x", "b.png", "#top", "ref.md"]
    assert yaml_comments("a: 1  # one\n# two\nb: '#x'\nc: ${X}\n") == " one\n two"


def test_slugs_follow_github():
    assert slug("Sweeps: `--jobs`, `--dry-run`, failures, resuming") == \
        "sweeps---jobs---dry-run-failures-resuming"
    assert slug("The study's recipe and ours, side by side") == \
        "the-studys-recipe-and-ours-side-by-side"
    assert slug("The embedded grid: `params/grids/embedded.yaml`") == \
        "the-embedded-grid-paramsgridsembeddedyaml"
    assert slug("How fast is a [step](x.md)? `feature_dtype`") == "how-fast-is-a-step-feature_dtype"
    text = "# A\n## Same\n```\n# not a heading\n```\n## Same\n<a id=\"kept\"></a>\n"
    assert anchors(text) == {"a", "same", "same-1", "kept"}


def test_a_broken_anchor_fails(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n## A section\n<a name=\"extra\"></a>\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n## Here\n[ok](other.md#a-section) [ok](other.md#extra) [ok](#here)\n"
                    "[bad](other.md#no-such-section) [bad](#nowhere) [bad](missing.md)\n")
    assert problems(page) == ["other.md#no-such-section: no heading or anchor 'no-such-section' "
                              "in other.md", "#nowhere: no heading or anchor 'nowhere' in page.md",
                              "missing.md: no such file"]


def test_notebook_and_params_links_are_checked(tmp_path):
    notebook = tmp_path / "n.ipynb"
    cells = [{"cell_type": "markdown", "source": ["See [the page](page.md#gone)."]},
             {"cell_type": "code", "source": ["[not](checked.md)"]}]
    notebook.write_text(json.dumps({"cells": cells}))
    (tmp_path / "page.md").write_text("# Page\n")
    params = tmp_path / "p.yaml"
    params.write_text("# as in docs/running.md#no-such-section and README \"No such section\"\n"
                      "a: 1  # docs/running.md#the-run-folder\n")
    assert problems(notebook) == ["page.md#gone: no heading or anchor 'gone' in page.md"]
    assert problems(params) == [
        "docs/running.md#no-such-section: no heading or anchor 'no-such-section' in running.md",
        "README.md#no-such-section: no heading or anchor 'no-such-section' in README.md"]


def test_history_wording_is_caught():
    for sentence in ("This change makes the loss faster.", "The cache previously held floats.",
                     "The old code read every batch.", "Two commits earlier it took 10 min.",
                     "The bug was fixed in March.", "The bound is now 1e-3.",
                     "It no longer writes a file.", "Fixed in issue 14.", "See the brief."):
        assert history(sentence), sentence
    for sentence in ("The held-out subject is used to select the epoch.", "briefly continued",
                     "a defect fixed by the recipe", "an issue with 2 seeds",
                     "restores the previous setting afterwards", "the loss before and after"):
        assert not history(sentence), sentence
