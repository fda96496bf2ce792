"""POST /v1/suggestions/{id}/outcome: what the agent did with a suggestion."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from api.replies.deps import ReplyKitDep
from api.replies.schemas import OutcomeBody, OutcomeRead, PhrasingApproved
from api.web.deps import AgentKey, EditorKey, ServicesDep, SessionDep
from api.web.schemas import ErrorBody
from kb.audit.trail import Actor, record_action
from kb.models import PhrasingStatus, QuestionPhrasing
from kb.replies.outcomes import approve_phrasing, record_outcome

router = APIRouter(tags=["outcomes"])


@router.post(
    "/v1/suggestions/{suggestion_id}/outcome",
    response_model=OutcomeRead,
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422)},
)
def post_outcome(
    suggestion_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: OutcomeBody,
    services: ServicesDep,
    session: SessionDep,
    key: AgentKey,
    kit: ReplyKitDep,
) -> OutcomeRead:
    """Record sent, edited (with the final text) or rejected (optionally with a better FAQ).

    Sent and edited teach the FAQ the post as a new phrasing (searchable when the call
    returns); every outcome feeds the acceptance rates and the learnt threshold. The same
    outcome twice changes nothing; a different one is 409.
    """
    result = record_outcome(
        session,
        suggestion_id,
        outcome=body.outcome,
        final_text=body.final_text,
        faq_id=body.faq_id,
        agent=key.id,
        agreement=services.settings.phrasing_agreement_agents,
    )
    services.index.commit_and_sync(session, services.session_factory, reindex=result.phrasing_added)
    if not result.repeated:
        kit.learner.invalidate()
    return OutcomeRead(
        suggestion_id=result.suggestion_id,
        outcome=result.outcome.value,
        faq_id=result.faq_id,
        phrasing_added=result.phrasing_added,
        phrasing_faq_id=result.phrasing_faq_id,
        repeated=result.repeated,
        threshold=kit.threshold().threshold,
        phrasing_pending=result.phrasing_pending,
    )


@router.post(
    "/v1/phrasings/{phrasing_id}/approve",
    response_model=PhrasingApproved,
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 422)},
)
def post_approve_phrasing(
    phrasing_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    services: ServicesDep,
    session: SessionDep,
    key: EditorKey,
) -> PhrasingApproved:
    """Approve a phrasing learnt from agents' outcomes: it is searchable when this returns.

    Until then (or until enough distinct agents taught it) it shapes neither suggest nor
    public search. Approving an approved phrasing changes nothing.
    """
    was = session.scalar(select(QuestionPhrasing.status).where(QuestionPhrasing.id == phrasing_id))
    phrasing = approve_phrasing(session, phrasing_id, by=f"key {key.id} ({key.name})")
    if was == PhrasingStatus.pending:
        record_action(
            session,
            actor=Actor(key.name, "key"),
            action="phrasing_approved",
            target=f"faq:{phrasing.entry_id}",
            before={"phrasing": phrasing.id, "text": phrasing.text, "status": "pending"},
            after={"phrasing": phrasing.id, "status": "approved"},
        )
    result = PhrasingApproved(
        phrasing_id=phrasing.id,
        faq_id=phrasing.entry_id,
        status=phrasing.status.value,
        approved_by=phrasing.approved_by,
    )
    services.index.commit_and_sync(session, services.session_factory)
    return result
