"""The delivery worker of `faqloop serve`: a background thread that drains the outbox.

Every replica may run one: deliveries are claimed in the database (kb/notify/delivery.py),
so two workers never send the same one. It stops at shutdown after the POST in flight
(at most FAQLOOP_WEBHOOK_TIMEOUT).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from kb.notify.delivery import DeliveryPolicy, DrainReport, Sender, deliver_due, post

log = logging.getLogger("faqloop.webhooks")


def policy_of(settings: Settings) -> DeliveryPolicy:
    """The FAQLOOP_WEBHOOK_* settings as a delivery policy."""
    return DeliveryPolicy(
        max_attempts=settings.webhook_max_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
        timeout=settings.webhook_timeout,
        base_url=settings.base_url.strip(),
    )


class DeliveryWorker:
    """Looks at the outbox every `interval` seconds and sends what is due."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        policy: DeliveryPolicy,
        interval: float,
        *,
        sender: Sender = post,
    ) -> None:
        self._session_factory = session_factory
        self._policy = policy
        self._interval = interval
        self._sender = sender
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def run_once(self) -> DrainReport:
        """One pass: send every due delivery (stops early when asked to stop)."""
        report = deliver_due(
            self._session_factory, self._policy, sender=self._sender, stop=self._stop.is_set
        )
        self.passes += 1
        return report

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the worker
                log.exception("webhook delivery pass failed")
            self._stop.wait(self._interval)

    def start(self) -> DeliveryWorker:
        """Start the thread (daemon: it never holds the process open)."""
        self._thread = threading.Thread(target=self._loop, name="faqloop-webhooks", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to stop and wait for it (the POST in flight finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._policy.timeout + 10)


def start_delivery_worker(
    settings: Settings, session_factory: sessionmaker[Session]
) -> DeliveryWorker | None:
    """The worker of this process, started; None when FAQLOOP_WEBHOOK_POLL_INTERVAL is 0."""
    if settings.webhook_poll_interval <= 0:
        return None
    return DeliveryWorker(
        session_factory, policy_of(settings), settings.webhook_poll_interval
    ).start()
