"""Per-revision statistics of an article for editors: views, votes and comments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from kb.errors import NotFound
from kb.models import (
    FaqEntry,
    FaqRevision,
    PageView,
    ViewSource,
    Vote,
)

# -- statistics --------------------------------------------------------------------------


@dataclass
class RevisionStats:
    """Counts that belong to one revision."""

    revision: FaqRevision
    current: bool
    views: dict[str, int]
    helpful: int
    not_helpful: int
    comments: list[tuple[str, datetime]]

    @property
    def views_total(self) -> int:
        return sum(self.views.values())

    @property
    def helpful_ratio(self) -> float | None:
        """Share of helpful votes (None without votes)."""
        votes = self.helpful + self.not_helpful
        return round(self.helpful / votes, 4) if votes else None


def entry_stats(session: Session, entry_id: int, *, comments: int = 20) -> list[RevisionStats]:
    """Views by source, helpful and not-helpful votes per revision of an entry, oldest first."""
    entry = session.get(FaqEntry, entry_id)
    if entry is None:
        raise NotFound(f"FAQ {entry_id} not found")
    revisions = list(
        session.scalars(
            select(FaqRevision).where(FaqRevision.entry_id == entry_id).order_by(FaqRevision.number)
        )
    )
    views: dict[int, dict[str, int]] = {r.id: dict.fromkeys(ViewSource, 0) for r in revisions}
    for revision_id, source, count in session.execute(
        select(PageView.revision_id, PageView.source, func.sum(PageView.count))
        .where(PageView.entry_id == entry_id)
        .group_by(PageView.revision_id, PageView.source)
    ):
        if revision_id in views:
            views[revision_id][ViewSource(source)] = int(count or 0)
    tallies: dict[int, tuple[int, int]] = {}
    for revision_id, yes, no in session.execute(
        select(
            Vote.revision_id,
            func.sum(case((Vote.helpful.is_(True), 1), else_=0)),
            func.sum(case((Vote.helpful.is_(False), 1), else_=0)),
        )
        .where(Vote.entry_id == entry_id)
        .group_by(Vote.revision_id)
    ):
        tallies[revision_id] = (int(yes or 0), int(no or 0))
    notes: dict[int, list[tuple[str, datetime]]] = {}
    for revision_id, text, at in session.execute(
        select(Vote.revision_id, Vote.comment, Vote.updated_at)
        .where(Vote.entry_id == entry_id, Vote.comment.is_not(None))
        .order_by(Vote.updated_at.desc(), Vote.id.desc())
    ):
        bucket = notes.setdefault(revision_id, [])
        if len(bucket) < comments and text:
            bucket.append((text, at))
    return [
        RevisionStats(
            revision=r,
            current=r.id == entry.current_revision_id,
            views={str(k): v for k, v in views[r.id].items()},
            helpful=tallies.get(r.id, (0, 0))[0],
            not_helpful=tallies.get(r.id, (0, 0))[1],
            comments=notes.get(r.id, []),
        )
        for r in revisions
    ]
