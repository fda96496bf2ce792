"""Before/after summaries of the things editors change, for the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from kb.models import FaqDraft, FaqEntry, Flag


def draft_summary(draft: FaqDraft) -> dict[str, Any]:
    """A draft's state and text."""
    return {
        "status": draft.status.value,
        "question": draft.question,
        "answer": draft.answer,
        "category": draft.category,
        "language": draft.language,
        "faq_id": draft.entry_id,
        "reject_reason": draft.reject_reason,
    }


def draft_state(session: Session, draft_id: int) -> dict[str, Any] | None:
    """The summary of the draft with this id as the session sees it now; None if none."""
    draft = session.get(FaqDraft, draft_id)
    return draft_summary(draft) if draft is not None else None


def entry_summary(entry: FaqEntry) -> dict[str, Any]:
    """An article's state and current text."""
    rev = entry.current_revision
    return {
        "status": entry.status.value,
        "slug": entry.slug,
        "category": entry.category,
        "language": entry.language,
        "revision": rev.number if rev else None,
        "question": rev.question if rev else None,
        "answer": rev.answer if rev else None,
    }


def flag_summary(flag: Flag) -> dict[str, Any]:
    """A flag's kind, state and article."""
    return {
        "kind": flag.kind.value,
        "status": flag.status.value,
        "faq_id": flag.entry_id,
        "resolution": flag.resolution,
    }


def entry_state(session: Session, faq_id: int) -> dict[str, Any] | None:
    """The summary of the article with this id as the session sees it now; None if none."""
    entry = session.get(FaqEntry, faq_id)
    if entry is None:
        return None
    rev = entry.current_revision
    if (rev.id if rev else None) != entry.current_revision_id:
        session.flush()
        session.expire(entry, ["current_revision"])  # reload the revision just set
    return entry_summary(entry)


def flag_state(session: Session, flag_id: int) -> dict[str, Any] | None:
    """The summary of the flag with this id as the session sees it now; None if none."""
    flag = session.get(Flag, flag_id)
    return flag_summary(flag) if flag is not None else None


@contextmanager
def new_entries(session: Session) -> Iterator[list[FaqEntry]]:
    """Collects the articles `session` inserts inside the block (in insertion order), e.g.
    to record a create in the same transaction as the create itself."""
    created: list[FaqEntry] = []

    def on_persist(_session: Session, obj: object) -> None:
        if isinstance(obj, FaqEntry):
            created.append(obj)

    event.listen(session, "pending_to_persistent", on_persist)
    try:
        yield created
    finally:
        event.remove(session, "pending_to_persistent", on_persist)
