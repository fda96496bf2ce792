"""POST /v1/suggest: the best FAQ for a customer's post."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request, Response

from api.replies.deps import ReplyKitDep
from api.suggest.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    SuggestRequest,
    SuggestResponse,
    suggest_response,
)
from api.web.deps import AgentKey, BearerToken, ServicesDep, SessionDep, authenticate_request
from api.web.origin import public_origin
from api.web.schemas import ErrorBody
from kb.models import Role
from kb.replies.compose import suggest_with_reply
from kb.replies.file_batch import suggest_batch
from kb.suggest.service import SuggestPolicy

router = APIRouter(prefix="/v1", tags=["suggest"])


def with_origin(policy: SuggestPolicy, request: Request) -> SuggestPolicy:
    """The policy whose article links are absolute: FAQLOOP_BASE_URL, else the request's own
    origin (as the trusted proxies report it)."""
    if policy.base_url.strip():
        return policy
    return replace(policy, base_url=public_origin("", request))


@router.post(
    "/suggest",
    response_model=SuggestResponse,
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 422, 503)},
)
def post_suggest(
    request: Request,
    body: SuggestRequest,
    services: ServicesDep,
    session: SessionDep,
    token: BearerToken,
    kit: ReplyKitDep,
) -> Response:
    """Rank the FAQs for one post; `abstained` when nothing fits well enough.

    Also advises whether to reply (`triage`) and drafts the reply for the post's `channel`
    (`reply`; see docs/replies.md).
    """
    # The key is checked here, in the handler's thread, not by a dependency of its own: a
    # plain `def` dependency is one more trip through the thread pool for every request.
    key = authenticate_request(session, token, Role.agent)
    out = suggest_with_reply(
        session,
        services.index,
        services.calibration,
        with_origin(kit.suggest_policy(), request),
        kit.policy,
        text=body.text,
        lang=body.lang,
        k=body.k,
        channel=body.channel,
        api_key_id=key.id,
    )
    session.commit()
    # Already validated into SuggestResponse: sent as is, without FastAPI validating it a
    # second time in another thread-pool hop (the hot path; see docs/scale.md).
    return Response(
        suggest_response(out).model_dump_json(by_alias=True), media_type="application/json"
    )


@router.post(
    "/suggest/batch",
    response_model=BatchResponse,
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 413, 422, 503)},
)
def post_suggest_batch(
    request: Request,
    body: BatchRequest,
    services: ServicesDep,
    session: SessionDep,
    key: AgentKey,
    kit: ReplyKitDep,
) -> BatchResponse:
    """Suggestions, triage and drafts for up to FAQLOOP_BATCH_MAX posts, in order.

    Every post is checked first: one bad post refuses the whole batch (400, naming it) and
    nothing is stored; otherwise all are stored together.
    """
    results = suggest_batch(
        session,
        services.index,
        services.calibration,
        with_origin(kit.suggest_policy(), request),
        kit.policy,
        posts=[p.model_dump() for p in body.posts],
        channel=body.channel,
        max_posts=services.settings.batch_max,
        api_key_id=key.id,
    )
    session.commit()
    return BatchResponse(
        results=[BatchItem(id=ident, **suggest_response(a).model_dump()) for ident, a in results]
    )
