"""What the public site keeps per app (vote limits, caches) and per request (the visitor)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from cachetools import LRUCache
from fastapi import Depends, FastAPI, Request, Response

from api.settings import Settings
from api.state import Services
from api.web.deps import services_of
from api.web.lazy import Lazy
from api.web.ratelimit import AddressLimits, ConcurrencyGate, VoteLimits
from kb.faqs.content import load_categories
from kb.indexing import IndexManager
from kb.models import FaqEntry, ViewSource
from kb.site import articles as site_articles
from kb.site import visitors

VISITOR_COOKIE = "fql_v"
VISITOR_COOKIE_MAX_AGE = 365 * 24 * 3600
CSRF_HEADER = "X-CSRF-Token"
RELATED_LIMIT = 5

K = TypeVar("K")
V = TypeVar("V")

# Pages hold a per-visitor token and answers with links out: no inline code, no third
# parties, no framing; links out learn nothing of the search text.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass
class SiteState:
    """Per-app state of the site: in-process vote limits and small caches."""

    settings: Settings
    limits: VoteLimits
    tz: ZoneInfo
    view_window: timedelta
    # Per-address budgets: public searches (429 beyond), counted views (page still shown).
    address_limits: AddressLimits
    # Public searches running at once in this replica (503 beyond): agents keep their share.
    search_gate: ConcurrencyGate
    related: LRUCache[tuple[int, int, int, int], list[int]] = field(
        default_factory=lambda: LRUCache(4096)
    )
    # SQLite allows one writer at a time and makes the others poll with growing sleeps
    # (up to 100 ms each), which dominated the tail latency under concurrent page views.
    # Queueing this process's site writes on a lock instead keeps them short and in order.
    write_lock: threading.Lock | None = None
    answers: LRUCache[int, str] = field(default_factory=lambda: LRUCache(2048))
    _categories: tuple[float, dict[str, dict[str, Any]]] | None = None
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def categories(self) -> dict[str, dict[str, Any]]:
        """Category names from categories.yaml, re-read when the file changes."""
        path: Path = self.settings.content_dir / "categories.yaml"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        cached = self._categories
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_categories(self.settings.content_dir))
            self._categories = cached
        return cached[1]

    def may_count_view(self, ip: str | None, source: ViewSource) -> bool:
        """Whether a view from `ip` may be counted: each address has a budget of counted
        views, a separate one for arrivals from agents' reply links, so a flood of plain
        page loads cannot use up the budget of the customers an agent sends."""
        kind = "reply" if source == ViewSource.reply else "other"
        return self.address_limits.may_count_view(f"{kind}:{ip}" if ip else None)

    @contextmanager
    def serial_writes(self) -> Iterator[None]:
        """Hold the write lock (SQLite only) around a write-and-commit."""
        if self.write_lock is None:
            yield
            return
        with self.write_lock:
            yield

    def _remember(
        self, cache: LRUCache[K, V], key: K, make: Callable[[], V], keep: Callable[[], bool]
    ) -> V:
        """`cache[key]`, made (outside the lock) and kept when `keep()` if missing."""
        with self._cache_lock:
            value = cache.get(key)
        if value is None:
            value = make()
            if keep():
                with self._cache_lock:
                    cache[key] = value
        return value

    def answer_html(self, revision_id: int, markdown: str, render: Callable[[str], str]) -> str:
        """A revision's sanitised HTML; revisions never change, so it is rendered once."""
        return self._remember(self.answers, revision_id, lambda: render(markdown), lambda: True)

    def related_ids(self, index: IndexManager, entry: FaqEntry) -> list[int]:
        """Nearest articles by the index, cached until the article or the index changes."""
        key = (
            entry.id,
            entry.current_revision_id or 0,
            index.generation,
            index.last_change_id,
        )
        # An unready index gives nothing worth remembering.
        return self._remember(
            self.related,
            key,
            lambda: site_articles.related_ids(index, entry, limit=RELATED_LIMIT),
            lambda: index.ready,
        )


def build_site_state(services: Services) -> SiteState:
    """The site state from the app's settings."""
    settings = services.settings
    return SiteState(
        settings=settings,
        limits=VoteLimits.from_settings(settings),
        address_limits=AddressLimits.from_settings(settings),
        search_gate=ConcurrencyGate(settings.public_search_concurrency, "searches"),
        tz=ZoneInfo(settings.stats_timezone),
        view_window=timedelta(minutes=settings.view_window_minutes),
        write_lock=threading.Lock() if settings.db_url.startswith("sqlite") else None,
    )


_site_states: Lazy[SiteState] = Lazy("site", build_site_state)


def get_site_state(request: Request) -> SiteState:
    """The app's site state, created on first use from the app's settings."""
    return _site_states.of(request)


def site_state_of(app: FastAPI) -> SiteState:
    """The site state of `app` (after its lifespan started), created on first use."""
    return _site_states.get(app.state, app.state.services)


SiteStateDep = Annotated[SiteState, Depends(get_site_state)]


@dataclass
class Visitor:
    """The anonymous visitor behind a request."""

    token: str  # the cookie value (newly made when the request had none)
    sent_token: str | None  # what the request carried, if it looked valid
    hash: str  # what the database stores
    csrf: str
    ip: str | None
    countable: bool  # a person loading the page (not a robot, not a prefetch)

    @property
    def is_new(self) -> bool:
        return self.sent_token is None


def get_visitor(request: Request) -> Visitor:
    """The visitor from the cookie, or a new one (the response must then set the cookie)."""
    secret = services_of(request).settings.visitor_secret
    sent = request.cookies.get(VISITOR_COOKIE)
    sent = sent if visitors.is_valid_visitor_token(sent) else None
    token = sent or visitors.new_visitor_token()
    headers = request.headers
    countable = not visitors.is_bot(headers.get("user-agent")) and not visitors.is_prefetch(
        headers.get("sec-purpose"), headers.get("purpose"), headers.get("x-moz")
    )
    return Visitor(
        token=token,
        sent_token=sent,
        hash=visitors.visitor_hash(secret, token),
        csrf=visitors.csrf_token(secret, token),
        ip=request.client.host if request.client else None,
        countable=countable,
    )


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


def keep_visitor(request: Request, response: Response, visitor: Visitor) -> Response:
    """Set the visitor cookie on a response when the visitor is new."""
    if visitor.is_new:
        response.set_cookie(
            VISITOR_COOKIE,
            visitor.token,
            max_age=VISITOR_COOKIE_MAX_AGE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


def page_headers(response: Response, *, private: bool) -> Response:
    """Security headers, and no shared caching of pages that carry a visitor's token."""
    response.headers.update(SECURITY_HEADERS)
    if private:
        response.headers["Cache-Control"] = "private, no-store"
    return response
