"""The public FAQ site: home, categories, articles and search (server-rendered)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from api.deps import ServicesDep, SessionDep
from api.render import render_markdown
from kb import faqs
from kb.content import load_categories
from kb.errors import NotFound
from kb.models import EntryStatus, FaqEntry
from kb.text import detect_language, normalize_text

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")

UI = {
    "en": {
        "title": "Help Center",
        "search": "Search",
        "search_label": "Search the help center",
        "categories": "Categories",
        "results": "Search results",
        "no_results": "No article matches your words well. These are the closest:",
        "other_lang": "日本語",
        "related": "Related articles",
    },
    "ja": {
        "title": "ヘルプセンター",
        "search": "検索",
        "search_label": "ヘルプセンターを検索",
        "categories": "カテゴリ",
        "results": "検索結果",
        "no_results": "ぴったりの記事が見つかりませんでした。近い記事はこちらです:",
        "other_lang": "English",
        "related": "関連する記事",
    },
}


def _lang(value: str | None) -> str:
    return value if value in UI else "en"


def error_page(request: Request, status: int, message: str) -> Response:
    """A friendly HTML error page."""
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "lang": "en", "ui": UI["en"]},
        status_code=status,
    )


def _categories(services: ServicesDep) -> dict[str, dict[str, object]]:
    return load_categories(services.settings.content_dir)


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    lang: Annotated[str | None, Query()] = None,
) -> Response:
    """Categories with their articles, and a search box."""
    language = _lang(lang)
    entries, _ = faqs.list_entries(session, language=language, limit=1000)
    names = _categories(services)
    grouped: dict[str, list[FaqEntry]] = {}
    for e in entries:
        grouped.setdefault(e.category, []).append(e)
    order = sorted(grouped, key=lambda c: (names.get(c, {}).get("order", 99), c))
    cats = [(c, names.get(c, {}).get(language, c), grouped[c]) for c in order]
    return templates.TemplateResponse(
        request, "home.html", {"lang": language, "ui": UI[language], "categories": cats}
    )


@router.get("/faq/{slug}", response_class=HTMLResponse)
def article(request: Request, slug: str, services: ServicesDep, session: SessionDep) -> Response:
    """One article with its answer rendered from Markdown."""
    entry = faqs.get_entry_by_slug(session, slug)
    if entry is None or entry.status != EntryStatus.published or entry.current_revision is None:
        raise NotFound(f"no article at /faq/{slug}")
    other = None
    if entry.translation_group:
        other = session.scalar(
            select(FaqEntry).where(
                FaqEntry.translation_group == entry.translation_group,
                FaqEntry.id != entry.id,
                FaqEntry.status == EntryStatus.published,
            )
        )
    language = _lang(entry.language)
    return templates.TemplateResponse(
        request,
        "article.html",
        {
            "lang": language,
            "ui": UI[language],
            "entry": entry,
            "revision": entry.current_revision,
            "answer_html": render_markdown(entry.current_revision.answer),
            "other": other,
            "category_name": _categories(services)
            .get(entry.category, {})
            .get(language, entry.category),
        },
    )


@router.get("/search", response_class=HTMLResponse)
def search(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    q: Annotated[str, Query(max_length=500)] = "",
    lang: Annotated[str | None, Query()] = None,
) -> Response:
    """Search results from the same hybrid retrieval that suggest uses."""
    query = normalize_text(q)
    language = _lang(lang or (detect_language(query) if query else None))
    results: list[FaqEntry] = []
    good = False
    if query:
        res = services.index.search(query, k=10, language=language)
        found = faqs.entries_by_ids(session, [h.entry_id for h in res.hits])
        results = [
            found[h.entry_id]
            for h in res.hits
            if h.entry_id in found and found[h.entry_id].status == EntryStatus.published
        ]
        good = services.calibration.confidence(res) >= services.policy.threshold
    return templates.TemplateResponse(
        request,
        "search.html",
        {"lang": language, "ui": UI[language], "q": query, "results": results, "good": good},
    )
