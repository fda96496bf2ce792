"""Sliding-window rate limits (in process) and the vote limits built from them."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from kb.errors import RateLimited

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
