"""FAQ articles as Markdown files with YAML front matter (the `faq_content/` format)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kb.errors import ContentError, Unprocessable
from kb.text.language import CONTENT_LANGUAGES

# The whole string (\A...\Z: `$` would also accept a trailing newline).
SLUG_RE = re.compile(r"\A[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_REQUIRED = ("id", "slug", "category", "language")


@dataclass(frozen=True)
class Article:
    """One article as written in a content file."""

    key: str
    slug: str
    category: str
    language: str
    question: str
    answer: str
    questions: tuple[str, ...] = ()
    translation_group: str | None = None
    needs_account: bool = False  # answering it needs the customer's account (DM hand-off)
    path: Path | None = field(default=None, compare=False)


def parse_article(text: str, *, source: str = "<text>") -> Article:
    """Parse one Markdown document with front matter; ContentError names `source`."""
    match = re.match(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", text, re.S)
    if not match:
        raise ContentError(f"{source}: no front matter (the file must start with a --- block)")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise ContentError(f"{source}: malformed front matter: {exc}") from exc
    if not isinstance(meta, dict):
        raise ContentError(f"{source}: front matter must be a mapping of fields")
    missing = [k for k in _REQUIRED if not meta.get(k)]
    if missing:
        raise ContentError(f"{source}: front matter lacks {', '.join(missing)}")
    body = match.group(2).strip()
    heading = re.match(r"\A#[ \t]+(.+?)[ \t]*#*[ \t]*(?:\r?\n|\Z)(.*)\Z", body, re.S)
    question = str(meta.get("question") or "").strip()
    if heading:
        question = question or heading.group(1).strip()
        body = heading.group(2).strip()
    if not question:
        raise ContentError(f"{source}: no question (a '# ' heading or a 'question' field)")
    if not body:
        raise ContentError(f"{source}: the answer (the text after the heading) is empty")
    return _validated(meta, question, body, source)


def _validated(meta: dict[str, Any], question: str, answer: str, source: str) -> Article:
    slug, language = str(meta["slug"]), str(meta["language"])
    if not SLUG_RE.match(slug):
        raise ContentError(f"{source}: slug {slug!r} must be lowercase letters, digits, hyphens")
    if language not in CONTENT_LANGUAGES:
        raise ContentError(f"{source}: language {language!r} is not one of {CONTENT_LANGUAGES}")
    questions = meta.get("questions") or []
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise ContentError(f"{source}: questions must be a list of strings")
    group = meta.get("translation_group")
    needs_account = meta.get("needs_account", False)
    if not isinstance(needs_account, bool):
        raise ContentError(f"{source}: needs_account must be true or false")
    return Article(
        key=str(meta["id"]),
        slug=slug,
        category=str(meta["category"]),
        language=language,
        question=question,
        answer=answer,
        questions=tuple(q.strip() for q in questions if q.strip()),
        translation_group=str(group) if group else None,
        needs_account=needs_account,
    )


def read_content_dir(directory: Path) -> list[Article]:
    """Read every `*.md` article under `directory` (README.md excluded), checked as a set."""
    if not directory.is_dir():
        raise ContentError(f"{directory}: content directory not found")
    articles: list[Article] = []
    for path in sorted(directory.rglob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ContentError(f"{path}: not UTF-8 text") from exc
        art = parse_article(text, source=str(path))
        articles.append(
            Article(**{**art.__dict__, "path": path})  # keep the path for error messages
        )
    _check_unique(articles)
    return articles


def _check_unique(articles: list[Article]) -> None:
    for attr in ("key", "slug"):
        seen: dict[str, Path | None] = {}
        for art in articles:
            value = getattr(art, attr)
            if value in seen:
                raise ContentError(f"{art.path}: {attr} {value!r} also used by {seen[value]}")
            seen[value] = art.path


def render_article(article: Article) -> str:
    """The content-file text of an article (inverse of `parse_article`)."""
    meta: dict[str, Any] = {
        "id": article.key,
        "slug": article.slug,
        "category": article.category,
        "language": article.language,
    }
    if article.translation_group:
        meta["translation_group"] = article.translation_group
    if article.needs_account:
        meta["needs_account"] = True
    if article.questions:
        meta["questions"] = list(article.questions)
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip()
    return f"---\n{front}\n---\n# {article.question}\n\n{article.answer.strip()}\n"


def load_categories(directory: Path) -> dict[str, dict[str, Any]]:
    """Category display names from `categories.yaml` (empty when the file is absent)."""
    path = directory / "categories.yaml"
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ContentError(f"{path}: malformed YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ContentError(f"{path}: must map category keys to names")
    return {str(k): dict(v or {}) for k, v in data.items()}


def check_category(category: str | None, directory: Path) -> None:
    """Unprocessable (422) unless `category` is a key of `categories.yaml` in `directory`.

    Categories are managed data: `categories.yaml` of the content directory is their one
    source (names, order), so an article or draft may only use a category listed there.
    None (not given) and a content directory without the file pass unchecked.
    """
    if category is None:
        return
    known = load_categories(directory)
    if known and category.strip() not in known:
        raise Unprocessable(
            f"unknown category {category.strip()!r}: use one of {', '.join(sorted(known))} "
            "(or add it to the content folder's categories.yaml)",
            detail={"category": category.strip(), "known": sorted(known)},
        )
