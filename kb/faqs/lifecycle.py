"""An article's life after it is written: unpublish, archive, restore, translations linked and
unlinked, learnt phrasings listed with their origin and removed. Callers commit (with
`index.commit_and_sync`, so the index forgets what left the site at once).

Transitions (anything else is InvalidTransition):

    published → draft (unpublish)      published | draft → archived (archive)
    draft | archived → published (restore)

A merged article is out of the life cycle: its slug answers with the survivor (undo the
merge to bring it back). Every change goes to the change feed and to the audit trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kb.audit import record_action
from kb.db import lock_rows
from kb.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from kb.faqs.entries import (
    ENTRY_TABLE,
    SLUG_ATTEMPTS,
    create_entry,
    get_entry_or_raise,
    record_change,
    revise_entry,
)
from kb.models import EntryStatus, FaqEntry, PhrasingSource, QuestionPhrasing, Thread
from kb.notify import outbox

# action → (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[EntryStatus], EntryStatus]] = {
    "unpublish": (frozenset({EntryStatus.published}), EntryStatus.draft),
    "archive": (frozenset({EntryStatus.published, EntryStatus.draft}), EntryStatus.archived),
    "restore": (frozenset({EntryStatus.draft, EntryStatus.archived}), EntryStatus.published),
}


def _target(entry_id: int) -> str:
    return f"faq:{entry_id}"


def change_status(session: Session, entry_id: int, action: str, *, by: str) -> FaqEntry:
    """Apply one life-cycle `action` ("unpublish", "archive" or "restore") to an article."""
    if action not in TRANSITIONS:
        raise InvalidInput(f"unknown action {action!r}; use one of {', '.join(TRANSITIONS)}")
    sources, result = TRANSITIONS[action]
    # Lock the row so two editors acting at once apply their transitions one after the other.
    lock_rows(session, ENTRY_TABLE, [entry_id])
    entry = get_entry_or_raise(session, entry_id)
    if entry.status == EntryStatus.merged:
        raise InvalidTransition(
            f"FAQ {entry_id} was merged into FAQ {entry.merged_into_id}; undo the merge first"
        )
    if entry.status not in sources:
        raise InvalidTransition(f"cannot {action} FAQ {entry_id}: it is {entry.status.value}")
    if result == EntryStatus.published and entry.current_revision_id is None:
        raise InvalidTransition(f"FAQ {entry_id} has no text to publish")
    before = entry.status
    entry.status = result
    record_change(session, entry.id)
    record_action(
        session,
        actor=by,
        action=action,
        target=_target(entry.id),
        before={"status": before.value},
        after={"status": result.value},
    )
    session.flush()
    if result == EntryStatus.published:
        outbox.article_published(session, entry, how="restored", reason="published again")
    return entry


def archive(session: Session, entry_id: int, *, by: str) -> FaqEntry:
    """Take an article off the site and out of search for good (restore brings it back)."""
    return change_status(session, entry_id, "archive", by=by)


def unpublish(session: Session, entry_id: int, *, by: str) -> FaqEntry:
    """Take a published article off the site and out of search, back to draft."""
    return change_status(session, entry_id, "unpublish", by=by)


def restore(session: Session, entry_id: int, *, by: str) -> FaqEntry:
    """Publish an unpublished or archived article again."""
    return change_status(session, entry_id, "restore", by=by)


def translations(session: Session, entry: FaqEntry) -> list[FaqEntry]:
    """The other articles of the entry's translation group, by language."""
    if not entry.translation_group:
        return []
    return list(
        session.scalars(
            select(FaqEntry)
            .where(FaqEntry.translation_group == entry.translation_group, FaqEntry.id != entry.id)
            .order_by(FaqEntry.language, FaqEntry.id)
        )
    )


def _group(session: Session, group: str | None) -> list[FaqEntry]:
    if not group:
        return []
    return list(
        session.scalars(
            select(FaqEntry)
            .where(FaqEntry.translation_group == group)
            .order_by(FaqEntry.id)
            .execution_options(populate_existing=True)
        )
    )


def _lock_groups(session: Session, entry_ids: list[int]) -> None:
    """Lock the entries and every member of their translation groups (id order)."""
    query = select(FaqEntry.translation_group).where(FaqEntry.id.in_(entry_ids))
    groups = [g for g in session.scalars(query) if g]
    members = (
        list(session.scalars(select(FaqEntry.id).where(FaqEntry.translation_group.in_(groups))))
        if groups
        else []
    )
    lock_rows(session, ENTRY_TABLE, [*entry_ids, *members])


def link_translation(session: Session, entry_id: int, other_id: int, *, by: str) -> FaqEntry:
    """Make `other_id` a translation of `entry_id` (their groups join); one article per language.

    Linking twice is a no-op. Returns the entry.
    """
    if entry_id == other_id:
        raise InvalidInput("an article cannot be its own translation")
    _lock_groups(session, [entry_id, other_id])
    entry = get_entry_or_raise(session, entry_id)
    other = get_entry_or_raise(session, other_id)
    for e in (entry, other):
        if e.status == EntryStatus.merged:
            raise InvalidTransition(f"FAQ {e.id} was merged into FAQ {e.merged_into_id}")
    if entry.translation_group and entry.translation_group == other.translation_group:
        return entry
    if entry.language == other.language:
        raise InvalidInput(f"both articles are in {entry.language}; a translation is another one")
    members = {e.id: e for e in _group(session, entry.translation_group)}
    members.setdefault(entry.id, entry)
    joining = {e.id: e for e in _group(session, other.translation_group)}
    joining.setdefault(other.id, other)
    by_language: dict[str, int] = {e.language: e.id for e in members.values()}
    for e in joining.values():
        clash = by_language.get(e.language)
        if clash is not None and clash != e.id:
            raise Conflict(
                f"FAQ {clash} is already the {e.language} translation; unlink it first",
                detail={"faq_id": clash, "lang": e.language},
            )
        by_language[e.language] = e.id
    group = entry.translation_group or other.translation_group or f"tg-{uuid.uuid4().hex[:12]}"
    for e in (*members.values(), *joining.values()):
        if e.translation_group != group:
            e.translation_group = group
            record_change(session, e.id)
    record_action(
        session,
        actor=by,
        action="translation_linked",
        target=_target(entry.id),
        after={"translation": other.id, "group": group},
    )
    session.flush()
    return entry


def unlink_translation(session: Session, entry_id: int, other_id: int, *, by: str) -> FaqEntry:
    """Take `other_id` out of `entry_id`'s translation group. Returns the entry."""
    _lock_groups(session, [entry_id, other_id])
    entry = get_entry_or_raise(session, entry_id)
    other = get_entry_or_raise(session, other_id)
    group = entry.translation_group
    if entry_id == other_id or not group or other.translation_group != group:
        raise NotFound(f"FAQ {other_id} is not a translation of FAQ {entry_id}")
    members = _group(session, group)
    other.translation_group = None
    record_change(session, other.id)
    rest = [e for e in members if e.id != other.id]
    if len(rest) == 1:  # a group of one links nothing
        rest[0].translation_group = None
        record_change(session, rest[0].id)
    record_action(
        session,
        actor=by,
        action="translation_unlinked",
        target=_target(entry.id),
        before={"translation": other.id, "group": group},
    )
    session.flush()
    return entry


@dataclass(frozen=True)
class PhrasingOrigin:
    """One phrasing of an article and where it was learnt."""

    id: int
    text: str
    source: PhrasingSource
    created_at: datetime
    thread_id: int | None
    thread_channel: str | None
    thread_url: str | None
    state: str | None  # e.g. a quarantine state of outcome phrasings, when the model has one


def _state(p: QuestionPhrasing) -> str | None:
    value = getattr(p, "state", None) or getattr(p, "status", None)
    return str(getattr(value, "value", value)) if value is not None else None


def list_phrasings(session: Session, entry_id: int) -> list[PhrasingOrigin]:
    """Every phrasing of the article, oldest first, with its origin."""
    get_entry_or_raise(session, entry_id)
    rows = session.execute(
        select(QuestionPhrasing, Thread.channel, Thread.url)
        .outerjoin(Thread, Thread.id == QuestionPhrasing.thread_id)
        .where(QuestionPhrasing.entry_id == entry_id)
        .order_by(QuestionPhrasing.id)
    ).all()
    return [
        PhrasingOrigin(
            id=p.id,
            text=p.text,
            source=p.source,
            created_at=p.created_at,
            thread_id=p.thread_id,
            thread_channel=channel,
            thread_url=url,
            state=_state(p),
        )
        for p, channel, url in rows
    ]


def _phrasing_or_raise(session: Session, entry_id: int, phrasing_id: int) -> QuestionPhrasing:
    get_entry_or_raise(session, entry_id)
    phrasing = session.scalar(
        select(QuestionPhrasing)
        .where(QuestionPhrasing.id == phrasing_id, QuestionPhrasing.entry_id == entry_id)
        .with_for_update()
    )
    if phrasing is None:
        raise NotFound(f"FAQ {entry_id} has no phrasing {phrasing_id}")
    return phrasing


def remove_phrasing(session: Session, entry_id: int, phrasing_id: int, *, by: str) -> None:
    """Forget one phrasing of the article (search forgets it once the caller syncs)."""
    phrasing = _phrasing_or_raise(session, entry_id, phrasing_id)
    record_action(
        session,
        actor=by,
        action="phrasing_removed",
        target=_target(entry_id),
        before={
            "phrasing": phrasing.id,
            "text": phrasing.text,
            "source": phrasing.source.value,
            "thread": phrasing.thread_id,
        },
    )
    session.delete(phrasing)
    record_change(session, entry_id)
    session.flush()


def approvable(origin: PhrasingOrigin) -> bool:
    """Whether the phrasing waits for an editor's approval (an outcome-learnt one on hold)."""
    return origin.source == PhrasingSource.outcome and origin.state == "pending"


def _text_summary(entry: FaqEntry) -> dict[str, object]:
    rev = entry.current_revision
    return {
        "question": rev.question if rev else "",
        "answer": rev.answer if rev else "",
        "category": entry.category,
        "lang": entry.language,
        "needs_account": entry.needs_account,
        "revision": rev.number if rev else 0,
    }


def create_and_commit_article(
    session: Session,
    commit: Callable[[], object],
    *,
    question: str,
    answer: str,
    category: str,
    language: str,
    phrasings: Sequence[str] = (),
    slug: str | None = None,
    by: str,
    reason: str = "created",
    needs_account: bool = False,
) -> FaqEntry:
    """Create and publish an article written by an editor, audited as "create", then
    `commit()` (e.g. `index.commit_and_sync`). A generated slug that a concurrent create took
    first is chosen again; an explicit one is Conflict."""
    for attempt in range(SLUG_ATTEMPTS):
        try:
            entry = create_entry(
                session,
                question=question,
                answer=answer,
                category=category,
                language=language,
                phrasings=phrasings,
                slug=slug,
                author=by,
                reason=reason,
                needs_account=needs_account,
                _attempt=attempt,
            )
            record_action(
                session,
                actor=by,
                action="create",
                target=_target(entry.id),
                after=_text_summary(entry),
            )
            commit()
            return entry
        except IntegrityError as exc:
            session.rollback()
            if slug is not None:
                raise Conflict(f"slug {slug!r} is already used") from exc
    raise Conflict("could not find a free slug for this title; give one explicitly")


def edit_article(
    session: Session,
    entry_id: int,
    *,
    question: str,
    answer: str,
    category: str,
    language: str,
    phrasings: Sequence[str] | None = None,
    by: str,
    reason: str = "edited",
    needs_account: bool | None = None,
) -> FaqEntry:
    """Write a new revision of an article (audited as "edit" with before and after);
    `needs_account` None keeps the flag."""
    before = _text_summary(get_entry_or_raise(session, entry_id))
    entry = revise_entry(
        session,
        entry_id,
        question=question,
        answer=answer,
        category=category,
        language=language,
        phrasings=phrasings,
        author=by,
        reason=reason,
        needs_account=needs_account,
    )
    after = _text_summary(entry)
    if after != before or phrasings is not None:
        record_action(
            session, actor=by, action="edit", target=_target(entry.id), before=before, after=after
        )
    return entry
