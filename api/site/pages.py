"""The public FAQ site: home, categories, articles with votes, and search (server-rendered)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from api.site import seo
from api.site.seo import PageMeta, site_origin
from api.site.state import SiteState, SiteStateDep, Visitor, VisitorDep, keep_visitor, page_headers
from api.state import Services
from api.web.deps import ServicesDep, SessionDep
from api.web.i18n import N_, Translator, languages, translator
from api.web.markdown import render_markdown
from api.web.templating import render
from kb.errors import Busy, CsrfRejected, DomainError, InvalidInput, RateLimited
from kb.models import FaqEntry, ViewSource, utcnow
from kb.site import articles as site_articles
from kb.site import search as site_search
from kb.site import sitemap, views, visitors
from kb.site import votes as site_votes
from kb.site.highlight import first_sentence

router = APIRouter(include_in_schema=False)
# robots.txt, sitemap.xml and the favicon are served with the pages.
router.include_router(seo.router)
FRAGMENT_HEADER = "x-requested-with"
POPULAR_DAYS = 30
# The closest articles shown below the cut (the JSON API gives every result).
CLOSEST_SHOWN = 5
ERROR_HEADINGS = {
    400: N_("We could not handle this request"),
    404: N_("Page not found"),
    429: N_("Too many requests"),
    503: N_("The site is busy"),
}
ERROR_HEADING = N_("Something went wrong")
HOME_DESCRIPTION = N_(
    "Answers to common questions about Sorami Mobile: plans and data, SIM and eSIM, billing, "
    "orders and your account. Search the help center or browse by category."
)
CATEGORY_DESCRIPTION = N_(
    "%(category)s: %(n)s articles answering common questions in the Sorami Mobile Help Center."
)
SEARCH_DESCRIPTION = N_("Search the Sorami Mobile Help Center for answers to your questions.")

__all__ = ["error_page", "router"]


def other_language(language: str) -> str:
    """The site's other language."""
    return "en" if language == "ja" else "ja"


def _site_language(language: str) -> str:
    return language if language in languages() else "en"


def _page_language(request: Request, lang: str | None) -> str:
    """The `lang` parameter (InvalidInput when unknown), else the browser's preference."""
    return visitors.parse_language(lang) or visitors.negotiate_language(
        request.headers.get("accept-language")
    )


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    private: bool = False,
    vary_language: bool = False,
) -> Response:
    response = render(request, name, context, status_code=status)
    if vary_language:
        response.headers["Vary"] = "Accept-Language"
    return page_headers(response, private=private)


def _switch(url: str, language: str) -> dict[str, str]:
    # Each language is named in itself: a reader of the other language recognises it.
    return {"url": url, "lang": language, "label": translator(language).language_name(language)}


def error_page(request: Request, status: int, message: str) -> Response:
    """The friendly HTML error page, in the visitor's language."""
    lang = request.query_params.get("lang")
    language = (
        lang
        if lang in languages()
        else visitors.negotiate_language(request.headers.get("accept-language"))
    )
    tr = translator(language)
    heading = tr.gettext(ERROR_HEADINGS.get(status, ERROR_HEADING))
    if status == 404:
        text = tr.gettext("The page you are looking for does not exist or was removed.")
        detail: str | None = message
    elif status == 400:
        text, detail = _check_input(tr, message), None
    elif status == 503:
        text, detail = (
            tr.gettext("Many searches are running right now. Please try again in a moment."),
            None,
        )
    else:
        text, detail = message, None
    context = {
        "status": status,
        "heading": heading,
        "message": text,
        "detail": detail,
        "lang": language,
        "switch": _switch(f"/?lang={other_language(language)}", other_language(language)),
        "meta": PageMeta(noindex=True),
    }
    return _render(request, "error.html", context, status=status)


# -- home and categories -----------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    session: SessionDep,
    state: SiteStateDep,
    lang: str | None = None,
) -> Response:
    """Search box, popular articles and the categories with their first articles."""
    language = _page_language(request, lang)
    names = state.categories()
    today = utcnow().astimezone(state.tz).date()
    other = other_language(language)
    origin = site_origin(request, state.settings)
    context = {
        "lang": language,
        "other": other,
        "switch": _switch(f"/?lang={other}", other),
        "meta": seo.home_meta(origin, language, translator(language).gettext(HOME_DESCRIPTION)),
        "categories": site_articles.list_categories(session, language=language, names=names),
        "popular": site_articles.popular_entries(
            session, language=language, since=today - timedelta(days=POPULAR_DAYS)
        ),
    }
    return _render(request, "home.html", context, vary_language=lang is None)


@router.get("/category/{key}", response_class=HTMLResponse)
def category(
    request: Request,
    key: str,
    session: SessionDep,
    state: SiteStateDep,
    lang: str | None = None,
) -> Response:
    """Every published article of one category in one language."""
    language = _page_language(request, lang)
    names = state.categories()
    site_articles.get_category_or_raise(session, names, key)
    other = other_language(language)
    name = site_articles.category_name(names, key, language)
    entries = site_articles.category_entries(session, category=key, language=language)
    description = translator(language).gettext(CATEGORY_DESCRIPTION, category=name, n=len(entries))
    context = {
        "lang": language,
        "key": key,
        "other": other,
        "name": name,
        "entries": entries,
        "switch": _switch(f"/category/{key}?lang={other}", other),
        "meta": seo.category_meta(
            site_origin(request, state.settings),
            key,
            language,
            sitemap.category_languages(session, key),
            description,
        ),
    }
    return _render(request, "category.html", context, vary_language=lang is None)


# -- articles and votes ------------------------------------------------------------------


def _article_context(
    request: Request,
    session: Session,
    services: Services,
    state: SiteState,
    visitor: Visitor,
    entry: FaqEntry,
    *,
    notice: str | None = None,
) -> dict[str, Any]:
    revision = entry.current_revision
    assert revision is not None  # get_article_or_raise guarantees it
    language = _site_language(entry.language)
    other = site_articles.translation_of(session, entry)
    other_lang = other_language(language)
    switch_url = f"/faq/{other.slug}" if other else f"/?lang={other_lang}"
    switch = _switch(switch_url, other_lang)
    nearest = state.related_ids(services.index, entry)
    origin = site_origin(request, services.settings)
    meta = PageMeta(
        canonical=f"{origin}/faq/{entry.slug}",
        alternates=seo.article_alternates(origin, sitemap.article_alternates(session, entry)),
        description=first_sentence(revision.answer),
    )
    return {
        "lang": language,
        "meta": meta,
        "entry": entry,
        "revision": revision,
        "answer_html": state.answer_html(revision.id, revision.answer, render_markdown),
        "updated": revision.created_at.astimezone(state.tz).date().isoformat(),
        "other": other,
        # Offered in the translation's own language, to the reader of that language.
        "read_in_other": translator(other_lang).gettext(
            "Read this article in %(language)s",
            language=translator(other_lang).language_name(other_lang),
        ),
        "switch": switch,
        "category_name": site_articles.category_name(state.categories(), entry.category, language),
        "related": site_articles.related_entries(session, entry, nearest, limit=5),
        "vote": site_votes.current_vote(session, revision_id=revision.id, visitor=visitor.hash),
        "csrf": visitor.csrf,
        "notice": notice,
    }


@router.get("/faq/{slug}", response_class=HTMLResponse)
def article(
    request: Request,
    slug: str,
    services: ServicesDep,
    session: SessionDep,
    state: SiteStateDep,
    visitor: VisitorDep,
    src: str | None = None,
    q_id: str | None = None,
) -> Response:
    """One article; a person's view is counted for the revision shown (once per 30 min)."""
    entry = site_articles.get_article_or_raise(session, slug)
    if entry.slug != slug:  # merged into another article: keep old links working
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/faq/{entry.slug}{query}", status_code=301)
    revision = entry.current_revision
    assert revision is not None
    source = visitors.parse_source(src)
    # Beyond its address's budget a view is shown but not counted (floods do not inflate).
    if visitor.countable and state.may_count_view(visitor.ip, source):
        search_id = visitors.parse_int(q_id)
        with state.serial_writes():
            views.record_view(
                session,
                entry=entry,
                revision_id=revision.id,
                source=source,
                visitor=visitor.hash,
                window=state.view_window,
                tz=state.tz,
            )
            if source == ViewSource.search and search_id is not None:
                site_search.record_search_click(session, search_id=search_id, entry_id=entry.id)
            session.commit()
    context = _article_context(request, session, services, state, visitor, entry)
    response = _render(request, "article.html", context, private=True)
    return keep_visitor(request, response, visitor)


def _check_input(tr: Translator, detail: str) -> str:
    return tr.gettext("Please check your input: %(detail)s", detail=detail)


def _vote_notice(tr: Translator, exc: DomainError) -> tuple[int, str]:
    if isinstance(exc, RateLimited):
        return 429, tr.gettext(
            "Too many answers were sent from your browser or network. "
            "Please wait %(n)s seconds and try again.",
            n=exc.retry_after,
        )
    if isinstance(exc, CsrfRejected):
        return 403, tr.gettext("This page has expired. Please reload it and try again.")
    return 400, _check_input(tr, exc.message)


@router.post("/faq/{slug}/vote", response_class=HTMLResponse)
def vote(
    request: Request,
    slug: str,
    services: ServicesDep,
    session: SessionDep,
    state: SiteStateDep,
    visitor: VisitorDep,
    csrf_token: Annotated[str | None, Form()] = None,
    revision_id: Annotated[str | None, Form()] = None,
    helpful: Annotated[str | None, Form()] = None,
    comment: Annotated[str | None, Form()] = None,
) -> Response:
    """The "was this helpful?" form: works as a plain POST, and as a fragment for vote.js."""
    entry = site_articles.get_article_or_raise(session, slug)
    fragment = request.headers.get(FRAGMENT_HEADER, "").lower() == "fetch"
    try:
        state.limits.check(visitor=visitor.hash if visitor.sent_token else None, ip=visitor.ip)
        visitors.check_csrf(services.settings.visitor_secret, visitor.sent_token, csrf_token)
        with state.serial_writes():
            site_votes.cast_vote(
                session,
                entry=entry,
                revision_id=visitors.parse_id(revision_id, "revision_id"),
                visitor=visitor.hash,
                helpful=site_votes.parse_helpful(helpful),
                comment=comment,
            )
            session.commit()
    except (RateLimited, CsrfRejected, InvalidInput) as exc:
        session.rollback()
        status, notice = _vote_notice(translator(_site_language(entry.language)), exc)
        context = _article_context(request, session, services, state, visitor, entry, notice=notice)
        response = _render(
            request,
            "_feedback.html" if fragment else "article.html",
            context,
            status=status,
            private=True,
        )
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return keep_visitor(request, response, visitor)
    if fragment:
        context = _article_context(request, session, services, state, visitor, entry)
        return _render(request, "_feedback.html", context, private=True)
    # Post/redirect/get: a reload does not resend the vote; the page shows the stored vote.
    return RedirectResponse(f"/faq/{entry.slug}#feedback", status_code=303)


# -- search ------------------------------------------------------------------------------


def _search_meta(request: Request, state: SiteState, language: str, query: str) -> PageMeta:
    """Result pages are not for search engines' indexes (their links are followed)."""
    params = {"lang": language, **({"q": query} if query else {})}
    return PageMeta(
        canonical=site_origin(request, state.settings) + "/search?" + urlencode(params),
        description=translator(language).gettext(SEARCH_DESCRIPTION),
        noindex=True,
    )


@router.get("/search", response_class=HTMLResponse)
def search(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    state: SiteStateDep,
    visitor: VisitorDep,
    q: str | None = None,
    lang: str | None = None,
) -> Response:
    """Search results from the same hybrid retrieval as suggest, cut by its calibrated
    confidence: the answers, then the closest articles; logged without personal data."""
    page_language = _page_language(request, lang)
    query = site_search.validate_query(q)
    language = site_search.search_language(query, page_language) if query else page_language
    context: dict[str, Any] = {
        "lang": language,
        "q": query,
        "other": other_language(language),
        "other_name": translator(language).language_name(other_language(language)),
        "answers": [],
        "closest": [],
        "good": False,
        "search_id": None,
        "category_names": {},
        "meta": _search_meta(request, state, language, query),
    }
    if query:
        try:
            state.address_limits.check_search(visitor.ip)
        except RateLimited as exc:  # beyond the address's budget of searches
            page = error_page(request, 429, exc.message)
            page.headers["Retry-After"] = str(exc.retry_after)
            return page
        try:
            with state.search_gate.slot():
                outcome = site_search.search_articles(
                    session,
                    services.index,
                    services.calibration,
                    query=query,
                    language=language,
                    threshold=services.policy.threshold,
                )
        except Busy as exc:  # this replica runs as many searches as it allows
            page = error_page(request, 503, exc.message)
            page.headers["Retry-After"] = str(exc.retry_after)
            return page
        if visitor.countable:
            with state.serial_writes():
                outcome.log = site_search.log_outcome(session, outcome)
                session.commit()
        names = state.categories()
        context.update(
            answers=outcome.answers,
            closest=outcome.closest[:CLOSEST_SHOWN],
            good=outcome.good,
            search_id=outcome.log.id if outcome.log else None,
            category_names={
                r.entry.category: site_articles.category_name(names, r.entry.category, language)
                for r in outcome.results
            },
        )
    other = context["other"]
    switch_url = f"/search?lang={other}" + (f"&q={quote(query, safe='')}" if query else "")
    context["switch"] = _switch(switch_url, other)
    return _render(request, "search.html", context, vary_language=lang is None)
