"""POST /v1/suggest: the best FAQ for a customer's post."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AgentKey, ServicesDep, SessionDep
from api.schemas import CandidateRead, ErrorBody, SuggestRequest, SuggestResponse
from kb.suggest import Candidate, suggest

router = APIRouter(prefix="/v1", tags=["suggest"])


def _candidate(c: Candidate) -> CandidateRead:
    return CandidateRead(faq_id=c.faq_id, slug=c.slug, title=c.title, url=c.url, score=c.score)


@router.post(
    "/suggest",
    response_model=SuggestResponse,
    responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)
def post_suggest(
    body: SuggestRequest, services: ServicesDep, session: SessionDep, key: AgentKey
) -> SuggestResponse:
    """Rank the FAQs for one post; `abstained` when nothing fits well enough."""
    out = suggest(
        session,
        services.index,
        services.calibration,
        services.policy,
        text=body.text,
        lang=body.lang,
        k=body.k,
        channel=body.channel,
        api_key_id=key.id,
    )
    session.commit()
    return SuggestResponse(
        suggestion_id=out.suggestion_id,
        candidates=[_candidate(c) for c in out.candidates],
        best=_candidate(out.best) if out.best else None,
        confidence=out.confidence,
        abstained=out.abstained,
        lang=out.language,
        latency_ms=out.latency_ms,
    )
