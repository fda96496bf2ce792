"""A tiny hook so the embedding code can report batch sizes without knowing who listens.

`indexer/` has no web or metrics dependency: the API registers an observer (a Prometheus
histogram) and the embedder calls `observe_batch_size` for every model call. A micro-batching
embedder that funnels concurrent requests into one model call is therefore measured where
the batch is actually formed, with no extra wiring.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

BatchObserver = Callable[[int, str], None]

_observers: list[BatchObserver] = []
_lock = threading.Lock()


def add_batch_observer(observer: BatchObserver) -> Callable[[], None]:
    """Call `observer(size, kind)` for every embedding batch; returns a function that removes it."""
    with _lock:
        _observers.append(observer)

    def remove() -> None:
        with _lock:
            if observer in _observers:
                _observers.remove(observer)

    return remove


def observe_batch_size(size: int, kind: str = "query") -> None:
    """Report one model call of `size` texts; `kind` is "query" or "passage"."""
    if size <= 0:
        return
    with _lock:
        observers = list(_observers)
    for observer in observers:
        try:
            observer(size, kind)
        except Exception:  # metrics must never break an embedding
            log.exception("batch observer failed")
