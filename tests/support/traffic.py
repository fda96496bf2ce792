"""Synthetic traffic for content-health tests: real rows in the real database (page views,
votes, suggestions with outcomes, abstained posts, failed searches), nothing mocked."""

from __future__ import annotations

import itertools
import time
from datetime import date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.models import (
    FaqEntry,
    FaqRevision,
    PageView,
    SearchLog,
    Suggestion,
    SuggestionOutcome,
    ViewSource,
    Vote,
    utcnow,
)

_visitors = itertools.count(1)


def _revision_id(entry: FaqEntry, revision_id: int | None) -> int:
    rid = revision_id or entry.current_revision_id
    assert rid is not None
    return rid


def add_views(
    session: Session,
    entry: FaqEntry,
    n: int,
    *,
    day: date,
    source: ViewSource = ViewSource.direct,
    revision_id: int | None = None,
) -> None:
    """Add `n` views of a revision (the current one by default) on a day."""
    if n <= 0:
        return
    rid = _revision_id(entry, revision_id)
    row = session.scalar(
        select(PageView).where(
            PageView.revision_id == rid, PageView.day == day, PageView.source == source
        )
    )
    if row is None:
        session.add(PageView(entry_id=entry.id, revision_id=rid, day=day, source=source, count=n))
    else:
        row.count += n
    session.flush()


def add_votes(
    session: Session,
    entry: FaqEntry,
    helpful: int,
    not_helpful: int,
    *,
    at: datetime | None = None,
    revision_id: int | None = None,
    comment: str | None = None,
) -> None:
    """Add votes from distinct visitors on a revision (the current one by default)."""
    rid = _revision_id(entry, revision_id)
    at = at or utcnow()
    for is_helpful, n in ((True, helpful), (False, not_helpful)):
        for _ in range(n):
            session.add(
                Vote(
                    entry_id=entry.id,
                    revision_id=rid,
                    visitor_hash=f"visitor-{next(_visitors):012d}",
                    helpful=is_helpful,
                    comment=None if is_helpful else comment,
                    created_at=at,
                    updated_at=at,
                )
            )
    session.flush()


def add_outcomes(
    session: Session,
    entry: FaqEntry,
    accepted: int,
    rejected: int,
    *,
    at: datetime | None = None,
    edited: int = 0,
) -> None:
    """Suggestions of the entry and what agents did with them."""
    at = at or utcnow()
    outcomes = (
        [SuggestionOutcome.sent] * accepted
        + [SuggestionOutcome.edited] * edited
        + [SuggestionOutcome.rejected] * rejected
    )
    for outcome in outcomes:
        session.add(
            Suggestion(
                text="post",
                language=entry.language,
                candidates=[{"faq_id": entry.id, "score": 0.9}],
                best_faq_id=entry.id,
                confidence=0.9,
                abstained=False,
                latency_ms=10.0,
                outcome=outcome,
                outcome_faq_id=entry.id,
                outcome_at=at,
                created_at=at,
            )
        )
    session.flush()


def add_abstained(
    session: Session, texts: list[str], language: str, *, at: datetime | None = None
) -> None:
    """Posts suggest abstained on (no FAQ fitted)."""
    at = at or utcnow()
    for text in texts:
        session.add(
            Suggestion(
                text=text,
                language=language,
                candidates=[],
                best_faq_id=None,
                confidence=0.05,
                abstained=True,
                latency_ms=10.0,
                created_at=at,
            )
        )
    session.flush()


def add_failed_searches(
    session: Session, texts: list[str], language: str, *, at: datetime | None = None
) -> None:
    """Site searches without a good result."""
    at = at or utcnow()
    for text in texts:
        session.add(
            SearchLog(
                query=text,
                language=language,
                result_count=3,
                top_score=0.1,
                good_result=False,
                created_at=at,
            )
        )
    session.flush()


def backdate_revision(session: Session, entry: FaqEntry, days: int) -> None:
    """Pretend the current revision went live `days` ago."""
    rev = session.get(FaqRevision, entry.current_revision_id)
    assert rev is not None
    rev.created_at = utcnow() - timedelta(days=days)
    session.flush()


def recompute_via_api(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    """Start a recompute through the API and wait for it; return what it did.

    The wait has a generous bound only so a hung recompute fails the test instead of
    blocking the suite; nothing here measures speed.
    """
    bound = time.monotonic() + 900
    while True:
        r = client.post("/v1/health/recompute", headers=headers)
        assert r.status_code == 202, r.text
        status = r.json()
        if status["started"]:
            break
        assert time.monotonic() < bound, "an earlier recompute never finished"
        time.sleep(0.1)
    target = status["completed"] + 1
    while True:
        status = client.get("/v1/health/recompute", headers=headers).json()
        if status["completed"] >= target and not status["running"]:
            break
        assert time.monotonic() < bound, "the recompute never finished"
        time.sleep(0.1)
    assert status["last_error"] is None, status["last_error"]
    assert status["last"] is not None
    return dict(status["last"])
