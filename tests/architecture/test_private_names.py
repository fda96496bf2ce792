"""No feature reaches into another feature's private names.

import-linter checks modules; this checks names. A feature is a package one level below
`kb`, `api` or `indexer` (e.g. `kb.site`), or a top-level module there (e.g. `kb.indexing`).
A name starting with one underscore is private to its feature.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGES = ("kb", "api", "indexer")


def feature_of(module: str) -> str:
    """`kb.site.votes` -> `kb.site`; `kb.indexing` -> `kb.indexing`."""
    return ".".join(module.split(".")[:2])


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches(module: str, source: str) -> list[str]:
    """Uses of another feature's private names in `source` (the text of `module`)."""
    tree = ast.parse(source)
    own = feature_of(module)
    aliases: dict[str, str] = {}  # local name -> module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if is_private(alias.name) and feature_of(node.module) != own:
                    found.append(f"{module}:{node.lineno} imports {target}")
                aliases[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and is_private(node.attr)
        ):
            target = aliases[node.value.id]
            if feature_of(target) != own:
                found.append(f"{module}:{node.lineno} uses {target}.{node.attr}")
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out.append((name.removesuffix(".__init__"), path))
    return out


def test_no_feature_uses_another_features_private_names() -> None:
    found = [
        hit
        for name, path in modules()
        for hit in private_reaches(name, path.read_text(encoding="utf-8"))
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("kb.site.votes", "from kb.site.views import _upsert\n", 0),
        ("kb.health.flags", "from kb.site.views import _upsert\n", 1),
        ("api.cli.main", "from api.commands import _redact\n", 1),
        ("kb.health.flags", "from kb.site import views\nviews._upsert(1)\n", 1),
        ("kb.site.votes", "from kb.site import views\nviews._upsert(1)\n", 0),
        ("kb.health.flags", "from kb.site.views import record_view, __all__\n", 0),
        ("api.app", "import kb.site.views as v\nv._claim(1)\n", 1),
    ],
)
def test_the_check_finds_reaches(module: str, source: str, expected: int) -> None:
    assert len(private_reaches(module, source)) == expected
