"""An article's life cycle in Chromium on a phone (390 px): create → edit with the live
preview (rendered by the server's sanitiser, fetched by /static/review-preview.js under the
review CSP) → archive (confirmed) → restore. Screenshots at 390 and 1280 px land in
test-artifacts/screenshots/. Run alone with `pytest -m browser`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from tests.support.accounts import make_account

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
MOBILE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
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
    thread = threading.Thread(target=server.run, name="uvicorn-articles", daemon=True)
    thread.start()
    deadline = time.monotonic() + 400  # a loaded CI box builds the index slowly
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


def _no_horizontal_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1, width  # type: ignore[index]


def test_create_edit_with_preview_archive_restore_on_a_phone(
    live_server: str, browser: Browser, session_factory: sessionmaker[Session]
) -> None:
    base = live_server
    account = make_account(session_factory, name="Mia Mobile")
    context = browser.new_context(**MOBILE)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/review/login?lang=en")
    page.locator("#email").fill(account.email)
    page.locator("#password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(f"{base}/review/login")

    page.goto(f"{base}/review/articles?lang=en")
    _no_horizontal_scroll(page)
    page.get_by_role("link", name="New article").click()
    page.locator("#question").fill("Can I take my number to another planet?")
    page.locator("#answer").fill("Only to **Mars** for now.")
    expect(page.locator("#answer-preview strong")).to_have_text("Mars")
    page.locator("#category").select_option(index=1)
    page.locator("#lang-field").select_option("en")
    page.get_by_role("button", name="Create and publish").click()
    expect(page.locator("#article-status")).to_have_text("Published")
    _shot(page, "review-article-390")
    _no_horizontal_scroll(page)

    answer = page.locator("#answer")
    answer.fill("Mars and the **Moon** <script>alert(1)</script>")
    expect(page.locator("#answer-preview strong")).to_have_text("Moon")
    expect(page.locator("#answer-preview script")).to_have_count(0)
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".notice.ok")).to_have_text("Changes saved.")

    archive = page.locator("#archive-form")
    expect(archive.locator("input[name=confirm]")).not_to_be_checked()
    archive.locator("input[name=confirm]").check()
    archive.get_by_role("button", name="Archive").click()
    expect(page.locator("#article-status")).to_have_text("Archived")
    page.locator("#restore-form").get_by_role("button", name="Publish again").click()
    expect(page.locator("#article-status")).to_have_text("Published")
    assert not [p for p in problems if "Content Security Policy" in p], problems

    desktop = browser.new_context(**DESKTOP)
    wide = desktop.new_page()
    wide.context.add_cookies(context.cookies())  # type: ignore[arg-type]
    wide.goto(page.url.split("?")[0] + "?lang=ja")
    _shot(wide, "review-article-1280-ja")
    wide.goto(f"{base}/review/articles?lang=ja")
    _shot(wide, "review-articles-1280-ja")
    page.goto(f"{base}/review/articles?lang=ja")
    _shot(page, "review-articles-390-ja")
    page.goto(f"{base}/review?lang=ja")
    _shot(page, "review-queue-390-ja")
    _no_horizontal_scroll(page)
    page.goto(f"{base}/review/health?lang=ja")
    _shot(page, "review-health-390-ja")
    _no_horizontal_scroll(page)
    context.close()
    desktop.close()
