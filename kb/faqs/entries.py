"""FAQ entries: create, revise, list, load from content files. Callers commit."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from kb.db import lock_rows
from kb.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from kb.faqs.content import SLUG_RE, Article
from kb.models import (
    EntryChange,
    EntryStatus,
    FaqEntry,
    FaqRevision,
    PhrasingSource,
    PhrasingStatus,
    QuestionPhrasing,
)
from kb.notify import outbox
from kb.text.language import CONTENT_LANGUAGES, dedup_key, normalize_text

# The entry table, for row locks (typed as a table for `kb.db.lock_rows`).
ENTRY_TABLE = cast(Table, FaqEntry.__table__)
MAX_QUESTION = 500
MAX_ANSWER = 50_000
MAX_PHRASINGS = 100
MAX_SLUG = 200
# Attempts at a generated slug when concurrent creates pick the same one (see create_and_commit).
SLUG_ATTEMPTS = 8


@dataclass
class LoadSummary:
    """What `load_articles` did."""

    created: int = 0
    revised: int = 0
    unchanged: int = 0
    phrasings_added: int = 0
    phrasings_removed: int = 0


def record_change(session: Session, entry_id: int) -> None:
    """Append to the change feed that index processes follow."""
    session.add(EntryChange(entry_id=entry_id))


def get_entry_or_raise(session: Session, entry_id: int) -> FaqEntry:
    """The entry with its phrasings, or NotFound."""
    entry = session.scalar(
        select(FaqEntry)
        .where(FaqEntry.id == entry_id)
        .options(selectinload(FaqEntry.phrasings))
        .execution_options(populate_existing=True)  # phrasings may have changed this session
    )
    if entry is None:
        raise NotFound(f"FAQ {entry_id} not found")
    return entry


def version_of(entry: FaqEntry) -> int:
    """The entry's version: its current revision number (0 before the first revision)."""
    return entry.current_revision.number if entry.current_revision else 0


def check_version(entry: FaqEntry, expected: int | None) -> None:
    """PreconditionFailed unless `expected` (when given) is the entry's current version."""
    if expected is not None and expected != version_of(entry):
        raise PreconditionFailed(
            f"FAQ {entry.id} is at version {version_of(entry)}, not {expected}: "
            "it was changed since you read it; reload it and apply your change again"
        )


def lock_entry(session: Session, entry_id: int, *, expected_version: int | None = None) -> FaqEntry:
    """The entry, locked until the session's transaction ends (see `kb.db.lock_rows`), read
    after the lock; PreconditionFailed when `expected_version` is stale, NotFound if absent.
    """
    lock_rows(session, ENTRY_TABLE, [entry_id])
    entry = get_entry_or_raise(session, entry_id)
    check_version(entry, expected_version)
    return entry


def normalize_slug(slug: str) -> str:
    """The slug in canonical form (NFKC, trimmed, lowercase); InvalidInput unless the whole
    of it is lowercase ASCII letters and digits in hyphen-separated words."""
    canonical = unicodedata.normalize("NFKC", slug).strip().lower()
    if not SLUG_RE.match(canonical) or len(canonical) > MAX_SLUG:
        raise InvalidInput(
            f"slug must be at most {MAX_SLUG} lowercase letters and digits, in words "
            "separated by single hyphens (e.g. 'reset-password')"
        )
    return canonical


def get_entry_by_slug(session: Session, slug: str) -> FaqEntry | None:
    """The entry with this slug, if any."""
    return session.scalar(
        select(FaqEntry)
        .where(FaqEntry.slug == slug)
        .options(selectinload(FaqEntry.phrasings))
        .execution_options(populate_existing=True)
    )


def list_revisions(session: Session, entry_id: int) -> list[FaqRevision]:
    """An entry's revisions, oldest first."""
    return list(
        session.scalars(
            select(FaqRevision).where(FaqRevision.entry_id == entry_id).order_by(FaqRevision.number)
        )
    )


def list_entries(
    session: Session,
    *,
    language: str | None = None,
    category: str | None = None,
    status: EntryStatus | None = EntryStatus.published,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[FaqEntry], int]:
    """A page of entries and the total count matching the filters."""
    query = select(FaqEntry)
    if language:
        query = query.where(FaqEntry.language == language)
    if category:
        query = query.where(FaqEntry.category == category)
    if status:
        query = query.where(FaqEntry.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(selectinload(FaqEntry.phrasings))
        .order_by(FaqEntry.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


class ArticleHead(NamedTuple):
    """What suggest and its reply draft read of a published article."""

    id: int
    slug: str
    language: str
    category: str
    question: str
    answer: str
    needs_account: bool


# Built once: SQLAlchemy caches a statement's compiled form by its structure, and building
# and keying the statement on every request cost more than running it (docs/scale.md).
_PUBLISHED_HEADS = (
    select(
        FaqEntry.id,
        FaqEntry.slug,
        FaqEntry.language,
        FaqEntry.category,
        FaqRevision.question,
        FaqRevision.answer,
        FaqEntry.needs_account,
    )
    .join(FaqRevision, FaqRevision.id == FaqEntry.current_revision_id)
    .where(FaqEntry.id.in_(bindparam("ids", expanding=True)))
    .where(FaqEntry.status == EntryStatus.published)
)


def published_heads(session: Session, ids: Sequence[int]) -> dict[int, ArticleHead]:
    """The published articles among `ids` (with a current revision), keyed by id."""
    if not ids:
        return {}
    rows = session.execute(_PUBLISHED_HEADS, {"ids": list(ids)})
    return {row.id: ArticleHead(*row) for row in rows}


def entries_by_ids(session: Session, ids: Sequence[int]) -> dict[int, FaqEntry]:
    """Entries keyed by id (missing ids are absent)."""
    if not ids:
        return {}
    rows = session.scalars(select(FaqEntry).where(FaqEntry.id.in_(list(ids))))
    return {e.id: e for e in rows}


def _check_text(question: str, answer: str, category: str, language: str) -> tuple[str, str]:
    question, answer = question.strip(), answer.strip()
    if not question:
        raise InvalidInput("question must not be empty")
    if not answer:
        raise InvalidInput("answer must not be empty")
    if len(question) > MAX_QUESTION:
        raise InvalidInput(f"question is longer than {MAX_QUESTION} characters")
    if len(answer) > MAX_ANSWER:
        raise InvalidInput(f"answer is longer than {MAX_ANSWER} characters")
    if not category.strip():
        raise InvalidInput("category must not be empty")
    if language not in CONTENT_LANGUAGES:
        raise InvalidInput(f"lang must be one of {', '.join(CONTENT_LANGUAGES)}")
    return question, answer


def slugify(text: str) -> str:
    """An ASCII slug from a title; empty when the title has no Latin letters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    return "-".join(words)[:80].strip("-")


def _unique_slug(session: Session, base: str, *, attempt: int = 0) -> str:
    slug, n = base, 2
    if attempt >= 2:
        # Concurrent creates keep picking the same next free number: add a random word.
        base = slug = f"{base[:70]}-{uuid.uuid4().hex[:6]}"
    while session.scalar(select(FaqEntry.id).where(FaqEntry.slug == slug)) is not None:
        slug = f"{base}-{n}"
        n += 1
    return slug


def create_and_commit(
    session: Session, commit: Callable[[], Any], **fields: Any
) -> tuple[FaqEntry, Any]:
    """`create_entry(session, **fields)`, then `commit()`; returns the entry and what
    `commit` returned.

    When a concurrent create took the same slug first: an explicit slug is Conflict; a
    generated one is chosen again (a numbered, then a random suffix) and the create retried,
    so concurrent creates with one title all succeed.
    """
    for attempt in range(SLUG_ATTEMPTS):
        try:
            entry = create_entry(session, _attempt=attempt, **fields)
            return entry, commit()
        except IntegrityError as exc:
            session.rollback()
            if fields.get("slug") is not None:
                raise Conflict(
                    f"slug {normalize_slug(fields['slug'])!r} is already used "
                    "(a concurrent request took it)"
                ) from exc
    raise Conflict("could not find a free slug for this title; give one explicitly")


def create_entry(
    session: Session,
    *,
    question: str,
    answer: str,
    category: str,
    language: str,
    phrasings: Sequence[str] = (),
    slug: str | None = None,
    translation_group: str | None = None,
    content_key: str | None = None,
    author: str = "",
    reason: str = "created",
    phrasing_source: PhrasingSource = PhrasingSource.editor,
    needs_account: bool = False,
    _attempt: int = 0,
) -> FaqEntry:
    """Create a published entry with its first revision and phrasings.

    An explicit slug is normalised (`normalize_slug`) and must be free (Conflict); without
    one, a free slug is made from the question. Concurrent creates may still collide at
    commit: `create_and_commit` handles that.
    """
    question, answer = _check_text(question, answer, category, language)
    if slug is not None:
        slug = normalize_slug(slug)
        if session.scalar(select(FaqEntry.id).where(FaqEntry.slug == slug)) is not None:
            raise Conflict(f"slug {slug!r} is already used")
    else:
        base = slugify(question) or f"{language}-{uuid.uuid4().hex[:8]}"
        slug = _unique_slug(session, base, attempt=_attempt)
    entry = FaqEntry(
        slug=slug,
        category=category.strip(),
        language=language,
        status=EntryStatus.published,
        translation_group=translation_group,
        content_key=content_key,
        needs_account=needs_account,
    )
    session.add(entry)
    session.flush()
    _add_revision(session, entry, question, answer, author=author, reason=reason)
    add_phrasings(session, entry, phrasings, source=phrasing_source, question=question)
    record_change(session, entry.id)
    session.flush()
    outbox.article_published(session, entry, how="created", reason=reason)
    return entry


def _add_revision(
    session: Session, entry: FaqEntry, question: str, answer: str, *, author: str, reason: str
) -> FaqRevision:
    number = (
        session.scalar(select(func.max(FaqRevision.number)).where(FaqRevision.entry_id == entry.id))
        or 0
    ) + 1
    rev = FaqRevision(
        entry_id=entry.id,
        number=number,
        question=question,
        answer=answer,
        author=author,
        reason=reason,
    )
    session.add(rev)
    session.flush()
    entry.current_revision = rev
    entry.current_revision_id = rev.id
    return rev


def add_phrasings(
    session: Session,
    entry: FaqEntry,
    texts: Sequence[str],
    *,
    source: PhrasingSource,
    question: str | None = None,
    thread_id: int | None = None,
) -> list[QuestionPhrasing]:
    """Add phrasings not already known for the entry (nor equal to its title)."""
    known = set(
        session.scalars(
            select(QuestionPhrasing.normalized).where(QuestionPhrasing.entry_id == entry.id)
        )
    )
    title = question if question is not None else _current_question(entry)
    if title:
        known.add(dedup_key(title))
    added = []
    for raw in texts:
        text = normalize_text(raw)
        key = dedup_key(text)
        if not key or key in known:
            continue
        if len(text) > MAX_QUESTION:
            raise InvalidInput(f"phrasing is longer than {MAX_QUESTION} characters")
        known.add(key)
        phrasing = QuestionPhrasing(
            entry_id=entry.id, text=text, normalized=key, source=source, thread_id=thread_id
        )
        session.add(phrasing)
        added.append(phrasing)
    if len(known) > MAX_PHRASINGS + 1 and source in (PhrasingSource.editor, PhrasingSource.content):
        raise InvalidInput(f"an entry keeps at most {MAX_PHRASINGS} phrasings")
    session.flush()
    return added


def _current_question(entry: FaqEntry) -> str | None:
    return entry.current_revision.question if entry.current_revision else None


def revise_entry(
    session: Session,
    entry_id: int,
    *,
    question: str,
    answer: str,
    category: str,
    language: str,
    phrasings: Sequence[str] | None = None,
    author: str = "",
    reason: str = "edited",
    expected_version: int | None = None,
    needs_account: bool | None = None,
) -> FaqEntry:
    """Write a new revision (never overwrite); replace editor phrasings when given;
    `needs_account` None keeps the flag.

    The entry is locked first (`lock_entry`), so concurrent revisions queue up and each
    gets its own number; `expected_version` (from `If-Match`) turns a stale edit into
    PreconditionFailed instead of a revision over someone else's.
    """
    entry = lock_entry(session, entry_id, expected_version=expected_version)
    if entry.status == EntryStatus.merged:
        raise Conflict(f"FAQ {entry_id} was merged into FAQ {entry.merged_into_id}")
    question, answer = _check_text(question, answer, category, language)
    current = entry.current_revision
    if current is None or (current.question, current.answer) != (question, answer):
        _add_revision(session, entry, question, answer, author=author, reason=reason)
    entry.category = category.strip()
    entry.language = language
    if needs_account is not None:
        entry.needs_account = needs_account
    if phrasings is not None:
        _replace_phrasings(
            session, entry, phrasings, sources=(PhrasingSource.editor, PhrasingSource.content)
        )
    record_change(session, entry.id)
    session.flush()
    return entry


def _replace_phrasings(
    session: Session,
    entry: FaqEntry,
    texts: Sequence[str],
    *,
    sources: tuple[PhrasingSource, ...],
) -> tuple[int, int]:
    """Make the entry's phrasings of `sources` equal `texts`; learnt ones stay."""
    wanted = {dedup_key(t): t for t in texts if dedup_key(t)}
    existing = session.scalars(
        select(QuestionPhrasing).where(QuestionPhrasing.entry_id == entry.id)
    ).all()
    removed = 0
    for p in existing:
        if p.source in sources and p.normalized not in wanted:
            session.delete(p)
            removed += 1
    session.flush()
    added = add_phrasings(session, entry, list(wanted.values()), source=sources[-1])
    return len(added), removed


def load_articles(session: Session, articles: Sequence[Article], *, author: str) -> LoadSummary:
    """Create or update entries from content files; loading twice equals loading once."""
    summary = LoadSummary()
    by_key = {
        e.content_key: e
        for e in session.scalars(
            select(FaqEntry).where(FaqEntry.content_key.in_([a.key for a in articles]))
        )
    }
    for art in articles:
        entry = by_key.get(art.key)
        if entry is None:
            clash = session.scalar(select(FaqEntry).where(FaqEntry.slug == art.slug))
            if clash is not None:
                raise Conflict(f"{art.path}: slug {art.slug!r} belongs to FAQ {clash.id}")
            create_entry(
                session,
                question=art.question,
                answer=art.answer,
                category=art.category,
                language=art.language,
                phrasings=art.questions,
                slug=art.slug,
                translation_group=art.translation_group,
                content_key=art.key,
                author=author,
                reason="loaded from content",
                phrasing_source=PhrasingSource.content,
                needs_account=art.needs_account,
            )
            summary.created += 1
            continue
        changed = _update_from_article(session, entry, art, author=author, summary=summary)
        if changed:
            record_change(session, entry.id)
            summary.revised += 1
        else:
            summary.unchanged += 1
    session.flush()
    return summary


def _update_from_article(
    session: Session, entry: FaqEntry, art: Article, *, author: str, summary: LoadSummary
) -> bool:
    changed = False
    question, answer = _check_text(art.question, art.answer, art.category, art.language)
    current = entry.current_revision
    if current is None or (current.question, current.answer) != (question, answer):
        _add_revision(
            session, entry, question, answer, author=author, reason="content file changed"
        )
        changed = True
    for attr, value in (
        ("slug", art.slug),
        ("category", art.category),
        ("language", art.language),
        ("translation_group", art.translation_group),
        ("needs_account", art.needs_account),
    ):
        if getattr(entry, attr) != value:
            setattr(entry, attr, value)
            changed = True
    added, removed = _replace_phrasings(
        session, entry, art.questions, sources=(PhrasingSource.content,)
    )
    summary.phrasings_added += added
    summary.phrasings_removed += removed
    return changed or bool(added or removed)


def phrasings_of(
    session: Session, entry_ids: Sequence[int], *, approved_only: bool = False
) -> dict[int, list[str]]:
    """Phrasing texts per entry, oldest first (only approved ones with `approved_only`)."""
    out: dict[int, list[str]] = {i: [] for i in entry_ids}
    if not entry_ids:
        return out
    query = (
        select(QuestionPhrasing.entry_id, QuestionPhrasing.text)
        .where(QuestionPhrasing.entry_id.in_(list(entry_ids)))
        .order_by(QuestionPhrasing.id)
    )
    if approved_only:
        query = query.where(QuestionPhrasing.status == PhrasingStatus.approved)
    rows = session.execute(query)
    for entry_id, text in rows:
        out[entry_id].append(text)
    return out
