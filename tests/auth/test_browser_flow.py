"""The editors' side in a real browser (Playwright driving Debian's Chromium against uvicorn
on 127.0.0.1): an admin creates an editor in the pages, the editor signs in, publishes a
draft and signs out; the old session cookie is refused; the audit page shows each step
with the editor's name.

Run alone with `pytest -m browser`. Skipped only when /usr/bin/chromium is absent outside
CI; in CI a missing browser is a failure.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.models import AuditEvent, DraftStatus, FaqDraft
from tests.support.accounts import make_account

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing in CI: run `make chromium` first")
    pytest.skip(f"{CHROMIUM} is not installed (make chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(settings: Settings, embedder: CachedEmbedder, seeded: None) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in a thread of this process."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings, embedder=embedder), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _sign_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/review/login?lang=en")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(f"{base}/review/login")


def _draft(base: str, agent_key: str) -> int:
    thread = {
        "channel": "x",
        "external_id": "browser-1",
        "url": "https://x.com/i/status/browser-1",
        "resolved_at": "2026-11-20T10:00:00+09:00",
        "posts": [
            {"role": "customer", "author": "@cust", "text": "渋谷店の営業時間を教えてください",
             "created_at": "2026-11-20T09:00:00+09:00"},
            {"role": "agent", "author": "@SoramiSupport",
             "text": "渋谷店は10時から20時まで営業しています。"},
        ],
    }  # fmt: skip
    r = httpx.post(
        f"{base}/v1/threads",
        json=thread,
        headers={"Authorization": f"Bearer {agent_key}"},
        timeout=120,
    )
    assert r.status_code == 201 and r.json()["status"] == "drafted", r.text
    return int(r.json()["draft_id"])


def test_admin_adds_an_editor_who_publishes_and_every_step_is_audited(
    live_server: str,
    browser: Browser,
    session_factory: sessionmaker[Session],
    agent_headers: dict[str, str],
) -> None:
    base = live_server
    draft_id = _draft(base, agent_headers["Authorization"].removeprefix("Bearer "))
    make_account(
        session_factory, email="ada@example.com", name="Ada Admin", role="admin",
        password="admin password 1",
    )  # fmt: skip

    # The admin adds an editor from the pages.
    admin_ctx = browser.new_context(**DESKTOP)
    admin = admin_ctx.new_page()
    _sign_in(admin, base, "ada@example.com", "admin password 1")
    admin.goto(f"{base}/review/admin/users?lang=en")
    form = admin.locator("#create-user")
    form.locator("#new-email").fill("nina@example.com")
    form.locator("#new-name").fill("Nina Neu")
    form.locator("#new-role").select_option("editor")
    form.locator("#new-password").fill("nina's first password")
    form.get_by_role("button", name="Create user").click()
    expect(admin.locator('tr[data-email="nina@example.com"]')).to_contain_text("Nina Neu")
    _shot(admin, "admin-users")

    # The editor signs in, publishes the draft and signs out.
    editor_ctx = browser.new_context(**DESKTOP)
    editor = editor_ctx.new_page()
    _sign_in(editor, base, "nina@example.com", "nina's first password")
    cookie = next(c for c in editor_ctx.cookies() if c["name"] == "fql_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    editor.goto(f"{base}/review/drafts/{draft_id}?lang=en")
    publish = editor.locator("#publish-form")
    categories = publish.locator("#publish-category option")
    values = [v for v in categories.evaluate_all("os => os.map(o => o.value)") if v]
    publish.locator("#publish-category").select_option(values[0])
    publish.locator("button[type=submit]").click()
    expect(editor).to_have_url(f"{base}/review/drafts/{draft_id}?done=published")
    _shot(editor, "editor-published")
    with session_factory() as s:
        draft = s.get(FaqDraft, draft_id)
        assert draft is not None and draft.status == DraftStatus.published
    editor.get_by_role("button", name="Sign out").click()
    expect(editor).to_have_url(f"{base}/review/login")

    # The old session cookie no longer opens anything.
    thief_ctx = browser.new_context(**DESKTOP)
    thief_ctx.add_cookies([{**cookie}])
    thief = thief_ctx.new_page()
    thief.goto(f"{base}/review")
    expect(thief).to_have_url(f"{base}/review/login?next=/review")
    r = httpx.get(f"{base}/review", cookies={"fql_session": cookie["value"]})
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login")

    # The audit page shows each step under the editor's name.
    admin.goto(f"{base}/review/audit?actor=nina&lang=en")
    rows = admin.locator("tr.event")
    expect(rows.first).to_be_visible()
    actions = rows.evaluate_all("rs => rs.map(r => r.dataset.action)")
    assert actions == ["logout", "draft.publish", "login"], actions
    for text in rows.locator("td.actor").all_inner_texts():
        assert "Nina Neu" in text
    _shot(admin, "admin-audit")
    admin.goto(f"{base}/review/audit?lang=en&target=user:nina@example.com")
    expect(admin.locator('tr.event[data-action="user.create"] td.actor')).to_contain_text(
        "Ada Admin"
    )
    with session_factory() as s:
        publish_event = s.scalar(select(AuditEvent).where(AuditEvent.action == "draft.publish"))
    assert publish_event is not None and publish_event.target_id == str(draft_id)
    assert publish_event.after is not None and publish_event.after["status"] == "published"
    for ctx in (admin_ctx, editor_ctx, thief_ctx):
        ctx.close()
