"""The public FAQ site's domain: articles as visitors see them, page views, helpful votes,
site searches and the per-revision statistics editors read. Callers commit.

Visitors are anonymous. The site gives each browser a random token in a cookie; only an
HMAC of it (keyed by a server secret) is stored, so the database holds nothing that leads
back to a person, and the same HMAC key derives the vote form's anti-forgery token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Generic, TypeVar

from sqlalchemy import Insert, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from indexer.confidence import ConfidenceModel
from kb.errors import CsrfRejected, IndexNotReady, InvalidInput, NotFound, RateLimited
from kb.faqs import entries_by_ids
from kb.indexing import IndexManager, first_passage
from kb.models import (
    EntryStatus,
    FaqEntry,
    FaqRevision,
    PageView,
    SearchLog,
    ViewSource,
    VisitorSeen,
    Vote,
    utcnow,
)
from kb.personal_data import scrub_personal_data
from kb.text import LANGUAGES, detect_language, normalize_text

MAX_QUERY_CHARS = 500
# Stored search text is cut shorter than accepted text: the log is for spotting topics.
MAX_LOGGED_QUERY_CHARS = 200
MAX_COMMENT_CHARS = 1000
SEARCH_K = 10
# A click is credited to a search only this long after it: older ids are stale or forged.
SEARCH_CLICK_WINDOW = timedelta(hours=2)
MAX_MERGE_HOPS = 5

# -- visitors ----------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def new_visitor_token() -> str:
    """A fresh random visitor token (the cookie value)."""
    return secrets.token_urlsafe(24)


def is_valid_visitor_token(token: str | None) -> bool:
    """Whether a cookie value looks like a token this site issued."""
    return bool(token) and _TOKEN_RE.match(token or "") is not None


def _mac(secret: str, purpose: str, token: str) -> str:
    # One key, separate purposes: a leaked CSRF token says nothing about the stored hash.
    return hmac.new(secret.encode(), f"{purpose}:{token}".encode(), hashlib.sha256).hexdigest()


def visitor_hash(secret: str, token: str) -> str:
    """The stored identity of a visitor: HMAC-SHA256 of the cookie token (64 hex chars)."""
    return _mac(secret, "visitor", token)


def csrf_token(secret: str, token: str) -> str:
    """The anti-forgery token that vote forms and the JSON vote endpoint must echo."""
    return _mac(secret, "csrf", token)[:40]


def check_csrf(secret: str, token: str | None, submitted: str | None) -> None:
    """Raise CsrfRejected unless `submitted` is the token derived from the visitor cookie."""
    if not is_valid_visitor_token(token):
        raise CsrfRejected(
            "your browser did not send the site's cookie; allow cookies for this site, "
            "reload the page and try again"
        )
    expected = csrf_token(secret, token or "")
    if not submitted or not hmac.compare_digest(expected, submitted.strip()):
        raise CsrfRejected(
            "the form is missing its security token or the token has expired; "
            "reload the page and try again"
        )


# Known robots, crawlers, link previewers, monitors and HTTP libraries. Matched anywhere in
# the User-Agent, case-insensitively. Headless browsers are deliberately absent: they are
# how people test the site, and a robot that wants to pass as a browser will anyway.
BOT_PATTERNS: tuple[str, ...] = (
    r"(?<!cu)bot\b",  # googlebot, bingbot, twitterbot, ... (but not the CUBOT phone brand)
    r"crawl",
    r"spider",
    r"slurp",
    r"archiver",
    r"facebookexternalhit",
    r"facebookcatalog",
    r"mediapartners-google",
    r"adsbot",
    r"google-inspectiontool",
    r"googleother",
    r"feedfetcher",
    r"embedly",
    r"quora link preview",
    r"outbrain",
    r"vkshare",
    r"whatsapp",
    r"skypeuripreview",
    r"bitlybot",
    r"w3c_validator",
    r"validator\.nu",
    r"lighthouse",
    r"pagespeed",
    r"gtmetrix",
    r"pingdom",
    r"uptime",
    r"statuscake",
    r"monitor",
    r"prerender",
    r"phantomjs",
    r"ahrefs",
    r"semrush",
    r"mj12",
    r"petalsearch",
    r"yandex",
    r"baidu",
    r"sogou",
    r"bytespider",
    r"gptbot",
    r"ccbot",
    r"anthropic-ai",
    r"claude-web",
    r"perplexity",
    r"cohere-ai",
    r"diffbot",
    r"curl/",
    r"wget",
    r"libwww",
    r"python-requests",
    r"python-urllib",
    r"python-httpx",
    r"aiohttp",
    r"httpie",
    r"go-http-client",
    r"java/",
    r"okhttp",
    r"apache-httpclient",
    r"node-fetch",
    r"axios/",
    r"undici",
    r"scrapy",
    r"postmanruntime",
    r"insomnia",
)
_BOT_RE = re.compile("|".join(BOT_PATTERNS), re.I)


def is_bot(user_agent: str | None) -> bool:
    """Whether a User-Agent is a known robot; an empty one counts as a robot too."""
    if not user_agent or not user_agent.strip():
        return True
    return _BOT_RE.search(user_agent) is not None


def is_prefetch(*purpose_headers: str | None) -> bool:
    """Whether a request is a speculative prefetch (Sec-Purpose, Purpose, X-Moz headers)."""
    return any(h and "prefetch" in h.lower() for h in purpose_headers)


def negotiate_language(accept_language: str | None, default: str = "ja") -> str:
    """The first of the site's languages in an Accept-Language header, by preference."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, position, primary))
    return min(ranked)[2] if ranked else default


def parse_language(value: str | None) -> str | None:
    """A `lang` parameter: None when absent, InvalidInput when not a site language."""
    if value is None or value == "":
        return None
    if value not in LANGUAGES:
        raise InvalidInput(f"lang must be one of {', '.join(LANGUAGES)}")
    return value


def parse_source(value: str | None) -> ViewSource:
    """The arrival source of a `src` parameter; anything unknown counts as direct.

    Lenient on purpose: social apps append and mangle parameters, and a reader who
    arrives through a mangled link must still get the article.
    """
    try:
        return ViewSource((value or "").strip().lower())
    except ValueError:
        return ViewSource.direct


def parse_id(value: str | None, name: str) -> int | None:
    """An optional id field of a form: None when absent, InvalidInput when malformed."""
    if value is None or not value.strip():
        return None
    number = parse_int(value)
    if number is None:
        raise InvalidInput(f"{name} must be a positive whole number")
    return number


def parse_int(value: str | None) -> int | None:
    """A positive integer parameter, or None when absent or malformed."""
    if value is None or not value.strip().isdigit():
        return None
    number = int(value.strip())
    return number if 0 < number < 2**31 else None


# Personal data (comments, search logs) is masked by kb.personal_data.scrub_personal_data,
# the one implementation for the whole service.


# -- articles ----------------------------------------------------------------------------


def get_article_or_raise(session: Session, slug: str) -> FaqEntry:
    """The published entry at `slug`, following merges; NotFound for anything else.

    A merged entry resolves to the entry it was merged into, so links agents already sent
    keep working (the caller redirects when the slug differs).
    """
    entry = session.scalar(select(FaqEntry).where(FaqEntry.slug == slug))
    hops = 0
    while entry is not None and entry.status == EntryStatus.merged and entry.merged_into_id:
        hops += 1
        if hops > MAX_MERGE_HOPS:
            entry = None
            break
        entry = session.get(FaqEntry, entry.merged_into_id)
    if entry is None or entry.status != EntryStatus.published or entry.current_revision is None:
        raise NotFound(f"there is no article at /faq/{slug}")
    return entry


def get_revision_of(session: Session, entry: FaqEntry, revision_id: int | None) -> FaqRevision:
    """The entry's revision `revision_id` (the current one when None); InvalidInput if foreign."""
    if revision_id is None:
        if entry.current_revision is None:
            raise NotFound(f"FAQ {entry.id} has no published text")
        return entry.current_revision
    revision = session.get(FaqRevision, revision_id)
    if revision is None or revision.entry_id != entry.id:
        raise InvalidInput(f"revision {revision_id} is not a revision of this article")
    return revision


def translation_of(session: Session, entry: FaqEntry) -> FaqEntry | None:
    """The published entry in the other language of the same translation group."""
    others = translations_of(session, entry)
    return next((e for lang, e in others.items() if lang != entry.language), None)


def translations_of(session: Session, entry: FaqEntry) -> dict[str, FaqEntry]:
    """Language → the published entry of the same translation group (the entry excluded)."""
    if not entry.translation_group:
        return {}
    rows = session.scalars(
        select(FaqEntry)
        .where(
            FaqEntry.translation_group == entry.translation_group,
            FaqEntry.id != entry.id,
            FaqEntry.status == EntryStatus.published,
        )
        .order_by(FaqEntry.id)
    )
    out: dict[str, FaqEntry] = {}
    for other in rows:
        out.setdefault(other.language, other)
    return out


def _published(entries: Mapping[int, FaqEntry], ids: Sequence[int]) -> list[FaqEntry]:
    return [
        entries[i]
        for i in ids
        if i in entries
        and entries[i].status == EntryStatus.published
        and entries[i].current_revision is not None
    ]


def related_ids(index: IndexManager, entry: FaqEntry, *, limit: int) -> list[int]:
    """Ids of the nearest articles in the entry's language by the search index (itself excluded).

    Empty when the index is not ready: related articles are a nicety, never a failure.
    """
    if entry.current_revision is None:
        return []
    try:
        result = index.search(entry.current_revision.question, k=limit + 4, language=entry.language)
    except IndexNotReady:
        return []
    return [h.entry_id for h in result.hits if h.entry_id != entry.id]


def related_entries(
    session: Session, entry: FaqEntry, nearest_ids: Sequence[int], *, limit: int = 5
) -> list[FaqEntry]:
    """Related published articles: nearest by the index first, then the same category."""
    found = _published(entries_by_ids(session, list(nearest_ids)), list(nearest_ids))
    chosen = [e for e in found if e.id != entry.id and e.language == entry.language][:limit]
    if len(chosen) < limit:
        taken = {entry.id, *(e.id for e in chosen)}
        same_category = session.scalars(
            select(FaqEntry)
            .where(
                FaqEntry.category == entry.category,
                FaqEntry.language == entry.language,
                FaqEntry.status == EntryStatus.published,
                FaqEntry.id.not_in(taken),
            )
            .order_by(FaqEntry.id)
            .limit(limit - len(chosen))
        )
        chosen.extend(e for e in same_category if e.current_revision is not None)
    return chosen


@dataclass
class CategorySummary:
    """A category as the site lists it."""

    key: str
    name: str
    count: int
    entries: list[FaqEntry]


def category_name(names: Mapping[str, Mapping[str, object]], key: str, language: str) -> str:
    """The display name of a category in `language` (its key when unnamed)."""
    value = names.get(key, {}).get(language)
    return str(value) if value else key


def _category_order(names: Mapping[str, Mapping[str, object]], key: str) -> tuple[int, str]:
    order = names.get(key, {}).get("order", 999)
    return (order if isinstance(order, int) else 999, key)


def list_categories(
    session: Session,
    *,
    language: str,
    names: Mapping[str, Mapping[str, object]],
    per_category: int = 5,
) -> list[CategorySummary]:
    """Categories with published articles in `language`, in the configured order."""
    entries = session.scalars(
        select(FaqEntry)
        .where(FaqEntry.language == language, FaqEntry.status == EntryStatus.published)
        .order_by(FaqEntry.id)
    )
    grouped: dict[str, list[FaqEntry]] = {}
    for e in entries:
        if e.current_revision is not None:
            grouped.setdefault(e.category, []).append(e)
    return [
        CategorySummary(
            key=key,
            name=category_name(names, key, language),
            count=len(grouped[key]),
            entries=grouped[key][:per_category],
        )
        for key in sorted(grouped, key=lambda k: _category_order(names, k))
    ]


def category_entries(session: Session, *, category: str, language: str) -> list[FaqEntry]:
    """Published articles of one category in one language."""
    rows = session.scalars(
        select(FaqEntry)
        .where(
            FaqEntry.category == category,
            FaqEntry.language == language,
            FaqEntry.status == EntryStatus.published,
        )
        .order_by(FaqEntry.id)
    )
    return [e for e in rows if e.current_revision is not None]


def get_category_or_raise(
    session: Session, names: Mapping[str, Mapping[str, object]], category: str
) -> str:
    """The category key if it is configured or has a published article; NotFound otherwise."""
    if category in names:
        return category
    found = session.scalar(
        select(FaqEntry.id)
        .where(FaqEntry.category == category, FaqEntry.status == EntryStatus.published)
        .limit(1)
    )
    if found is None:
        raise NotFound(f"there is no category {category!r}")
    return category


def popular_entries(
    session: Session, *, language: str, since: date, limit: int = 5
) -> list[FaqEntry]:
    """The most viewed published articles in `language` since a day (any revision, source)."""
    total = func.sum(PageView.count)
    rows = session.execute(
        select(PageView.entry_id, total)
        .join(FaqEntry, FaqEntry.id == PageView.entry_id)
        .where(
            PageView.day >= since,
            FaqEntry.language == language,
            FaqEntry.status == EntryStatus.published,
        )
        .group_by(PageView.entry_id)
        .order_by(total.desc(), PageView.entry_id)
        .limit(limit)
    ).all()
    ids = [entry_id for entry_id, _ in rows]
    return _published(entries_by_ids(session, ids), ids)


# -- atomic counters ---------------------------------------------------------------------


def _upsert(session: Session, table: Any) -> Insert | None:
    # INSERT ... ON CONFLICT is a single atomic statement on both supported databases:
    # two requests racing to create the same counter row cannot lose an increment.
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    return None


def _increment_page_view(
    session: Session, *, entry_id: int, revision_id: int, day: date, source: ViewSource
) -> None:
    stmt = _upsert(session, PageView)
    if stmt is not None:
        stmt = stmt.values(
            entry_id=entry_id, revision_id=revision_id, day=day, source=source, count=1
        )
        session.execute(
            stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["revision_id", "day", "source"],
                set_={"count": PageView.count + 1},
            )
        )
        return
    # Other databases: update, else insert; a lost insert race turns into an update.
    where = (PageView.revision_id == revision_id, PageView.day == day, PageView.source == source)
    for _ in range(2):
        done = session.execute(update(PageView).where(*where).values(count=PageView.count + 1))
        if getattr(done, "rowcount", 0):
            return
        try:
            with session.begin_nested():
                session.add(
                    PageView(
                        entry_id=entry_id, revision_id=revision_id, day=day, source=source, count=1
                    )
                )
            return
        except IntegrityError:
            continue


def _claim_visit(
    session: Session, *, revision_id: int, visitor: str, now: datetime, window: timedelta
) -> bool:
    """Mark the visitor as counted for the revision unless they were within `window`."""
    cutoff = now - window
    stmt = _upsert(session, VisitorSeen)
    if stmt is not None:
        stmt = stmt.values(revision_id=revision_id, visitor_hash=visitor, last_counted_at=now)
        stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=["revision_id", "visitor_hash"],
            set_={"last_counted_at": now},
            where=VisitorSeen.last_counted_at <= cutoff,
        ).returning(VisitorSeen.id)
        return session.execute(stmt).first() is not None
    done = session.execute(
        update(VisitorSeen)
        .where(
            VisitorSeen.revision_id == revision_id,
            VisitorSeen.visitor_hash == visitor,
            VisitorSeen.last_counted_at <= cutoff,
        )
        .values(last_counted_at=now)
    )
    if getattr(done, "rowcount", 0):
        return True
    try:
        with session.begin_nested():
            session.add(
                VisitorSeen(revision_id=revision_id, visitor_hash=visitor, last_counted_at=now)
            )
        return True
    except IntegrityError:
        return False


def record_view(
    session: Session,
    *,
    entry: FaqEntry,
    revision_id: int,
    source: ViewSource,
    visitor: str,
    now: datetime | None = None,
    window: timedelta = timedelta(minutes=30),
    tz: tzinfo | None = None,
) -> bool:
    """Count one view of the revision shown, unless this visitor was counted within `window`.

    The counter row is per revision, calendar day (in `tz`) and arrival source. Returns
    whether the view was counted. Robots must be filtered out by the caller.
    """
    now = now or utcnow()
    if not _claim_visit(session, revision_id=revision_id, visitor=visitor, now=now, window=window):
        return False
    day = now.astimezone(tz).date() if tz else now.date()
    _increment_page_view(
        session, entry_id=entry.id, revision_id=revision_id, day=day, source=source
    )
    return True


def prune_visitors(session: Session, *, older_than: datetime) -> int:
    """Forget de-duplication marks older than a time (they no longer change any count)."""
    done = session.execute(delete(VisitorSeen).where(VisitorSeen.last_counted_at < older_than))
    return int(getattr(done, "rowcount", 0) or 0)


# -- votes -------------------------------------------------------------------------------


def parse_helpful(value: str | bool | None) -> bool:
    """A vote's answer: yes/no (also true/false, 1/0, はい/いいえ); InvalidInput otherwise."""
    if isinstance(value, bool):
        return value
    text = (value or "").strip().lower()
    if text in ("yes", "true", "1", "はい"):
        return True
    if text in ("no", "false", "0", "いいえ"):
        return False
    raise InvalidInput("helpful must be yes or no")


def clean_comment(comment: str | None) -> str | None:
    """A vote comment: trimmed, personal data masked, None when empty; InvalidInput if long."""
    if comment is None:
        return None
    text = comment.replace("\x00", "").strip()
    if not text:
        return None
    if len(text) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"the comment is longer than {MAX_COMMENT_CHARS} characters")
    return scrub_personal_data(text)


@dataclass
class VoteResult:
    """What a vote did."""

    vote: Vote
    replaced: bool


def current_vote(session: Session, *, revision_id: int, visitor: str) -> Vote | None:
    """This visitor's vote on a revision, if any."""
    return session.scalar(
        select(Vote)
        .where(Vote.revision_id == revision_id, Vote.visitor_hash == visitor)
        .execution_options(populate_existing=True)
    )


def cast_vote(
    session: Session,
    *,
    entry: FaqEntry,
    revision_id: int | None,
    visitor: str,
    helpful: bool,
    comment: str | None = None,
    now: datetime | None = None,
) -> VoteResult:
    """Record a visitor's answer for the revision they were shown; a second vote replaces it.

    Only a "no" keeps its comment. One row per revision and visitor whatever the number
    of calls or their concurrency (the unique key decides, not a read-then-write).
    """
    revision = get_revision_of(session, entry, revision_id)
    text = clean_comment(comment) if not helpful else None
    now = now or utcnow()
    existed = current_vote(session, revision_id=revision.id, visitor=visitor) is not None
    stmt = _upsert(session, Vote)
    if stmt is not None:
        stmt = stmt.values(
            entry_id=entry.id,
            revision_id=revision.id,
            visitor_hash=visitor,
            helpful=helpful,
            comment=text,
            created_at=now,
            updated_at=now,
        )
        session.execute(
            stmt.on_conflict_do_update(  # type: ignore[attr-defined]
                index_elements=["revision_id", "visitor_hash"],
                set_={"helpful": helpful, "comment": text, "updated_at": now},
            )
        )
    else:
        row = current_vote(session, revision_id=revision.id, visitor=visitor)
        if row is None:
            session.add(
                Vote(
                    entry_id=entry.id,
                    revision_id=revision.id,
                    visitor_hash=visitor,
                    helpful=helpful,
                    comment=text,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            row.helpful, row.comment, row.updated_at = helpful, text, now
        session.flush()
    vote = current_vote(session, revision_id=revision.id, visitor=visitor)
    assert vote is not None  # just written in this transaction
    return VoteResult(vote=vote, replaced=existed)


# -- rate limits -------------------------------------------------------------------------


class SlidingWindowLimiter:
    """At most `limit` events per key in any `window` seconds (in process, thread-safe).

    Memory stays bounded: keys idle for a whole window are dropped, and past `max_keys`
    the least recently used keys go first.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._events: OrderedDict[Hashable, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: Hashable) -> float:
        """Record an event for `key`; 0 when allowed, else seconds until one is allowed."""
        now = self._clock()
        with self._lock:
            events = self._events.get(key)
            if events is None:
                events = self._events[key] = deque()
            self._events.move_to_end(key)
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return max(0.001, events[0] + self.window - now)
            events.append(now)
            self._prune_locked(now)
            return 0.0

    def _prune_locked(self, now: float) -> None:
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)
        # Drop idle keys from the cold end; stops at the first key still in use.
        while self._events:
            _key, events = next(iter(self._events.items()))
            if events and events[-1] > now - self.window:
                break
            self._events.popitem(last=False)


@dataclass
class VoteLimits:
    """Per-visitor and per-address limits on votes."""

    per_visitor: SlidingWindowLimiter
    per_ip: SlidingWindowLimiter

    def check(self, *, visitor: str | None, ip: str | None) -> None:
        """Count one attempt; RateLimited (with seconds to wait) when over either limit."""
        waits = []
        if visitor:
            waits.append(self.per_visitor.hit(visitor))
        if ip:
            waits.append(self.per_ip.hit(ip))
        wait = max(waits, default=0.0)
        if wait > 0:
            seconds = max(1, int(wait + 0.999))
            raise RateLimited(
                f"too many votes from your browser or network; your vote was not recorded. "
                f"Please wait {seconds} seconds and try again",
                retry_after=seconds,
            )


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A small thread-safe least-recently-used cache."""

    def __init__(self, max_items: int = 1024) -> None:
        self.max_items = max_items
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


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
    if query and detect_language(query) == "ja":
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
    result = index.search(query, k=k, language=language)
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


# -- statistics --------------------------------------------------------------------------


@dataclass
class RevisionStats:
    """Counts that belong to one revision."""

    revision: FaqRevision
    current: bool
    views: dict[str, int]
    helpful: int
    not_helpful: int
    comments: list[tuple[str, datetime]]

    @property
    def views_total(self) -> int:
        return sum(self.views.values())

    @property
    def helpful_ratio(self) -> float | None:
        """Share of helpful votes (None without votes)."""
        votes = self.helpful + self.not_helpful
        return round(self.helpful / votes, 4) if votes else None


def entry_stats(session: Session, entry_id: int, *, comments: int = 20) -> list[RevisionStats]:
    """Views by source, helpful and not-helpful votes per revision of an entry, oldest first."""
    entry = session.get(FaqEntry, entry_id)
    if entry is None:
        raise NotFound(f"FAQ {entry_id} not found")
    revisions = list(
        session.scalars(
            select(FaqRevision).where(FaqRevision.entry_id == entry_id).order_by(FaqRevision.number)
        )
    )
    views: dict[int, dict[str, int]] = {r.id: dict.fromkeys(ViewSource, 0) for r in revisions}
    for revision_id, source, count in session.execute(
        select(PageView.revision_id, PageView.source, func.sum(PageView.count))
        .where(PageView.entry_id == entry_id)
        .group_by(PageView.revision_id, PageView.source)
    ):
        if revision_id in views:
            views[revision_id][ViewSource(source)] = int(count or 0)
    tallies: dict[int, tuple[int, int]] = {}
    for revision_id, yes, no in session.execute(
        select(
            Vote.revision_id,
            func.sum(case((Vote.helpful.is_(True), 1), else_=0)),
            func.sum(case((Vote.helpful.is_(False), 1), else_=0)),
        )
        .where(Vote.entry_id == entry_id)
        .group_by(Vote.revision_id)
    ):
        tallies[revision_id] = (int(yes or 0), int(no or 0))
    notes: dict[int, list[tuple[str, datetime]]] = {}
    for revision_id, text, at in session.execute(
        select(Vote.revision_id, Vote.comment, Vote.updated_at)
        .where(Vote.entry_id == entry_id, Vote.comment.is_not(None))
        .order_by(Vote.updated_at.desc(), Vote.id.desc())
    ):
        bucket = notes.setdefault(revision_id, [])
        if len(bucket) < comments and text:
            bucket.append((text, at))
    return [
        RevisionStats(
            revision=r,
            current=r.id == entry.current_revision_id,
            views={str(k): v for k, v in views[r.id].items()},
            helpful=tallies.get(r.id, (0, 0))[0],
            not_helpful=tallies.get(r.id, (0, 0))[1],
            comments=notes.get(r.id, []),
        )
        for r in revisions
    ]
