"""The public site in a real browser: Playwright drives Debian's Chromium against a uvicorn
server on 127.0.0.1 started by the test. Screenshots land in test-artifacts/screenshots/.

Run alone with `pytest -m browser`. Skipped only when /usr/bin/chromium is absent outside
CI; in CI (the CI variable set) a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.faqs.content import Article
from kb.models import FaqEntry, PageView, SearchLog, Vote

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
MOBILE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing in CI: run `make chromium` first")
    pytest.skip(f"{CHROMIUM} is not installed (make chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright  # noqa: E402

# WCAG AA contrast of the text a visitor reads, computed by the browser from the real CSS.
CONTRAST_JS = """
(selectors) => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const sel of selectors) {
    for (const el of document.querySelectorAll(sel)) {
      if (!el.offsetParent && el.tagName !== 'BODY') continue;
      const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3));
      const bg = lum(background(el));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      out.push([sel, Math.round(ratio * 100) / 100]);
    }
  }
  return out;
}
"""


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
    deadline = time.monotonic() + 60
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


class Loopback:
    """Aborts and remembers any request that would leave 127.0.0.1 (the site is offline)."""

    def __init__(self) -> None:
        self.blocked: list[str] = []

    def __call__(self, route: Route, request: Request) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(request.url)
            route.abort()


def _page(browser: Browser, loopback: Loopback, **options: Any) -> Page:
    context = browser.new_context(**options)
    context.route("**/*", loopback)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _check_page(page: Page) -> None:
    """Readable contrast and no sideways scrolling at this width."""
    ratios = page.evaluate(
        CONTRAST_JS, ["body", "main p", "main a", "main li", "button", ".notice", ".meta"]
    )
    low = [(sel, r) for sel, r in ratios if r < 4.5]
    assert not low, f"text below WCAG AA contrast: {low[:5]}"
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


def _count(factory: sessionmaker[Session], model: type, *where: Any) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _views(factory: sessionmaker[Session], entry_id: int) -> dict[str, int]:
    with factory() as s:
        rows = s.execute(
            select(PageView.source, func.sum(PageView.count))
            .where(PageView.entry_id == entry_id)
            .group_by(PageView.source)
        )
        return {str(source): int(n) for source, n in rows}


def test_browse_search_read_vote_and_switch_language(
    live_server: str,
    browser: Browser,
    session_factory: sessionmaker[Session],
    seed_articles: list[Article],
) -> None:
    loopback = Loopback()
    ja = [a for a in seed_articles if a.language == "ja" and a.questions and a.translation_group]
    target = ja[len(ja) // 2]
    query = target.questions[0]
    with session_factory() as s:
        entry = s.scalar(select(FaqEntry).where(FaqEntry.slug == target.slug))
        english = s.scalar(
            select(FaqEntry).where(
                FaqEntry.translation_group == target.translation_group, FaqEntry.language == "en"
            )
        )
    assert entry is not None and english is not None

    page = _page(browser, loopback, **DESKTOP)
    page.goto(f"{live_server}/?lang=ja")
    expect(page.locator("h1")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "ja"
    _check_page(page)
    _shot(page, "home-desktop")
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.className") == "skip"

    # Search in Japanese with the keyboard only.
    page.get_by_label("ヘルプセンターを検索").first.fill(query)
    page.keyboard.press("Enter")
    page.wait_for_url("**/search?*")
    results = page.locator("ol.results a")
    expect(results.first).to_be_visible()
    hrefs = [results.nth(i).get_attribute("href") or "" for i in range(results.count())]
    assert any(urlsplit(h).path == f"/faq/{target.slug}" for h in hrefs), hrefs
    _check_page(page)
    _shot(page, "search-desktop")

    page.locator(f'ol.results a[href^="/faq/{target.slug}?"]').click()
    page.wait_for_url(f"**/faq/{target.slug}?*")
    expect(page.locator("h1")).to_have_text(target.question)
    _check_page(page)
    _shot(page, "article-desktop")
    assert _views(session_factory, entry.id) == {"search": 1}
    with session_factory() as s:
        log = s.scalars(select(SearchLog)).one()
        assert log.clicked_entry_id == entry.id and log.language == "ja"

    # Vote with JavaScript: the panel is swapped in place, the page does not reload.
    url_before = page.url
    page.get_by_role("button", name="はい", exact=True).click()
    expect(page.locator('#feedback [role=status][data-vote="yes"]')).to_be_visible()
    assert page.url == url_before
    assert page.evaluate("document.activeElement.getAttribute('role')") == "status"
    assert _count(session_factory, Vote, Vote.entry_id == entry.id) == 1
    _shot(page, "article-voted-desktop")

    # A second vote from the same browser replaces the first; a "no" may carry a comment.
    page.get_by_role("button", name="回答を「いいえ」に変更").click()
    expect(page.locator('#feedback [role=status][data-vote="no"]')).to_be_visible()
    page.get_by_label("どのような情報をお探しでしたか？（任意）").fill("手順の画面が古いです")
    page.get_by_role("button", name="送信").click()
    expect(page.locator('#feedback [data-comment="saved"]')).to_be_visible()
    with session_factory() as s:
        votes = s.scalars(select(Vote).where(Vote.entry_id == entry.id)).all()
        assert [(v.helpful, v.comment) for v in votes] == [(False, "手順の画面が古いです")]
        assert votes[0].revision_id == entry.current_revision_id

    page.reload()  # the same visitor within 30 minutes: still one view
    expect(page.locator('#feedback [data-vote="no"]')).to_be_visible()
    assert _views(session_factory, entry.id) == {"search": 1}

    # The language switch leads to the same article in English.
    page.locator("a.translation").click()
    page.wait_for_url(f"**/faq/{english.slug}")
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.locator("h1")).to_have_text(english.current_revision.question)  # type: ignore[union-attr]
    assert _views(session_factory, english.id) == {"direct": 1}
    assert page.errors == []  # type: ignore[attr-defined]

    # Without JavaScript the form posts and the server redirects back with the stored vote.
    plain = _page(browser, loopback, java_script_enabled=False, **DESKTOP)
    plain.goto(f"{live_server}/faq/{target.slug}?src=reply")
    plain.get_by_role("button", name="いいえ", exact=True).click()
    plain.wait_for_url(f"**/faq/{target.slug}#feedback")
    expect(plain.locator('#feedback [role=status][data-vote="no"]')).to_be_visible()
    assert _count(session_factory, Vote, Vote.entry_id == entry.id) == 2  # two visitors
    assert _views(session_factory, entry.id) == {"search": 1, "reply": 1}

    # The same pages at phone width.
    phone = _page(browser, loopback, **MOBILE)
    phone.goto(f"{live_server}/?lang=ja")
    _check_page(phone)
    _shot(phone, "home-mobile")
    phone.goto(f"{live_server}/search?q={query}&lang=ja")
    expect(phone.locator("ol.results a").first).to_be_visible()
    _check_page(phone)
    _shot(phone, "search-mobile")
    phone.goto(f"{live_server}/faq/{target.slug}")
    _check_page(phone)
    _shot(phone, "article-mobile")

    assert loopback.blocked == []
    for name in ("home", "search", "article"):
        for width in ("desktop", "mobile"):
            assert (SHOTS / f"{name}-{width}.png").stat().st_size > 1000


def test_search_shows_answers_closest_and_highlights_at_both_widths(
    live_server: str, browser: Browser
) -> None:
    loopback = Loopback()
    for name, options in (("desktop", DESKTOP), ("mobile", MOBILE)):
        page = _page(browser, loopback, **options)
        page.goto(f"{live_server}/search?q=パスワードを忘れた&lang=ja")
        answers = page.locator("section.answers")
        closest = page.locator("section.closest")
        expect(answers.get_by_role("heading", name="この質問に答える記事")).to_be_visible()
        expect(closest.get_by_role("heading", name="近い記事")).to_be_visible()
        first = answers.locator("li.result").first
        expect(first.locator("a")).to_have_attribute(
            "href", re.compile(r"^/faq/reset-password-ja\?")
        )
        expect(first.locator("a mark").first).to_have_text("パスワード")
        expect(first.locator(".category")).to_have_text("アカウント・ログイン")
        expect(closest.locator("li.result").first).to_be_visible()
        # The answers come above the closest articles, and every mark is on screen.
        top_answers = answers.bounding_box()
        top_closest = closest.bounding_box()
        assert top_answers and top_closest and top_answers["y"] < top_closest["y"]
        assert page.locator("main mark").count() >= 2
        ratios = page.evaluate(CONTRAST_JS, ["mark", ".results .category", ".closest .hint"])
        assert ratios and all(r >= 4.5 for _, r in ratios), ratios
        _check_page(page)
        _shot(page, f"search-cut-{name}")

        # An unrelated search: no answers, said so, and the closest under their label.
        page.goto(f"{live_server}/search?q=pizza recipe with fresh tomatoes&lang=en")
        expect(page.locator("p.empty[role=status]")).to_be_visible()
        assert page.locator("section.answers").count() == 0
        expect(page.get_by_role("heading", name="Closest articles")).to_be_visible()
        _check_page(page)
        # The favicon is linked and served.
        icon = page.locator('link[rel="icon"]').get_attribute("href")
        assert icon == "/static/favicon.svg"
        assert page.request.get(f"{live_server}{icon}").status == 200
        assert page.errors == []  # type: ignore[attr-defined]
    assert loopback.blocked == []
