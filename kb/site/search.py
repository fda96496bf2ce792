"""Site search: query validation, search, the search log and its gaps. Callers commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from indexer.retrieval.confidence import ConfidenceModel
from kb.errors import InvalidInput
from kb.faqs.entries import entries_by_ids
from kb.indexing import IndexManager, first_passage
from kb.models import (
    EntryStatus,
    FaqEntry,
    SearchLog,
    utcnow,
)
from kb.text.cleaning import clean_post
from kb.text.language import detect_language, normalize_text
from kb.text.personal_data import scrub_personal_data

MAX_QUERY_CHARS = 500
# Stored search text is cut shorter than accepted text: the log is for spotting topics.
MAX_LOGGED_QUERY_CHARS = 200
SEARCH_K = 10
# A click is credited to a search only this long after it: older ids are stale or forged.
SEARCH_CLICK_WINDOW = timedelta(hours=2)
# -- search ------------------------------------------------------------------------------


def validate_query(q: str | None) -> str:
    """A search text, normalised; InvalidInput when longer than the site accepts."""
    text = normalize_text(q or "")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"the search text is longer than {MAX_QUERY_CHARS} characters")
    return text


def require_query(q: str | None) -> str:
    """A search text that must not be empty (the JSON API has no empty-search page)."""
    text = validate_query(q)
    if not text:
        raise InvalidInput("q must not be empty")
    return text


def search_language(query: str, page_language: str | None) -> str:
    """Japanese script searches Japanese articles; anything else the page's language.

    Customers on the Japanese site type Latin words too ("eSIM", "APN"), so only the
    presence of Japanese script overrides the language the visitor was reading in.
    """
    if query and detect_language(query) in ("ja", "zh"):  # kanji alone reads as zh
        return "ja"
    return page_language or "en"


@dataclass
class SearchHitView:
    """One search result as the site shows it."""

    entry: FaqEntry
    score: float
    snippet: str


@dataclass
class SiteSearch:
    """The outcome of one site search."""

    query: str
    language: str
    results: list[SearchHitView]
    confidence: float
    good: bool
    log: SearchLog | None = None


def search_articles(
    session: Session,
    index: IndexManager,
    calibration: ConfidenceModel,
    *,
    query: str,
    language: str,
    threshold: float,
    k: int = SEARCH_K,
) -> SiteSearch:
    """Hybrid search over published articles (log it with `log_outcome`).

    `good` says whether the calibrated confidence of the top result reaches the threshold
    suggest uses; searches without a good result are the site's content-gap signal.
    """
    # The words people type into a search box are read as a post's are (one cleaner).
    result = index.search(clean_post(query) or query, k=k, language=language)
    entries = entries_by_ids(session, [h.entry_id for h in result.hits])
    results = []
    for hit in result.hits:
        entry = entries.get(hit.entry_id)
        # The database is the truth: an entry unpublished since the index saw it is dropped.
        if entry is None or entry.status != EntryStatus.published:
            continue
        if entry.current_revision is None:
            continue
        snippet = first_passage(entry.current_revision.answer, 160)
        results.append(SearchHitView(entry=entry, score=round(hit.score, 6), snippet=snippet))
    confidence = calibration.confidence(result) if results else 0.0
    if results and result.hits and results[0].entry.id != result.hits[0].entry_id:
        confidence = 0.0  # the ranked winner vanished: do not vouch for the runner-up
    good = bool(results) and confidence >= threshold
    outcome = SiteSearch(
        query=query,
        language=language,
        results=results,
        confidence=round(confidence, 4),
        good=good,
    )
    return outcome


def log_outcome(session: Session, outcome: SiteSearch) -> SearchLog:
    """Log a search's text and outcome (see `log_search`)."""
    return log_search(
        session,
        query=outcome.query,
        language=outcome.language,
        result_count=len(outcome.results),
        top_score=outcome.confidence if outcome.results else None,
        good_result=outcome.good,
    )


def log_search(
    session: Session,
    *,
    query: str,
    language: str,
    result_count: int,
    top_score: float | None,
    good_result: bool,
) -> SearchLog:
    """Store a search: normalised, personal data masked, truncated; no IP, no cookie."""
    text = scrub_personal_data(normalize_text(query))[:MAX_LOGGED_QUERY_CHARS]
    row = SearchLog(
        query=text,
        language=language,
        result_count=result_count,
        top_score=top_score,
        good_result=good_result,
    )
    session.add(row)
    session.flush()
    return row


def record_search_click(
    session: Session, *, search_id: int, entry_id: int, now: datetime | None = None
) -> bool:
    """Credit the first article opened from a search's results; False when not credited."""
    now = now or utcnow()
    done = session.execute(
        update(SearchLog)
        .where(
            SearchLog.id == search_id,
            SearchLog.clicked_entry_id.is_(None),
            SearchLog.created_at >= now - SEARCH_CLICK_WINDOW,
            SearchLog.result_count > 0,
        )
        .values(clicked_entry_id=entry_id)
    )
    return bool(getattr(done, "rowcount", 0))


@dataclass
class SearchGap:
    """A search text that found no good article, and how often it was searched."""

    query: str
    language: str
    searches: int
    clicked: int
    last_at: datetime


def search_gaps(
    session: Session, *, since: datetime, language: str | None = None, limit: int = 50
) -> list[SearchGap]:
    """Searches without a good result since a time, grouped by text, most frequent first."""
    searches = func.count(SearchLog.id)
    query = (
        select(
            SearchLog.query,
            SearchLog.language,
            searches,
            func.count(SearchLog.clicked_entry_id),
            func.max(SearchLog.created_at),
        )
        .where(SearchLog.good_result.is_(False), SearchLog.created_at >= since)
        .group_by(SearchLog.query, SearchLog.language)
        .order_by(searches.desc(), SearchLog.query)
        .limit(limit)
    )
    if language:
        query = query.where(SearchLog.language == language)
    return [
        SearchGap(text, lang, int(count), int(clicked), last_at)
        for text, lang, count, clicked, last_at in session.execute(query)
    ]
