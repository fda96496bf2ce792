"""The delivery worker of `faqloop serve` (a thread started and stopped with the app) and
`faqloop webhooks deliver` (one pass from the command line, exit codes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.audit import Actor
from kb.db import session_scope
from kb.faqs.entries import create_entry
from kb.models import Webhook, WebhookDelivery
from kb.notify.webhooks import create_webhook
from tests.notify.receiver import dead_url, receiver
from tests.support.serve import run as _run


def _hook_and_article(factory: sessionmaker[Session], url: str) -> None:
    with session_scope(factory) as s:
        create_webhook(s, url=url, events=["article.published"], min_demand=1, actor=Actor("t"))
    with session_scope(factory) as s:
        create_entry(
            s,
            question="Can I keep my number?",
            answer="Yes, ask for number portability.",
            category="plans",
            language="en",
        )


def test_the_server_delivers_in_the_background_and_stops_its_worker(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    fast = settings.model_copy(update={"webhook_poll_interval": 0.1})
    with receiver() as r:
        app = create_app(fast, embedder=embedder, deliver_webhooks=True)
        with TestClient(app):
            worker = app.state.webhook_worker
            assert worker is not None and worker.running
            _hook_and_article(session_factory, r.url)
            deadline = time.monotonic() + 30
            while not r.requests and time.monotonic() < deadline:
                time.sleep(0.05)
        assert not worker.running  # stopped with the app
    assert len(r.requests) == 1
    with session_factory() as s:
        (row,) = s.scalars(select(WebhookDelivery))
        assert (row.status, row.attempts) == ("delivered", 1)


def test_no_worker_without_the_flag_or_with_interval_zero(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    app = create_app(settings, embedder=embedder)
    with TestClient(app):
        assert app.state.webhook_worker is None
    off = settings.model_copy(update={"webhook_poll_interval": 0})
    app = create_app(off, embedder=embedder, deliver_webhooks=True)
    with TestClient(app):
        assert app.state.webhook_worker is None


def _env(tmp_path: Path, db_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(FAQLOOP_DATA_DIR=str(tmp_path / "data"), FAQLOOP_DATABASE_URL=db_url, **extra)
    return env


def test_the_deliver_command_drains_the_outbox_once(
    tmp_path: Path, db_url: str, session_factory: sessionmaker[Session]
) -> None:
    with receiver() as r:
        _hook_and_article(session_factory, r.url)
        done = _run(_env(tmp_path, db_url), "webhooks", "deliver")
        assert done.returncode == 0, done.stderr
        assert "delivered 1, to retry 0, failed 0" in done.stderr
        assert len(r.requests) == 1
        again = _run(_env(tmp_path, db_url), "webhooks", "deliver")
        assert again.returncode == 0 and "delivered 0" in again.stderr
    listed = _run(_env(tmp_path, db_url), "webhooks", "list")
    assert listed.returncode == 0 and r.url in listed.stdout
    with session_factory() as s:
        (hook,) = s.scalars(select(Webhook))
    assert hook.secret not in listed.stdout and hook.secret not in done.stderr


def test_the_deliver_command_exits_nonzero_when_a_delivery_fails_for_good(
    tmp_path: Path, db_url: str, session_factory: sessionmaker[Session]
) -> None:
    _hook_and_article(session_factory, dead_url())
    env = _env(tmp_path, db_url, FAQLOOP_WEBHOOK_MAX_ATTEMPTS="1")
    done = _run(env, "webhooks", "deliver")
    assert done.returncode == 1
    assert "failed 1" in done.stderr and "could not connect" in done.stderr
    bad = _run(_env(tmp_path, db_url, FAQLOOP_WEBHOOK_MAX_ATTEMPTS="0"), "webhooks", "deliver")
    assert bad.returncode == 2 and "webhook_max_attempts" in bad.stderr
