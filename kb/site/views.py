"""Page views: atomic counters per article, day and source; one count per visitor.

Callers commit.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Insert, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kb.models import (
    FaqEntry,
    PageView,
    ViewSource,
    VisitorSeen,
    utcnow,
)

# -- atomic counters ---------------------------------------------------------------------


def upsert(session: Session, table: Any) -> Insert | None:
    # INSERT ... ON CONFLICT is a single atomic statement on both supported databases:
    # two requests racing to create the same counter row cannot lose an increment.
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    return None


def _increment_page_view(
    session: Session, *, entry_id: int, revision_id: int, day: date, source: ViewSource
) -> None:
    stmt = upsert(session, PageView)
    if stmt is not None:
        stmt = stmt.values(
            entry_id=entry_id, revision_id=revision_id, day=day, source=source, count=1
        )
        session.execute(
            stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["revision_id", "day", "source"],
                set_={"count": PageView.count + 1},
            )
        )
        return
    # Other databases: update, else insert; a lost insert race turns into an update.
    where = (PageView.revision_id == revision_id, PageView.day == day, PageView.source == source)
    for _ in range(2):
        done = session.execute(update(PageView).where(*where).values(count=PageView.count + 1))
        if getattr(done, "rowcount", 0):
            return
        try:
            with session.begin_nested():
                session.add(
                    PageView(
                        entry_id=entry_id, revision_id=revision_id, day=day, source=source, count=1
                    )
                )
            return
        except IntegrityError:
            continue


def _claim_visit(
    session: Session, *, revision_id: int, visitor: str, now: datetime, window: timedelta
) -> bool:
    """Mark the visitor as counted for the revision unless they were within `window`."""
    cutoff = now - window
    stmt = upsert(session, VisitorSeen)
    if stmt is not None:
        stmt = stmt.values(revision_id=revision_id, visitor_hash=visitor, last_counted_at=now)
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["revision_id", "visitor_hash"],
            set_={"last_counted_at": now},
            where=VisitorSeen.last_counted_at <= cutoff,
        ).returning(VisitorSeen.id)
        return session.execute(stmt).first() is not None
    done = session.execute(
        update(VisitorSeen)
        .where(
            VisitorSeen.revision_id == revision_id,
            VisitorSeen.visitor_hash == visitor,
            VisitorSeen.last_counted_at <= cutoff,
        )
        .values(last_counted_at=now)
    )
    if getattr(done, "rowcount", 0):
        return True
    try:
        with session.begin_nested():
            session.add(
                VisitorSeen(revision_id=revision_id, visitor_hash=visitor, last_counted_at=now)
            )
        return True
    except IntegrityError:
        return False


def record_view(
    session: Session,
    *,
    entry: FaqEntry,
    revision_id: int,
    source: ViewSource,
    visitor: str,
    now: datetime | None = None,
    window: timedelta = timedelta(minutes=30),
    tz: tzinfo | None = None,
) -> bool:
    """Count one view of the revision shown, unless this visitor was counted within `window`.

    The counter row is per revision, calendar day (in `tz`) and arrival source. Returns
    whether the view was counted. Robots must be filtered out by the caller.
    """
    now = now or utcnow()
    if not _claim_visit(session, revision_id=revision_id, visitor=visitor, now=now, window=window):
        return False
    day = now.astimezone(tz).date() if tz else now.date()
    _increment_page_view(
        session, entry_id=entry.id, revision_id=revision_id, day=day, source=source
    )
    return True


def prune_visitors(session: Session, *, older_than: datetime) -> int:
    """Forget de-duplication marks older than a time (they no longer change any count)."""
    done = session.execute(delete(VisitorSeen).where(VisitorSeen.last_counted_at < older_than))
    return int(getattr(done, "rowcount", 0) or 0)
