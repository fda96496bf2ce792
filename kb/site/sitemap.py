"""What the site tells search engines: every published article with its translations and
last change, and the languages a category page has articles in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.models import EntryStatus, FaqEntry

# The language an x-default alternate points to: the one a visitor without a preference gets.
DEFAULT_LANGUAGE = "ja"


@dataclass(frozen=True)
class SitemapArticle:
    """A published article: its slug, language, last change and its translations' slugs."""

    slug: str
    language: str
    category: str
    updated_at: datetime
    # Language -> slug of every published article of the translation group, itself included;
    # empty when the article has no published translation.
    alternates: dict[str, str]


def _aware(moment: datetime) -> datetime:
    """A stored time as aware UTC (SQLite gives naive UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def x_default(alternates: dict[str, str]) -> str | None:
    """The slug for visitors whose language has no version: the default language's, else
    the first language's in code order."""
    if not alternates:
        return None
    return alternates.get(DEFAULT_LANGUAGE) or alternates[min(alternates)]


def article_alternates(session: Session, entry: FaqEntry) -> dict[str, str]:
    """Language -> slug of the published versions of an article (itself included); empty
    when it has no published translation."""
    if not entry.translation_group:
        return {}
    rows = session.execute(
        select(FaqEntry.language, FaqEntry.slug)
        .where(
            FaqEntry.translation_group == entry.translation_group,
            FaqEntry.status == EntryStatus.published,
            FaqEntry.current_revision_id.is_not(None),
            FaqEntry.id != entry.id,
        )
        .order_by(FaqEntry.id)
    ).all()
    found: dict[str, str] = {}
    for language, slug in rows:
        found.setdefault(language, slug)
    found.pop(entry.language, None)  # one version per language: the article itself
    return {entry.language: entry.slug, **found} if found else {}


def published_articles(session: Session) -> list[SitemapArticle]:
    """Every published article (not drafts, archived or merged ones), in id order."""
    entries = [
        e
        for e in session.scalars(
            select(FaqEntry).where(FaqEntry.status == EntryStatus.published).order_by(FaqEntry.id)
        )
        if e.current_revision is not None
    ]
    groups: dict[str, dict[str, str]] = {}
    for e in entries:
        if e.translation_group:
            groups.setdefault(e.translation_group, {}).setdefault(e.language, e.slug)
    out = []
    for e in entries:
        assert e.current_revision is not None
        group = dict(groups.get(e.translation_group or "", {}))
        group[e.language] = e.slug  # a second article in one language links to itself
        out.append(
            SitemapArticle(
                slug=e.slug,
                language=e.language,
                category=e.category,
                updated_at=_aware(e.current_revision.created_at),
                alternates=group if len(group) > 1 else {},
            )
        )
    return out


def category_languages(session: Session, category: str) -> list[str]:
    """The languages with a published article in a category, in code order."""
    rows = session.scalars(
        select(FaqEntry.language)
        .where(FaqEntry.category == category, FaqEntry.status == EntryStatus.published)
        .distinct()
    )
    return sorted(rows)
