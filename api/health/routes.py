"""Content health API (editor key): flags, an article's health, rewrite, merge, recompute."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from api.health.deps import HealthDep, HealthKit
from api.health.schemas import (
    ArticleHealthRead,
    DismissRequest,
    FlagList,
    FlagRead,
    MergeRead,
    MergeRequest,
    RecomputeRead,
    RecomputeStatus,
    RewriteRead,
    RewriteRequest,
)
from api.web.concurrency import IfMatch, if_match_version
from api.web.deps import EditorKey, ServicesDep, SessionDep
from api.web.schemas import ErrorBody, Lang
from kb.audit import Actor, entry_state, flag_state, record_action
from kb.faqs import entries as faqs
from kb.faqs import merge
from kb.health import flags, scores
from kb.models import Flag, FlagKind, FlagStatus
from kb.suggest.service import article_url

router = APIRouter(tags=["content health"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409)
}
_WRITE_ERRORS: dict[int | str, dict[str, object]] = {
    **_ERRORS,
    412: {"model": ErrorBody, "description": "If-Match names a version that is not current."},
}


def flag_views(session: Session, rows: Sequence[Flag]) -> list[FlagRead]:
    """API views of flags, with their entries' titles."""
    ids = sorted({f.entry_id for f in rows if f.entry_id is not None})
    entries = faqs.entries_by_ids(session, ids)
    return [FlagRead.of(f, entries.get(f.entry_id) if f.entry_id else None) for f in rows]


@router.get("/v1/flags", response_model=FlagList, responses=_ERRORS)
def list_flags(
    session: SessionDep,
    _key: EditorKey,
    kind: FlagKind | None = None,
    status: Annotated[str, Query(pattern="^(open|resolved|dismissed|all)$")] = "open",
    category: Annotated[str | None, Query(max_length=64)] = None,
    lang: Lang | None = None,
    faq_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FlagList:
    """Flags sorted by impact (score, highest first); open ones unless `status` says else."""
    rows, total = flags.list_flags(
        session,
        status=None if status == "all" else FlagStatus(status),
        kind=kind,
        category=category,
        language=lang,
        entry_id=faq_id,
        limit=limit,
        offset=offset,
    )
    return FlagList(items=flag_views(session, rows), total=total)


@router.get("/v1/flags/{flag_id}", response_model=FlagRead, responses=_ERRORS)
def get_flag(flag_id: int, session: SessionDep, _key: EditorKey) -> FlagRead:
    """One flag with its evidence."""
    return flag_views(session, [flags.get_flag_or_raise(session, flag_id)])[0]


@router.post("/v1/flags/{flag_id}/dismiss", response_model=FlagRead, responses=_ERRORS)
def dismiss_flag(
    flag_id: int, body: DismissRequest, session: SessionDep, key: EditorKey
) -> FlagRead:
    """Dismiss an open flag with a reason; it stays quiet until new evidence arrives."""
    before = flag_state(session, flag_id)
    flag = flags.dismiss_flag(session, flag_id, reason=body.reason, by=key.name)
    record_action(
        session,
        actor=Actor(key.name, "key"),
        action="flag.dismiss",
        target=f"flag:{flag_id}",
        before=before,
        after=flag_state(session, flag_id),
    )
    session.commit()
    return flag_views(session, [flag])[0]


def _status(kit: HealthKit, *, started: bool = False) -> RecomputeStatus:
    last = kit.last_report
    return RecomputeStatus(
        running=kit.busy,
        started=started,
        completed=kit.completed,
        finished_at=kit.finished_at,
        last_error=kit.last_error,
        last=RecomputeRead(**last.as_dict()) if last else None,
    )


@router.post(
    "/v1/health/recompute", response_model=RecomputeStatus, status_code=202, responses=_ERRORS
)
def recompute(kit: HealthDep, _key: EditorKey) -> RecomputeStatus:
    """Start recomputing every score and flag now, in the background (the server also does
    it periodically); `GET /v1/health/recompute` says when it is done and what it did."""
    return _status(kit, started=kit.recompute_in_background())


@router.get("/v1/health/recompute", response_model=RecomputeStatus, responses=_ERRORS)
def recompute_status(kit: HealthDep, _key: EditorKey) -> RecomputeStatus:
    """Whether a recompute runs, and what the last one did."""
    return _status(kit)


@router.get(
    "/v1/faqs/{faq_id}/health",
    response_model=ArticleHealthRead,
    responses=_ERRORS,
    tags=["faqs"],
)
def faq_health(
    faq_id: int, session: SessionDep, kit: HealthDep, _key: EditorKey
) -> ArticleHealthRead:
    """Scores per revision, before/after of each rewrite, the daily series and open flags."""
    report = scores.article_health(session, faq_id, kit.policy, tz=kit.tz, baseline=kit.baseline())
    return ArticleHealthRead.of(report, flag_views(session, flags.open_flags_of(session, faq_id)))


@router.post(
    "/v1/faqs/{faq_id}/rewrite",
    response_model=RewriteRead,
    status_code=201,
    responses=_WRITE_ERRORS,
    tags=["faqs"],
)
def rewrite_faq(
    faq_id: int,
    body: RewriteRequest,
    services: ServicesDep,
    session: SessionDep,
    key: EditorKey,
    if_match: IfMatch = None,
) -> RewriteRead:
    """A new revision of the question and answer (phrasings kept) that starts with clean
    numbers; resolves the article's helpfulness and acceptance flags. With `If-Match`, 412
    when the article's version is no longer that one."""
    faqs.lock_entry(session, faq_id, expected_version=if_match_version(if_match))
    before = entry_state(session, faq_id)
    result = flags.rewrite_entry(
        session,
        faq_id,
        question=body.question,
        answer=body.answer,
        author=key.name,
        reason=body.reason,
        flag_id=body.flag_id,
    )
    record_action(
        session,
        actor=Actor(key.name, "key"),
        action="faq.rewrite",
        target=f"faq:{faq_id}",
        before=before,
        after=entry_state(session, faq_id),
    )
    out = RewriteRead(
        faq_id=faq_id,
        revision_id=result.revision.id,
        revision=result.revision.number,
        resolved_flags=[f.id for f in result.resolved],
    )
    services.index.commit_and_sync(session, services.session_factory)
    return out


@router.post(
    "/v1/faqs/{faq_id}/merge", response_model=MergeRead, responses=_WRITE_ERRORS, tags=["faqs"]
)
def merge_faq(
    faq_id: int,
    body: MergeRequest,
    services: ServicesDep,
    session: SessionDep,
    key: EditorKey,
    if_match: IfMatch = None,
) -> MergeRead:
    """Merge this FAQ into `into`: its URL redirects (301) there, and its views, votes,
    imported history, phrasings and threads move over. 409 when either was merged meanwhile
    or `into` is not published; with `If-Match` (this FAQ's version), 412 when stale."""
    result = merge.merge_entries(
        session,
        faq_id,
        body.into,
        by=Actor(key.name, "key"),
        reason=body.reason or "",
        expected_version=if_match_version(if_match),
    )
    base = services.settings.base_url
    out = MergeRead(
        faq_id=faq_id,
        into=result.target.id,
        redirect=article_url(base, result.source.slug),
        url=article_url(base, result.target.slug),
        views_moved=result.views,
        votes_moved=result.votes,
        feedback_days_moved=result.feedback_days,
        phrasings_added=result.phrasings_added,
        threads_moved=result.threads,
        resolved_flags=result.resolved_flags,
    )
    services.index.commit_and_sync(session, services.session_factory)
    return out
