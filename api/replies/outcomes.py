"""POST /v1/suggestions/{id}/outcome: what the agent did with a suggestion."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.replies.deps import ReplyKitDep
from api.replies.schemas import OutcomeBody, OutcomeRead
from api.web.deps import AgentKey, ServicesDep, SessionDep
from api.web.schemas import ErrorBody
from kb.replies.outcomes import record_outcome

router = APIRouter(prefix="/v1/suggestions", tags=["outcomes"])


@router.post(
    "/{suggestion_id}/outcome",
    response_model=OutcomeRead,
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422)},
)
def post_outcome(
    suggestion_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: OutcomeBody,
    services: ServicesDep,
    session: SessionDep,
    _key: AgentKey,
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
    )
