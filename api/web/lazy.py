"""Parts of the app built from its Services on first use and kept for the app's lifetime."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from fastapi import Request

from api.state import Services
from api.web.deps import services_of

T = TypeVar("T")


class Lazy(Generic[T]):
    """One `build(services)` per Services instance, kept on the app's state.

    Built once even when first requests race (double-checked under a lock), and built
    anew when the app's Services are replaced (each test app has its own).
    """

    def __init__(self, name: str, build: Callable[[Services], T]) -> None:
        self._attr = f"_lazy_{name}"
        self._build = build
        self._lock = threading.Lock()

    def get(self, holder: object, services: Services) -> T:
        """The part for `services` kept on `holder` (the app's state); built if missing."""
        kept: tuple[Services, T] | None = getattr(holder, self._attr, None)
        if kept is None or kept[0] is not services:
            with self._lock:
                kept = getattr(holder, self._attr, None)
                if kept is None or kept[0] is not services:
                    kept = (services, self._build(services))
                    setattr(holder, self._attr, kept)
        return kept[1]

    def put(self, holder: object, services: Services, value: T) -> T:
        """Keep `value`, built elsewhere, as the part for `services`."""
        with self._lock:
            setattr(holder, self._attr, (services, value))
        return value

    def of(self, request: Request) -> T:
        """The part for the app serving `request`."""
        return self.get(request.app.state, services_of(request))
