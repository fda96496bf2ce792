"""Articles as visitors see them: by slug, translations, related, categories, popular."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kb.errors import IndexNotReady, InvalidInput, NotFound
from kb.faqs.entries import entries_by_ids
from kb.indexing import IndexManager
from kb.models import (
    EntryStatus,
    FaqEntry,
    FaqRevision,
    PageView,
)

MAX_MERGE_HOPS = 5
# -- articles ----------------------------------------------------------------------------


def get_article_or_raise(session: Session, slug: str) -> FaqEntry:
    """The published entry at `slug`, following merges; NotFound for anything else.

    A merged entry resolves to the entry it was merged into, so links agents already sent
    keep working (the caller redirects when the slug differs).
    """
    entry = session.scalar(select(FaqEntry).where(FaqEntry.slug == slug))
    hops = 0
    while entry is not None and entry.status == EntryStatus.merged and entry.merged_into_id:
        hops += 1
        if hops > MAX_MERGE_HOPS:
            entry = None
            break
        entry = session.get(FaqEntry, entry.merged_into_id)
    if entry is None or entry.status != EntryStatus.published or entry.current_revision is None:
        raise NotFound(f"there is no article at /faq/{slug}")
    return entry


def get_revision_of(session: Session, entry: FaqEntry, revision_id: int | None) -> FaqRevision:
    """The entry's revision `revision_id` (the current one when None); InvalidInput if foreign."""
    if revision_id is None:
        if entry.current_revision is None:
            raise NotFound(f"FAQ {entry.id} has no published text")
        return entry.current_revision
    revision = session.get(FaqRevision, revision_id)
    if revision is None or revision.entry_id != entry.id:
        raise InvalidInput(f"revision {revision_id} is not a revision of this article")
    return revision


def translation_of(session: Session, entry: FaqEntry) -> FaqEntry | None:
    """The published entry in the other language of the same translation group."""
    others = translations_of(session, entry)
    return next((e for lang, e in others.items() if lang != entry.language), None)


def translations_of(session: Session, entry: FaqEntry) -> dict[str, FaqEntry]:
    """Language → the published entry of the same translation group (the entry excluded)."""
    if not entry.translation_group:
        return {}
    rows = session.scalars(
        select(FaqEntry)
        .where(
            FaqEntry.translation_group == entry.translation_group,
            FaqEntry.id != entry.id,
            FaqEntry.status == EntryStatus.published,
        )
        .order_by(FaqEntry.id)
    )
    out: dict[str, FaqEntry] = {}
    for other in rows:
        out.setdefault(other.language, other)
    return out


def _published(entries: Mapping[int, FaqEntry], ids: Sequence[int]) -> list[FaqEntry]:
    return [
        entries[i]
        for i in ids
        if i in entries
        and entries[i].status == EntryStatus.published
        and entries[i].current_revision is not None
    ]


def related_ids(index: IndexManager, entry: FaqEntry, *, limit: int) -> list[int]:
    """Ids of the nearest articles in the entry's language by the search index (itself excluded).

    Empty when the index is not ready: related articles are a nicety, never a failure.
    """
    if entry.current_revision is None:
        return []
    try:
        result = index.search(entry.current_revision.question, k=limit + 4, language=entry.language)
    except IndexNotReady:
        return []
    return [h.entry_id for h in result.hits if h.entry_id != entry.id]


def related_entries(
    session: Session, entry: FaqEntry, nearest_ids: Sequence[int], *, limit: int = 5
) -> list[FaqEntry]:
    """Related published articles: nearest by the index first, then the same category."""
    found = _published(entries_by_ids(session, list(nearest_ids)), list(nearest_ids))
    chosen = [e for e in found if e.id != entry.id and e.language == entry.language][:limit]
    if len(chosen) < limit:
        taken = {entry.id, *(e.id for e in chosen)}
        same_category = session.scalars(
            select(FaqEntry)
            .where(
                FaqEntry.category == entry.category,
                FaqEntry.language == entry.language,
                FaqEntry.status == EntryStatus.published,
                FaqEntry.id.not_in(taken),
            )
            .order_by(FaqEntry.id)
            .limit(limit - len(chosen))
        )
        chosen.extend(e for e in same_category if e.current_revision is not None)
    return chosen


@dataclass
class CategorySummary:
    """A category as the site lists it."""

    key: str
    name: str
    count: int
    entries: list[FaqEntry]


def category_name(names: Mapping[str, Mapping[str, object]], key: str, language: str) -> str:
    """The display name of a category in `language` (its key when unnamed)."""
    value = names.get(key, {}).get(language)
    return str(value) if value else key


def _category_order(names: Mapping[str, Mapping[str, object]], key: str) -> tuple[int, str]:
    order = names.get(key, {}).get("order", 999)
    return (order if isinstance(order, int) else 999, key)


def list_categories(
    session: Session,
    *,
    language: str,
    names: Mapping[str, Mapping[str, object]],
    per_category: int = 5,
) -> list[CategorySummary]:
    """Categories with published articles in `language`, in the configured order."""
    entries = session.scalars(
        select(FaqEntry)
        .where(FaqEntry.language == language, FaqEntry.status == EntryStatus.published)
        .order_by(FaqEntry.id)
    )
    grouped: dict[str, list[FaqEntry]] = {}
    for e in entries:
        if e.current_revision is not None:
            grouped.setdefault(e.category, []).append(e)
    return [
        CategorySummary(
            key=key,
            name=category_name(names, key, language),
            count=len(grouped[key]),
            entries=grouped[key][:per_category],
        )
        for key in sorted(grouped, key=lambda k: _category_order(names, k))
    ]


def category_entries(session: Session, *, category: str, language: str) -> list[FaqEntry]:
    """Published articles of one category in one language."""
    rows = session.scalars(
        select(FaqEntry)
        .where(
            FaqEntry.category == category,
            FaqEntry.language == language,
            FaqEntry.status == EntryStatus.published,
        )
        .order_by(FaqEntry.id)
    )
    return [e for e in rows if e.current_revision is not None]


def get_category_or_raise(
    session: Session, names: Mapping[str, Mapping[str, object]], category: str
) -> str:
    """The category key if it is configured or has a published article; NotFound otherwise."""
    if category in names:
        return category
    found = session.scalar(
        select(FaqEntry.id)
        .where(FaqEntry.category == category, FaqEntry.status == EntryStatus.published)
        .limit(1)
    )
    if found is None:
        raise NotFound(f"there is no category {category!r}")
    return category


def popular_entries(
    session: Session, *, language: str, since: date, limit: int = 5
) -> list[FaqEntry]:
    """The most viewed published articles in `language` since a day (any revision, source)."""
    total = func.sum(PageView.count)
    rows = session.execute(
        select(PageView.entry_id, total)
        .join(FaqEntry, FaqEntry.id == PageView.entry_id)
        .where(
            PageView.day >= since,
            FaqEntry.language == language,
            FaqEntry.status == EntryStatus.published,
        )
        .group_by(PageView.entry_id)
        .order_by(total.desc(), PageView.entry_id)
        .limit(limit)
    ).all()
    ids = [entry_id for entry_id, _ in rows]
    return _published(entries_by_ids(session, ids), ids)
