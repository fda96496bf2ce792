"""Documentation stays true: settings, links and code paths in README.md and docs/ exist.

The README is the front door; the long sections live in docs/. Every `FAQLOOP_*` setting has
a row in a settings table under docs/, every relative link points to a file (and heading)
that exists, every code path quoted in backticks exists, and code that points a reader at
a docs page points at one that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.settings import Settings
from tests.support.paths import ROOT

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# Top-level folders whose files the docs name in backticks.
CODE_ROOTS = ("kb", "api", "indexer", "tests", "benchmarks", "faq_content", "docs")
CODE_PATH = re.compile(rf"^(?:{'|'.join(CODE_ROOTS)})/[\w./-]*(?:::\w+)?$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose(page: Path) -> str:
    """The page without its fenced code blocks (examples, not claims about the tree)."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, - for spaces."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(prose(page)):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def link_holds(dest: Path, anchor: str) -> bool:
    """The link's file exists and, for a Markdown page, so does the heading it names."""
    if not dest.exists():
        return False
    return not anchor or dest.suffix != ".md" or anchor in anchors(dest)


def path_holds(dest: Path, name: str) -> bool:
    """The file exists and, for `path::name`, defines that function."""
    if not dest.exists():
        return False
    text = dest.read_text(encoding="utf-8") if name else ""
    return not name or re.search(rf"^\s*(?:async\s+)?def {name}\b", text, re.M) is not None


def test_docs_exist_and_readme_stays_short() -> None:
    assert (DOCS / "README.md").is_file()
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 200, f"README.md has {lines} lines: move the detail to docs/"


def test_every_setting_is_documented() -> None:
    rows = "\n".join(
        line for page in DOCS.glob("*.md") for line in prose(page).splitlines() if line[:1] == "|"
    )
    missing = [
        name for name in Settings.model_fields if f"| `FAQLOOP_{name.upper()}` |" not in rows
    ]
    assert missing == []


def test_every_setting_has_help_text() -> None:
    assert all(field.description for field in Settings.model_fields.values())


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_point_to_existing_files(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not link_holds(dest, anchor):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_code_paths_in_backticks_exist(page: Path) -> None:
    missing = []
    for span in SPAN.findall(prose(page)):
        if not CODE_PATH.match(span):
            continue
        path, _, name = span.partition("::")
        if not path_holds(ROOT / path, name):
            missing.append(span)
    assert missing == []


def test_code_points_at_docs_that_exist() -> None:
    missing = []
    for package in ("kb", "api", "indexer", "benchmarks"):
        for source in sorted((ROOT / package).rglob("*.py")):
            for ref in re.findall(r"\bdocs/[\w-]+\.md", source.read_text(encoding="utf-8")):
                if not (ROOT / ref).is_file():
                    missing.append(f"{rel(source)}: {ref}")
    assert missing == []
