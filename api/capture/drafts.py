"""The editors' review queue as JSON: drafts by demand, edit, publish, merge, reject."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from api.capture.schemas import (
    DraftDetail,
    DraftList,
    DraftMerge,
    DraftPublish,
    DraftRead,
    DraftReject,
    DraftUpdate,
    ReviewDone,
    TranslationProposalRead,
    draft_detail,
    draft_read,
)
from api.state import Services
from api.web.deps import EditorKey, ServicesDep, SessionDep
from api.web.schemas import ErrorBody, IsoDateTime
from kb.audit import Actor, draft_state, record_action
from kb.capture import drafts as capture_drafts
from kb.capture import thread_input
from kb.capture.translations import TranslationProposal, propose_translations
from kb.faqs.content import check_category
from kb.models import ApiKey, DraftStatus
from kb.suggest.service import article_url

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/drafts", tags=["drafts"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 422)
}


def _audit(
    session: Session, key: ApiKey, action: str, draft_id: int, before: dict[str, Any] | None
) -> None:
    """Record an API key's change of a draft in the audit trail (same transaction)."""
    after = draft_state(session, draft_id)
    record_action(
        session,
        actor=Actor(key.name, "key"),
        action=action,
        target=f"draft:{draft_id}",
        before=before,
        after=after,
    )


def _done(services: Services, session: Session, result: capture_drafts.ReviewResult) -> ReviewDone:
    entry_id, slug = result.entry.id, result.entry.slug
    draft_id = result.draft.id
    services.index.commit_and_sync(session, services.session_factory)
    return ReviewDone(
        draft=draft_read(capture_drafts.get_draft_or_raise(session, draft_id)),
        faq_id=entry_id,
        slug=slug,
        url=article_url(services.settings.base_url, slug),
        phrasings_added=result.phrasings_added,
    )


@router.get("", response_model=DraftList, responses=_ERRORS)
def list_drafts(
    session: SessionDep,
    _key: EditorKey,
    status: Annotated[
        DraftStatus | Literal["all"], Query(description="open (default), rejected, ... or all.")
    ] = DraftStatus.open,
    lang: Annotated[str | None, Query(pattern="^(ja|en)$")] = None,
    sort: Annotated[
        Literal["demand", "growth", "recent", "newest"],
        Query(description="demand: thread count, then growth; growth: spikes first."),
    ] = "demand",
    as_of: Annotated[
        IsoDateTime | None, Query(description="Reference time of the 7-day windows (default now).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    unanswered: Annotated[
        bool | None,
        Query(
            description="true: only unanswered demand (needs_answer); false: only drafts "
            "with an answer; absent: both."
        ),
    ] = None,
) -> DraftList:
    """Drafts with their demand, growth and source threads, most wanted first."""
    views, total = capture_drafts.list_drafts(
        session,
        status=None if status == "all" else DraftStatus(status),
        language=lang,
        sort=sort,
        limit=limit,
        offset=offset,
        now=thread_input.parse_time(as_of, "as_of"),
        unanswered=unanswered,
    )
    return DraftList(items=[draft_read(v) for v in views], total=total)


@router.get("/{draft_id}", response_model=DraftDetail, responses=_ERRORS)
def get_draft(draft_id: int, session: SessionDep, _key: EditorKey) -> DraftDetail:
    """One draft with its source threads and their posts (the evidence)."""
    return draft_detail(capture_drafts.get_draft_or_raise(session, draft_id))


@router.put("/{draft_id}", response_model=DraftRead, responses=_ERRORS)
@router.patch("/{draft_id}", response_model=DraftRead, responses=_ERRORS)
def update_draft(
    draft_id: int, body: DraftUpdate, services: ServicesDep, session: SessionDep, _key: EditorKey
) -> DraftRead:
    """Rewrite a draft's question and answer; threads joining later leave them as written.

    422 for a category not in the content's categories.yaml."""
    check_category(body.category, services.settings.content_dir)
    before = draft_state(session, draft_id)
    capture_drafts.update_draft(
        session,
        draft_id,
        question=body.question,
        answer=body.answer,
        category=body.category,
        language=body.lang,
    )
    _audit(session, _key, "draft.edit", draft_id, before)
    session.commit()
    return draft_read(capture_drafts.get_draft_or_raise(session, draft_id))


@router.post("/{draft_id}/publish", response_model=ReviewDone, status_code=201, responses=_ERRORS)
def publish_draft(
    draft_id: int,
    services: ServicesDep,
    session: SessionDep,
    key: EditorKey,
    body: DraftPublish | None = None,
) -> ReviewDone:
    """Publish as a new FAQ (first revision; the threads' questions as phrasings).

    422 when the draft has no answer (unanswered demand) or the category is unknown."""
    body = body or DraftPublish()
    view = capture_drafts.get_draft_or_raise(session, draft_id)
    check_category(body.category or view.draft.category, services.settings.content_dir)
    before = draft_state(session, draft_id)
    result = capture_drafts.publish_draft(
        session,
        draft_id,
        category=body.category,
        question=body.question,
        answer=body.answer,
        author=key.name,
    )
    _audit(session, key, "draft.publish", draft_id, before)
    done = _done(services, session, result)
    # Proposed, never linked: the editor links with the proposal's `link`. The publish has
    # been committed by now: a failure here costs the proposals, never the answer.
    try:
        found = propose_translations(
            session,
            services.embedder,
            question=result.draft.question,
            answer=result.draft.answer,
            language=result.entry.language,
            entry_id=result.entry.id,
            draft_id=draft_id,
        )
    except Exception:
        log.exception("translation proposals for FAQ %s failed", result.entry.id)
        found = []
    proposals = [proposal_read(p, result.entry.id) for p in found]
    done.translation_proposals = proposals
    done.proposed_translation = next((p for p in proposals if p.kind == "article"), None)
    return done


def proposal_read(p: TranslationProposal, faq_id: int) -> TranslationProposalRead:
    """The API form of a translation proposal for the published article `faq_id`."""
    article = p.kind == "article"
    return TranslationProposalRead(
        kind="article" if article else "draft",
        faq_id=p.id if article else None,
        draft_id=None if article else p.id,
        slug=p.slug,
        lang=p.language,
        similarity=p.similarity,
        question=p.question,
        link=f"/v1/faqs/{faq_id}/translations/{p.id}" if article else None,
    )


@router.post("/{draft_id}/merge", response_model=ReviewDone, responses=_ERRORS)
def merge_draft(
    draft_id: int, body: DraftMerge, services: ServicesDep, session: SessionDep, _key: EditorKey
) -> ReviewDone:
    """Fold into an existing FAQ: phrasings and evidence move over."""
    before = draft_state(session, draft_id)
    result = capture_drafts.merge_draft(session, draft_id, faq_id=body.faq_id)
    _audit(session, _key, "draft.merge", draft_id, before)
    return _done(services, session, result)


@router.post("/{draft_id}/reject", response_model=DraftRead, responses=_ERRORS)
def reject_draft(
    draft_id: int, body: DraftReject, session: SessionDep, _key: EditorKey
) -> DraftRead:
    """Reject with a reason; look-alike threads keep attaching to this draft."""
    capture_drafts.reject_draft(session, draft_id, reason=body.reason)
    _audit(session, _key, "draft.reject", draft_id, None)
    session.commit()
    return draft_read(capture_drafts.get_draft_or_raise(session, draft_id))


@router.post("/{draft_id}/reopen", response_model=DraftRead, responses=_ERRORS)
def reopen_draft(draft_id: int, session: SessionDep, _key: EditorKey) -> DraftRead:
    """Put a rejected draft back in the queue."""
    capture_drafts.reopen_draft(session, draft_id)
    _audit(session, _key, "draft.reopen", draft_id, None)
    session.commit()
    return draft_read(capture_drafts.get_draft_or_raise(session, draft_id))
