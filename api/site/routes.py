"""The public site's JSON API (no key) and the editors' view of its numbers (editor key)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from api.site.schemas import (
    FaqStats,
    PublicArticle,
    PublicArticleLink,
    PublicSearchHit,
    PublicSearchResponse,
    RevisionStatsRead,
    SearchGapList,
    SearchGapRead,
    ViewRequest,
    ViewResponse,
    ViewsBySource,
    VoteComment,
    VoteRequest,
    VoteResponse,
)
from api.site.state import CSRF_HEADER, SiteStateDep, VisitorDep, keep_visitor
from api.web.deps import EditorKey, ServicesDep, SessionDep
from api.web.markdown import render_markdown
from api.web.schemas import ErrorBody, Lang
from kb.errors import RateLimited
from kb.faqs import entries as faqs
from kb.models import FaqEntry, ViewSource, utcnow
from kb.site import articles as site_articles
from kb.site import search as site_search
from kb.site import stats as site_stats
from kb.site import views as site_views
from kb.site import visitors
from kb.site import votes as site_votes
from kb.suggest.service import article_url

router = APIRouter(tags=["public site"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 429, 503)
}


def _link(entry: FaqEntry, base_url: str, *, suffix: str = "") -> PublicArticleLink:
    rev = entry.current_revision
    return PublicArticleLink(
        id=entry.id,
        slug=entry.slug,
        lang=entry.language,
        category=entry.category,
        title=rev.question if rev else "",
        url=article_url(base_url, entry.slug) + suffix,
    )


def _views(views: dict[str, int]) -> ViewsBySource:
    by = {s.value: views.get(s.value, 0) for s in ViewSource}
    return ViewsBySource(**by, total=sum(by.values()))


@router.get("/v1/public/search", response_model=PublicSearchResponse, responses=_ERRORS)
def public_search(
    services: ServicesDep,
    session: SessionDep,
    state: SiteStateDep,
    visitor: VisitorDep,
    q: Annotated[str, Query(description="The search text.")] = "",
    lang: Annotated[Lang | None, Query(description="Language of the page searched from.")] = None,
    k: Annotated[int, Query(ge=1, le=site_search.SEARCH_K)] = site_search.SEARCH_K,
) -> PublicSearchResponse:
    """Search published articles with the site's hybrid retrieval (logged, no personal data).

    Results are cut by the calibrated confidence suggest uses: each says whether it is an
    `answer` (above the cut) or one of the `closest` articles below it.
    """
    query = site_search.require_query(q)
    state.address_limits.check_search(visitor.ip)  # 429 + Retry-After beyond the budget
    with state.search_gate.slot():  # 503 + Retry-After when the replica's slots are taken
        outcome = site_search.search_articles(
            session,
            services.index,
            services.calibration,
            query=query,
            language=site_search.search_language(query, lang),
            threshold=services.policy.threshold,
            k=k,
        )
    if visitor.countable:  # robots' searches say nothing about what customers look for
        with state.serial_writes():
            outcome.log = site_search.log_outcome(session, outcome)
            session.commit()
    suffix = f"?src=search&q_id={outcome.log.id}" if outcome.log else "?src=search"
    base = services.settings.base_url
    names = state.categories()
    return PublicSearchResponse(
        query=outcome.query,
        lang=outcome.language,
        search_id=outcome.log.id if outcome.log else None,
        good_result=outcome.good,
        confidence=outcome.confidence,
        threshold=outcome.threshold,
        results=[
            PublicSearchHit(
                **_link(r.entry, base, suffix=suffix).model_dump(),
                category_name=site_articles.category_name(
                    names, r.entry.category, outcome.language
                ),
                score=r.score,
                confidence=r.confidence,
                section="answer" if r.answer else "closest",
                snippet=r.snippet,
                matched_words=list(
                    dict.fromkeys(p.text for p in [*r.title_marks, *r.snippet_marks] if p.matched)
                ),
            )
            for r in outcome.results
        ],
    )


@router.get(
    "/v1/public/faqs/{slug}",
    response_model=PublicArticle,
    responses={
        **_ERRORS,
        301: {"description": "A merged article: Location is the article it became."},
    },
)
def public_article(
    request: Request,
    response: Response,
    slug: str,
    services: ServicesDep,
    session: SessionDep,
    state: SiteStateDep,
    visitor: VisitorDep,
) -> PublicArticle | RedirectResponse:
    """A published article by slug (a merged one answers 301 with the article it became).

    Reading it does not count a view: clients that show it report one with POST .../views.
    """
    entry = site_articles.get_article_or_raise(session, slug)
    if entry.slug != slug:  # merged: links already sent keep working, and say where it went
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/v1/public/faqs/{entry.slug}{query}", status_code=301)
    rev = entry.current_revision
    assert rev is not None
    base = services.settings.base_url
    nearest = state.related_ids(services.index, entry)
    vote = site_votes.current_vote(session, revision_id=rev.id, visitor=visitor.hash)
    keep_visitor(request, response, visitor)
    return PublicArticle(
        **_link(entry, base).model_dump(),
        category_name=site_articles.category_name(
            state.categories(), entry.category, entry.language
        ),
        revision_id=rev.id,
        revision=rev.number,
        updated_at=rev.created_at,
        answer_html=state.answer_html(rev.id, rev.answer, render_markdown),
        translations={
            lang: other.slug
            for lang, other in site_articles.translations_of(session, entry).items()
        },
        related=[_link(e, base) for e in site_articles.related_entries(session, entry, nearest)],
        csrf_token=visitor.csrf,
        your_vote=vote.helpful if vote else None,
    )


@router.post(
    "/v1/public/faqs/{slug}/vote",
    response_model=VoteResponse,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
)
def public_vote(
    slug: str,
    body: VoteRequest,
    services: ServicesDep,
    session: SessionDep,
    state: SiteStateDep,
    visitor: VisitorDep,
    x_csrf_token: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
) -> VoteResponse | JSONResponse:
    """Was this helpful? One vote per visitor and revision; voting again replaces it.

    Needs the visitor cookie and its token in the X-CSRF-Token header (both from
    GET /v1/public/faqs/{slug}); limited per visitor and per address (429 when exceeded).
    """
    entry = site_articles.get_article_or_raise(session, slug)
    try:
        state.limits.check(visitor=visitor.hash if visitor.sent_token else None, ip=visitor.ip)
    except RateLimited as exc:
        return JSONResponse(
            {"error": exc.code, "detail": exc.message},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    visitors.check_csrf(services.settings.visitor_secret, visitor.sent_token, x_csrf_token)
    with state.serial_writes():
        result = site_votes.cast_vote(
            session,
            entry=entry,
            revision_id=body.revision_id,
            visitor=visitor.hash,
            helpful=body.helpful,
            comment=body.comment,
        )
        session.commit()
    vote = result.vote
    return VoteResponse(
        faq_id=entry.id,
        revision_id=vote.revision_id,
        helpful=vote.helpful,
        comment_saved=vote.comment is not None,
        replaced=result.replaced,
        message="Your previous answer was replaced. Thank you."
        if result.replaced
        else "Thank you for your feedback.",
    )


@router.post("/v1/public/faqs/{slug}/views", response_model=ViewResponse, responses=_ERRORS)
def public_view(
    request: Request,
    response: Response,
    slug: str,
    body: ViewRequest,
    session: SessionDep,
    state: SiteStateDep,
    visitor: VisitorDep,
) -> ViewResponse:
    """Count a view of the revision a client showed (robots and repeats are not counted)."""
    entry = site_articles.get_article_or_raise(session, slug)
    revision = site_articles.get_revision_of(session, entry, body.revision_id)
    keep_visitor(request, response, visitor)
    if not visitor.countable:
        return ViewResponse(counted=False, reason="robot")
    source = ViewSource(body.src)
    if not state.may_count_view(visitor.ip, source):
        return ViewResponse(counted=False, reason="limited")
    with state.serial_writes():
        counted = site_views.record_view(
            session,
            entry=entry,
            revision_id=revision.id,
            source=source,
            visitor=visitor.hash,
            window=state.view_window,
            tz=state.tz,
        )
        if source == ViewSource.search and body.search_id is not None:
            site_search.record_search_click(session, search_id=body.search_id, entry_id=entry.id)
        session.commit()
    return ViewResponse(counted=counted, reason="counted" if counted else "repeat")


@router.get("/v1/faqs/{faq_id}/stats", response_model=FaqStats, responses=_ERRORS, tags=["faqs"])
def faq_stats(faq_id: int, session: SessionDep, _key: EditorKey) -> FaqStats:
    """Views by arrival source and helpful/not-helpful votes, per revision of an article."""
    entry = faqs.get_entry_or_raise(session, faq_id)
    rows = site_stats.entry_stats(session, faq_id)
    revisions = [
        RevisionStatsRead(
            revision_id=r.revision.id,
            number=r.revision.number,
            current=r.current,
            created_at=r.revision.created_at,
            reason=r.revision.reason,
            views=_views(r.views),
            helpful=r.helpful,
            not_helpful=r.not_helpful,
            helpful_ratio=r.helpful_ratio,
            comments=[VoteComment(text=text, at=at) for text, at in r.comments],
        )
        for r in rows
    ]
    totals: dict[str, int] = {}
    for r in rows:
        for source, count in r.views.items():
            totals[source] = totals.get(source, 0) + count
    return FaqStats(
        faq_id=entry.id,
        slug=entry.slug,
        lang=entry.language,
        current_revision_id=entry.current_revision_id,
        revisions=revisions,
        totals=_views(totals),
        helpful=sum(r.helpful for r in rows),
        not_helpful=sum(r.not_helpful for r in rows),
    )


@router.get("/v1/search-gaps", response_model=SearchGapList, responses=_ERRORS, tags=["faqs"])
def search_gaps(
    session: SessionDep,
    _key: EditorKey,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
    lang: Lang | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SearchGapList:
    """Site searches that found no good article, grouped by text: the content-gap signal."""
    since = utcnow() - timedelta(days=days)
    gaps = site_search.search_gaps(session, since=since, language=lang, limit=limit)
    return SearchGapList(
        since=since,
        items=[
            SearchGapRead(
                query=g.query,
                lang=g.language,
                searches=g.searches,
                clicked=g.clicked,
                last_at=g.last_at,
            )
            for g in gaps
        ],
    )
