"""Rate limits per key (suggest per API key, votes per visitor and per address, public
searches and counted views per address, sign-in attempts).

Built on the `limits` library: a moving window whose counts live in a `limits` storage:
Redis when FAQLOOP_REDIS_URL is set (every replica shares one budget), in process
(`MemoryStorage`) otherwise. `limit_storage(settings)` is the one place that chooses.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from api.settings import Settings
from kb.errors import Busy, RateLimited

log = logging.getLogger(__name__)
KEY_PREFIX = "faqloop"
_redis_storages: dict[tuple[str, str], RedisStorage] = {}
_redis_lock = threading.Lock()


def limit_storage(settings: Settings, *, key_prefix: str = KEY_PREFIX) -> Storage:
    """Where limits count: the shared Redis of FAQLOOP_REDIS_URL, else a new in-process store.

    One Redis client (and connection pool) per URL and prefix is kept for the process.
    """
    url = settings.redis_url.strip()
    if not url:
        return MemoryStorage()
    with _redis_lock:
        storage = _redis_storages.get((url, key_prefix))
        if storage is None:
            storage = RedisStorage(url, key_prefix=key_prefix, wrap_exceptions=True)
            _redis_storages[(url, key_prefix)] = storage
        return storage


class RateLimiter:
    """At most `limit` hits per key in any `window` seconds (thread-safe).

    The window counts whole seconds (a fraction is rounded up). `name` keeps the keys of
    different limits apart when they share a storage.
    """

    def __init__(
        self, name: str, limit: int, window: float, *, storage: Storage | None = None
    ) -> None:
        self.name = name
        self.limit = limit
        self.window = max(1, math.ceil(window))
        self._item = RateLimitItemPerSecond(limit, self.window, namespace=f"faqloop-{name}")
        self._strategy = MovingWindowRateLimiter(
            storage if storage is not None else MemoryStorage()
        )
        self._lock = threading.Lock()

    def hit(self, key: str, cost: int = 1) -> int:
        """Count `cost` hits for `key`: 0 when allowed, else the seconds to wait (>= 1).

        A refused hit counts nothing. A cost above the limit counts as the limit. The wait
        is until the oldest hit leaves the window; a cost above 1 may have to wait again.
        """
        cost = min(max(cost, 1), self.limit)
        try:
            with self._lock:
                if self._strategy.hit(self._item, key, cost=cost):
                    return 0
                reset = self._strategy.get_window_stats(self._item, key).reset_time
        except StorageError:
            # The shared store is down: serve (unlimited) rather than fail every request.
            log.warning("rate limit storage unavailable; %s not limited", self.name)
            return 0
        return max(1, math.ceil(reset - time.time()))


@dataclass
class VoteLimits:
    """Per-visitor and per-address limits on votes."""

    per_visitor: RateLimiter
    per_ip: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings, *, storage: Storage | None = None) -> VoteLimits:
        """The FAQLOOP_VOTE_RATE_* limits, counted in `storage` (default: `limit_storage`)."""
        storage = storage if storage is not None else limit_storage(settings)
        window = settings.vote_rate_window
        return cls(
            per_visitor=RateLimiter(
                "votes-visitor", settings.vote_rate_limit, window, storage=storage
            ),
            per_ip=RateLimiter("votes-ip", settings.vote_rate_limit_ip, window, storage=storage),
        )

    def check(self, *, visitor: str | None, ip: str | None) -> None:
        """Count one attempt; RateLimited (with seconds to wait) when over either limit."""
        waits = []
        if visitor:
            waits.append(self.per_visitor.hit(visitor))
        if ip:
            waits.append(self.per_ip.hit(ip))
        seconds = max(waits, default=0)
        if seconds > 0:
            raise RateLimited(
                f"too many votes from your browser or network; your vote was not recorded. "
                f"Please wait {seconds} seconds and try again",
                retry_after=seconds,
            )


@dataclass
class AddressLimits:
    """Per-address limits of the public site: searches (refused beyond), views (not counted)."""

    search: RateLimiter | None
    view_count: RateLimiter | None

    @classmethod
    def from_settings(cls, settings: Settings, *, storage: Storage | None = None) -> AddressLimits:
        """FAQLOOP_SEARCH_RATE_* and FAQLOOP_VIEW_COUNT_* (a limit of 0: none)."""
        storage = storage if storage is not None else limit_storage(settings)
        search = view_count = None
        if settings.search_rate_limit > 0:
            search = RateLimiter(
                "search-ip",
                settings.search_rate_limit,
                settings.search_rate_window,
                storage=storage,
            )
        if settings.view_count_limit_ip > 0:
            view_count = RateLimiter(
                "views-ip",
                settings.view_count_limit_ip,
                settings.view_count_window,
                storage=storage,
            )
        return cls(search=search, view_count=view_count)

    def check_search(self, ip: str | None) -> None:
        """Count one public search from `ip`; RateLimited (with seconds to wait) beyond."""
        if self.search is None or not ip:
            return
        seconds = self.search.hit(ip)
        if seconds > 0:
            raise RateLimited(
                f"too many searches from your network; please wait {seconds} seconds and try again",
                retry_after=seconds,
            )

    def may_count_view(self, ip: str | None) -> bool:
        """Count one view from `ip` towards its budget; False when beyond it."""
        if self.view_count is None or not ip:
            return True
        return self.view_count.hit(ip) == 0


class ConcurrencyGate:
    """At most `slots` requests of one kind at once in this process; one more is refused at
    once (Busy: 503 with Retry-After), never queued. Public search has one, so that a flood
    from many addresses (each within its budget) cannot take every core from agents."""

    def __init__(self, slots: int, what: str) -> None:
        self._slots = threading.BoundedSemaphore(slots) if slots > 0 else None
        self._what = what

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self._slots is None:
            yield
            return
        if not self._slots.acquire(blocking=False):
            raise Busy(
                f"the server is busy with other {self._what}; please try again in a moment",
                retry_after=1,
            )
        try:
            yield
        finally:
            self._slots.release()
