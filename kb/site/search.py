"""Site search: query validation, search, the search log and its gaps. Callers commit."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from indexer.retrieval.confidence import ConfidenceModel
from indexer.retrieval.hybrid import SearchResult
from kb.errors import InvalidInput
from kb.faqs.entries import entries_by_ids
from kb.indexing import IndexManager
from kb.models import (
    EntryStatus,
    FaqEntry,
    SearchLog,
    utcnow,
)
from kb.site import highlight
from kb.site.highlight import Piece
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
    # The calibrated confidence that this article answers the search (see `hit_confidence`).
    confidence: float = 0.0
    # Above the cut: an answer; below it: one of the closest articles.
    answer: bool = False
    # The question and the snippet in pieces, the words the search matched marked.
    title_marks: list[Piece] = field(default_factory=list)
    snippet_marks: list[Piece] = field(default_factory=list)


@dataclass
class SiteSearch:
    """The outcome of one site search."""

    query: str
    language: str
    results: list[SearchHitView]
    confidence: float
    good: bool
    log: SearchLog | None = None
    threshold: float = 0.0

    @property
    def answers(self) -> list[SearchHitView]:
        """The results above the cut: the ones the confidence vouches for."""
        return [r for r in self.results if r.answer]

    @property
    def closest(self) -> list[SearchHitView]:
        """The results below the cut: the closest articles, offered as such."""
        return [r for r in self.results if not r.answer]


def hit_confidence(calibration: ConfidenceModel, result: SearchResult, position: int) -> float:
    """The calibrated confidence that the hit at `position` answers the query.

    The confidence model judges the top of a ranking (suggest's confidence); a lower hit is
    judged as if it were ranked first against the same competitors, so the hits above it
    count against it (its margin over the best of them is zero or less) and it passes only
    on its own strength. For the first hit this is exactly suggest's confidence.
    """
    hits = result.hits
    if position == 0:
        return calibration.confidence(result)
    reordered = [hits[position], *hits[:position], *hits[position + 1 :]]
    return calibration.confidence(replace(result, hits=reordered))


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
    """Hybrid search over published articles, cut by the calibrated confidence (log it
    with `log_outcome`).

    The results are in ranking order; the leading ones whose confidence reaches the
    threshold suggest abstains below are the answers, the rest the closest articles. `good`
    says whether the top result is an answer (suggest would not abstain); searches without
    a good result are the site's content-gap signal.
    """
    # The words people type into a search box are read as a post's are (one cleaner).
    result = index.search(clean_post(query) or query, k=k, language=language)
    terms = result.query_terms  # the analysed words BM25 searched with
    entries = entries_by_ids(session, [h.entry_id for h in result.hits])
    results = []
    cut_open = True  # the cut is one place in the ranking: answers first, then the closest
    for position, hit in enumerate(result.hits):
        entry = entries.get(hit.entry_id)
        # The database is the truth: an entry unpublished since the index saw it is dropped.
        usable = (
            entry is not None
            and entry.status == EntryStatus.published
            and entry.current_revision is not None
        )
        if not usable:
            if position == 0:
                cut_open = False  # the ranked winner vanished: do not vouch for the runner-up
            continue
        assert entry is not None and entry.current_revision is not None
        confidence = hit_confidence(calibration, result, position)
        cut_open = cut_open and confidence >= threshold
        revision = entry.current_revision
        text = highlight.snippet(revision.answer, terms, index.tokenizer)
        results.append(
            SearchHitView(
                entry=entry,
                score=round(hit.score, 6),
                snippet=text,
                confidence=round(confidence, 4),
                answer=cut_open,
                title_marks=highlight.mark(revision.question, terms, index.tokenizer),
                snippet_marks=highlight.mark(text, terms, index.tokenizer),
            )
        )
    # The top result's confidence is suggest's; 0 when the ranked winner vanished.
    winner = bool(results) and results[0].entry.id == result.hits[0].entry_id
    return SiteSearch(
        query=query,
        language=language,
        results=results,
        confidence=results[0].confidence if winner else 0.0,
        good=bool(results) and results[0].answer,
        threshold=threshold,
    )


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
