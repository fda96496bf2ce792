"""Resolved support threads: ingest (idempotent per channel and external id) and read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.exc import IntegrityError

from api.capture.deps import CaptureDep
from api.capture.schemas import (
    ThreadBody,
    ThreadFiled,
    ThreadList,
    ThreadRead,
    source_thread,
    thread_filed,
    thread_read,
)
from api.web.deps import AgentKey, ServicesDep, SessionDep
from api.web.schemas import ErrorBody
from kb.capture import drafts, thread_input
from kb.capture import ingest as capture_ingest
from kb.models import ThreadStatus

router = APIRouter(prefix="/v1/threads", tags=["threads"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 422, 503)
}


@router.post(
    "",
    response_model=ThreadFiled,
    status_code=201,
    responses={200: {"model": ThreadFiled, "description": "Known thread, updated"}, **_ERRORS},
)
def ingest_thread(
    body: ThreadBody,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
    kit: CaptureDep,
    _key: AgentKey,
) -> ThreadFiled:
    """File a resolved thread: evidence and a phrasing for the FAQ that covers it, or a draft.

    Sending the same (channel, external_id) again updates the thread and never duplicates
    it, its phrasing or its draft. A new phrasing is searchable when the call returns.
    """
    item = thread_input.thread_from_dict(body.model_dump())
    try:
        report = capture_ingest.ingest_threads(session, kit, [item])
        session.commit()
    except IntegrityError:
        # Another request stored the same (channel, external_id) first: this one is an update.
        session.rollback()
        report = capture_ingest.ingest_threads(session, kit, [item])
    touched = bool(report.touched_entries)
    services.index.commit_and_sync(session, services.session_factory, reindex=touched)
    outcome = report.outcomes[0]
    if not outcome.created:
        response.status_code = 200
    return thread_filed(outcome)


@router.get("", response_model=ThreadList, responses=_ERRORS)
def list_threads(
    session: SessionDep,
    _key: AgentKey,
    status: ThreadStatus | None = None,
    faq_id: Annotated[int | None, Query(description="Evidence of this FAQ.")] = None,
    draft_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ThreadList:
    """Threads, newest first, by status, FAQ (its evidence) or draft."""
    rows, total = drafts.list_threads(
        session, status=status, faq_id=faq_id, draft_id=draft_id, limit=limit, offset=offset
    )
    return ThreadList(items=[source_thread(t) for t in rows], total=total)


@router.get("/{thread_id}", response_model=ThreadRead, responses=_ERRORS)
def get_thread(thread_id: int, session: SessionDep, _key: AgentKey) -> ThreadRead:
    """One thread with its raw and cleaned posts."""
    return thread_read(drafts.get_thread_or_raise(session, thread_id))
