"""Rate limits per key (suggest requests per API key, votes per visitor and per address).

Built on the `limits` library: a moving window whose counts live in a `limits` storage,
in process (`MemoryStorage`) unless a shared one is passed in.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from api.settings import Settings
from kb.errors import RateLimited


class RateLimiter:
    """At most `limit` hits per key in any `window` seconds (thread-safe).

    The window counts whole seconds (a fraction is rounded up). `name` keeps the keys of
    different limits apart when they share a storage.
    """

    def __init__(
        self, name: str, limit: int, window: float, *, storage: Storage | None = None
    ) -> None:
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
        with self._lock:
            if self._strategy.hit(self._item, key, cost=cost):
                return 0
            reset = self._strategy.get_window_stats(self._item, key).reset_time
        return max(1, math.ceil(reset - time.time()))


@dataclass
class VoteLimits:
    """Per-visitor and per-address limits on votes."""

    per_visitor: RateLimiter
    per_ip: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings, *, storage: Storage | None = None) -> VoteLimits:
        """The FAQLOOP_VOTE_RATE_* limits, counted in `storage` (in process by default)."""
        storage = storage if storage is not None else MemoryStorage()
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
