"""Helpful votes: one per visitor and revision, with an optional comment. Callers commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.errors import InvalidInput
from kb.models import (
    FaqEntry,
    Vote,
    utcnow,
)
from kb.site.articles import get_revision_of
from kb.site.views import upsert
from kb.text.personal_data import scrub_personal_data

MAX_COMMENT_CHARS = 1000
# -- votes -------------------------------------------------------------------------------


def parse_helpful(value: str | bool | None) -> bool:
    """A vote's answer: yes/no (also true/false, 1/0, はい/いいえ); InvalidInput otherwise."""
    if isinstance(value, bool):
        return value
    text = (value or "").strip().lower()
    if text in ("yes", "true", "1", "はい"):
        return True
    if text in ("no", "false", "0", "いいえ"):
        return False
    raise InvalidInput("helpful must be yes or no")


def clean_comment(comment: str | None) -> str | None:
    """A vote comment: trimmed, personal data masked, None when empty; InvalidInput if long."""
    if comment is None:
        return None
    text = comment.replace("\x00", "").strip()
    if not text:
        return None
    if len(text) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
    return scrub_personal_data(text)


@dataclass
class VoteResult:
    """What a vote did."""

    vote: Vote
    replaced: bool


def current_vote(session: Session, *, revision_id: int, visitor: str) -> Vote | None:
    """This visitor's vote on a revision, if any."""
    return session.scalar(
        select(Vote)
        .where(Vote.revision_id == revision_id, Vote.visitor_hash == visitor)
        .execution_options(populate_existing=True)
    )


def cast_vote(
    session: Session,
    *,
    entry: FaqEntry,
    revision_id: int | None,
    visitor: str,
    helpful: bool,
    comment: str | None = None,
    now: datetime | None = None,
) -> VoteResult:
    """Record a visitor's answer for the revision they were shown; a second vote replaces it.

    Only a "no" keeps its comment. One row per revision and visitor whatever the number
    of calls or their concurrency (the unique key decides, not a read-then-write).
    """
    revision = get_revision_of(session, entry, revision_id)
    text = clean_comment(comment) if not helpful else None
    now = now or utcnow()
    existed = current_vote(session, revision_id=revision.id, visitor=visitor) is not None
    stmt = upsert(session, Vote)
    if stmt is not None:
        stmt = stmt.values(
            entry_id=entry.id,
            revision_id=revision.id,
            visitor_hash=visitor,
            helpful=helpful,
            comment=text,
            created_at=now,
            updated_at=now,
        )
        session.execute(
            stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["revision_id", "visitor_hash"],
                set_={"helpful": helpful, "comment": text, "updated_at": now},
            )
        )
    else:
        row = current_vote(session, revision_id=revision.id, visitor=visitor)
        if row is None:
            session.add(
                Vote(
                    entry_id=entry.id,
                    revision_id=revision.id,
                    visitor_hash=visitor,
                    helpful=helpful,
                    comment=text,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            row.helpful, row.comment, row.updated_at = helpful, text, now
        session.flush()
    vote = current_vote(session, revision_id=revision.id, visitor=visitor)
    assert vote is not None  # just written in this transaction
    return VoteResult(vote=vote, replaced=existed)
