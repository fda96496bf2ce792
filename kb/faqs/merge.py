"""Merging two published articles into one. Callers commit.

The merged article's slug keeps working: the site and the public API answer it with a
301 to the surviving article (kb.site.articles.get_article_or_raise follows `merged_into_id`). Its
views, votes and imported history are filed under the surviving entry while keeping the
revision they belong to, so the surviving article's lifetime numbers include them and its
health page shows them as revisions "merged from" the old article, without mixing them into
its own revisions' judgements. Its title and phrasings become phrasings of the survivor,
its threads become the survivor's evidence, and both entries go to the change feed.

Concurrent merges cannot lose articles: `merge_entries` locks both rows (in id order) before
it reads their statuses, so of two opposite merges (A into B, B into A) the second sees the
first's result and is refused with Conflict; a target must be published, so no chain or
cycle of merges can form. `unmerge_entry` undoes a merge (docs/api.md says what moves back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from kb.audit.trail import record_action
from kb.db import lock_rows
from kb.errors import Conflict, InvalidInput
from kb.faqs import entries as faqs
from kb.models import (
    DailyFeedback,
    EntryStatus,
    FaqEntry,
    FaqRevision,
    Flag,
    FlagKind,
    FlagStatus,
    PageView,
    PhrasingSource,
    QuestionPhrasing,
    Thread,
    Vote,
    utcnow,
)


@dataclass
class MergeResult:
    """What a merge moved."""

    source: FaqEntry
    target: FaqEntry
    view_rows: int = 0
    views: int = 0
    votes: int = 0
    feedback_days: int = 0
    phrasings_added: int = 0
    threads: int = 0
    resolved_flags: list[int] = field(default_factory=list)


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def merge_entries(
    session: Session,
    source_id: int,
    target_id: int,
    *,
    by: str,
    reason: str = "",
    expected_version: int | None = None,
) -> MergeResult:
    """Merge article `source_id` into `target_id` (both published, one language).

    Both rows are locked first, so the checks below hold until the caller commits: the
    source must not be merged already, the target must be published (not merged, archived
    or a draft) and not the source; anything else is Conflict (or InvalidInput for requests
    that could never succeed). `expected_version` (the source's current revision number, from
    `If-Match`) makes a stale request fail with PreconditionFailed.
    """
    if source_id == target_id:
        raise InvalidInput("an article cannot be merged into itself")
    faqs.get_entry_or_raise(session, source_id)  # 404 before taking any lock
    faqs.get_entry_or_raise(session, target_id)
    lock_rows(session, faqs.ENTRY_TABLE, (source_id, target_id))
    source = faqs.get_entry_or_raise(session, source_id)
    target = faqs.get_entry_or_raise(session, target_id)
    faqs.check_version(source, expected_version)
    if source.status == EntryStatus.merged:
        raise Conflict(f"FAQ {source.id} was already merged into FAQ {source.merged_into_id}")
    if target.status == EntryStatus.merged:
        raise Conflict(
            f"FAQ {target.id} was merged into FAQ {target.merged_into_id}; "
            f"merge into FAQ {target.merged_into_id} instead"
        )
    if target.status != EntryStatus.published:
        raise Conflict(f"FAQ {target.id} is {target.status.value}; merge into a published FAQ")
    _refuse_cycle(session, source, target)
    if source.language != target.language:
        raise InvalidInput(
            f"FAQ {source.id} is in {source.language} but FAQ {target.id} is in "
            f"{target.language}; only articles of one language can be merged"
        )
    if source.translation_group and source.translation_group == target.translation_group:
        raise InvalidInput(f"FAQ {source.id} and FAQ {target.id} are translations of each other")
    result = MergeResult(source=source, target=target)
    result.phrasings_added = _carry_phrasings(session, source, target)
    result.views = int(
        session.scalar(
            select(func.coalesce(func.sum(PageView.count), 0)).where(PageView.entry_id == source.id)
        )
        or 0
    )
    result.view_rows = _count(
        session.execute(
            update(PageView).where(PageView.entry_id == source.id).values(entry_id=target.id)
        )
    )
    result.votes = _count(
        session.execute(update(Vote).where(Vote.entry_id == source.id).values(entry_id=target.id))
    )
    result.feedback_days = _carry_feedback(session, source, target)
    result.threads = _count(
        session.execute(update(Thread).where(Thread.faq_id == source.id).values(faq_id=target.id))
    )
    # Articles merged into the source earlier now point at the survivor (no chains).
    session.execute(
        update(FaqEntry)
        .where(FaqEntry.merged_into_id == source.id)
        .values(merged_into_id=target.id)
    )
    source.status = EntryStatus.merged
    source.merged_into_id = target.id
    faqs.record_change(session, source.id)
    faqs.record_change(session, target.id)
    result.resolved_flags = _resolve_flags(session, source, target, by=by, reason=reason)
    record_action(
        session,
        actor=by,
        action="faq.merge",
        target=f"faq:{source.id}",
        before={"status": EntryStatus.published.value},
        after={"status": EntryStatus.merged.value, "merged_into": target.id, "reason": reason},
    )
    session.flush()
    return result


def _refuse_cycle(session: Session, source: FaqEntry, target: FaqEntry) -> None:
    # A published target points nowhere today; the walk guards against rows written by
    # older versions (a chain or a cycle) so a merge never closes a loop.
    seen = {source.id}
    current: FaqEntry | None = target
    while current is not None and current.merged_into_id is not None:
        if current.merged_into_id in seen:
            raise Conflict(f"merging FAQ {source.id} into FAQ {target.id} would form a cycle")
        seen.add(current.id)
        current = session.get(FaqEntry, current.merged_into_id)


@dataclass
class UnmergeResult:
    """What undoing a merge moved back."""

    entry: FaqEntry
    target_id: int
    views: int = 0
    votes: int = 0
    feedback_days: int = 0


def unmerge_entry(session: Session, entry_id: int, *, by: str) -> UnmergeResult:
    """Undo the merge of `entry_id`: it is published again at its own URL.

    Moved back to it: the page views, votes and imported feedback days filed under the
    survivor that belong to its own revisions (those rows keep their revision, so the split
    is exact). Staying with the survivor: imported feedback added into a day the survivor
    already had, the phrasings copied to the survivor and the threads (the unmerged article
    keeps its own phrasings, which the merge copied rather than moved), and articles that
    had been merged into this one before (they redirect to the survivor). Conflict when the
    entry is not merged.
    """
    entry = faqs.get_entry_or_raise(session, entry_id)
    survivor_id = entry.merged_into_id
    lock_rows(session, faqs.ENTRY_TABLE, (entry_id, *([survivor_id] if survivor_id else [])))
    entry = faqs.get_entry_or_raise(session, entry_id)
    if entry.status != EntryStatus.merged or entry.merged_into_id is None:
        raise Conflict(f"FAQ {entry_id} is {entry.status.value}, not merged: nothing to undo")
    survivor_id = entry.merged_into_id
    own_revisions = select(FaqRevision.id).where(FaqRevision.entry_id == entry.id)
    result = UnmergeResult(entry=entry, target_id=survivor_id)
    result.views = int(
        session.scalar(
            select(func.coalesce(func.sum(PageView.count), 0)).where(
                PageView.entry_id == survivor_id, PageView.revision_id.in_(own_revisions)
            )
        )
        or 0
    )
    session.execute(
        update(PageView)
        .where(PageView.entry_id == survivor_id, PageView.revision_id.in_(own_revisions))
        .values(entry_id=entry.id)
        .execution_options(synchronize_session=False)
    )
    result.votes = _count(
        session.execute(
            update(Vote)
            .where(Vote.entry_id == survivor_id, Vote.revision_id.in_(own_revisions))
            .values(entry_id=entry.id)
            .execution_options(synchronize_session=False)
        )
    )
    result.feedback_days = _count(
        session.execute(
            update(DailyFeedback)
            .where(
                DailyFeedback.entry_id == survivor_id,
                DailyFeedback.revision_id.in_(own_revisions),
            )
            .values(entry_id=entry.id)
            .execution_options(synchronize_session=False)
        )
    )
    entry.status = EntryStatus.published
    entry.merged_into_id = None
    faqs.record_change(session, entry.id)
    faqs.record_change(session, survivor_id)
    record_action(
        session,
        actor=by,
        action="faq.unmerge",
        target=f"faq:{entry.id}",
        before={"status": EntryStatus.merged.value, "merged_into": survivor_id},
        after={"status": EntryStatus.published.value},
    )
    session.flush()
    session.expire_all()
    return UnmergeResult(
        entry=faqs.get_entry_or_raise(session, entry.id),
        target_id=survivor_id,
        views=result.views,
        votes=result.votes,
        feedback_days=result.feedback_days,
    )


def _carry_phrasings(session: Session, source: FaqEntry, target: FaqEntry) -> int:
    added = 0
    title = source.current_revision.question if source.current_revision else None
    if title:
        added += len(faqs.add_phrasings(session, target, [title], source=PhrasingSource.editor))
    rows = session.scalars(
        select(QuestionPhrasing)
        .where(QuestionPhrasing.entry_id == source.id)
        .order_by(QuestionPhrasing.id)
    ).all()
    for p in rows:
        # Content phrasings belong to the source's content file, which the survivor does not
        # have: carried over they become the editor's, so a content reload keeps them.
        kind = PhrasingSource.editor if p.source == PhrasingSource.content else p.source
        added += len(
            faqs.add_phrasings(session, target, [p.text], source=kind, thread_id=p.thread_id)
        )
    return added


def _carry_feedback(session: Session, source: FaqEntry, target: FaqEntry) -> int:
    moved = 0
    rows = session.scalars(select(DailyFeedback).where(DailyFeedback.entry_id == source.id)).all()
    taken = {
        row.day: row
        for row in session.scalars(select(DailyFeedback).where(DailyFeedback.entry_id == target.id))
    }
    for row in rows:
        mine = taken.get(row.day)
        if mine is None:
            row.entry_id = target.id
        else:
            # One imported row per article and day: add the day's counts to the survivor's.
            mine.views += row.views
            mine.helpful += row.helpful
            mine.not_helpful += row.not_helpful
            session.delete(row)
        moved += 1
    session.flush()
    return moved


def _resolve_flags(
    session: Session, source: FaqEntry, target: FaqEntry, *, by: str, reason: str
) -> list[int]:
    now = utcnow()
    why = f"merged into FAQ {target.id}" + (f": {reason.strip()}" if reason.strip() else "")
    done = []
    candidates = session.scalars(
        select(Flag).where(
            Flag.status == FlagStatus.open,
            or_(Flag.entry_id == source.id, Flag.kind == FlagKind.duplicate),
        )
    )
    for flag in candidates:
        pair = (flag.evidence or {}).get("pair") or []
        about_pair = flag.kind == FlagKind.duplicate and source.id in pair
        if flag.entry_id == source.id or about_pair:
            flag.status = FlagStatus.resolved
            flag.resolved_by = (by or "editor")[:200]
            flag.resolution = why[:500]
            flag.resolved_at = now
            done.append(flag.id)
    return done
