"""The README and docs/*.md: every relative link resolves, the README stays short, and the text
describes the workbook as it is (no issue numbers, no work notes)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 210

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
ISSUE_NUMBER = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)
WORK_NOTE = re.compile(r"\bbrief\b", re.IGNORECASE)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def relative_targets(text: str) -> list[str]:
    targets = LINK.findall(prose(text)) + REFERENCE.findall(prose(text))
    paths = [t.split("#", 1)[0] for t in targets if not EXTERNAL.match(t)]
    return [p for p in paths if p]  # a pure #anchor leaves nothing to check


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page):
    missing = [t for t in relative_targets(page.read_text()) if not (page.parent / t).exists()]
    assert not missing, f"{page_id(page)}: links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_issue_numbers_or_work_notes(page):
    text = page.read_text()
    found = ISSUE_NUMBER.findall(text) + WORK_NOTE.findall(text)
    assert not found, f"{page_id(page)}: describe the code as it is, not its history: {found}"


def test_readme_is_short():
    n_lines = len((ROOT / "README.md").read_text().splitlines())
    assert n_lines <= README_MAX_LINES, f"README.md has {n_lines} lines (at most {README_MAX_LINES})"


def test_link_parsing():
    text = ("[a](docs/a.md#x) ![b](b.png \"t\") [c](https://x.org) [d](#top) [e](mailto:a@b)\n"
            "`[f](no.md)`\n```\n[g](no.md)\n```\n[h]: ref.md\n")
    assert relative_targets(text) == ["docs/a.md", "b.png", "ref.md"]
    assert ISSUE_NUMBER.search("fixed in Issue 14") and not ISSUE_NUMBER.search("an issue with 2 seeds")
    assert WORK_NOTE.search("see the brief") and not WORK_NOTE.search("briefly continued")
