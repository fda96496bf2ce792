"""Handing memory freed by model calls back to the system (shared by every backend)."""

from __future__ import annotations

import threading
import time
from typing import Any

# Seconds between returns of freed heap memory to the system (see `MemoryTrimmer`).
TRIM_INTERVAL = 2.0


class MemoryTrimmer:
    """Gives the memory freed by model calls back to the system, every few seconds.

    Every batch of posts has its own shape (posts x tokens), so its activations are
    allocated and freed in sizes that rarely repeat; glibc keeps the freed pieces in its
    heaps, and a serving process grows. `malloc_trim(0)` hands them back (measured in
    docs/scale.md, "Load test").
    A daemon thread does it every 2 s, only after a period that saw model calls, so no
    request waits for it. A no-op where the C library has no malloc_trim (not glibc).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.trims = 0
        self._used = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        try:
            import ctypes

            self._trim: Any = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def note_use(self) -> None:
        """Record a model call; start the trimming thread on the first one."""
        if self._trim is None or self.interval <= 0:
            return
        self._used.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="faqloop-malloc-trim", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            if self._used.is_set():
                self._used.clear()
                self._trim(0)  # ctypes releases the GIL for the call
                self.trims += 1
