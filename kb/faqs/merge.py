"""Merging two published articles into one. Callers commit.

The merged article's slug keeps working: the site and the public API answer it with a
301 to the surviving article (kb.site.articles.get_article_or_raise follows `merged_into_id`). Its
views, votes and imported history are filed under the surviving entry while keeping the
revision they belong to, so the surviving article's lifetime numbers include them and its
health page shows them as revisions "merged from" the old article, without mixing them into
its own revisions' judgements. Its title and phrasings become phrasings of the survivor,
its threads become the survivor's evidence, and both entries go to the change feed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from kb.errors import Conflict, InvalidInput
from kb.faqs import entries as faqs
from kb.models import (
    DailyFeedback,
    EntryStatus,
    FaqEntry,
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
    session: Session, source_id: int, target_id: int, *, by: str, reason: str = ""
) -> MergeResult:
    """Merge article `source_id` into `target_id` (both published, one language)."""
    if source_id == target_id:
        raise InvalidInput("an article cannot be merged into itself")
    source = faqs.get_entry_or_raise(session, source_id)
    target = faqs.get_entry_or_raise(session, target_id)
    if source.status == EntryStatus.merged:
        raise Conflict(f"FAQ {source.id} was already merged into FAQ {source.merged_into_id}")
    if target.status != EntryStatus.published:
        raise InvalidInput(f"FAQ {target.id} is {target.status.value}; merge into a published FAQ")
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
    session.flush()
    return result


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
