"""Page views and helpful votes: counted per revision, once per visitor, robots excluded,
CSRF-protected and rate-limited; correct under concurrency (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from api.web.ratelimit import RateLimiter, VoteLimits
from indexer.embedding.encoders import CachedEmbedder
from kb.db import session_scope
from kb.errors import CsrfRejected, InvalidInput, RateLimited
from kb.faqs.entries import revise_entry
from kb.models import EntryStatus, FaqEntry, PageView, ViewSource, VisitorSeen, Vote
from kb.site import stats as site_stats
from kb.site import views as site_views
from kb.site import visitors as site_visitors
from kb.site import votes as site_votes
from kb.text.personal_data import scrub_personal_data
from tests.support.html_dom import Node, parse
from tests.support.pages import BROWSER_UA, limited_client
from tests.support.serve import run

BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0)",
    "Twitterbot/1.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; YandexBot/3.0)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "curl/8.5.0",
    "Wget/1.21",
    "python-requests/2.32.3",
    "python-httpx/0.28.1",
    "Go-http-client/1.1",
    "Scrapy/2.11 (+https://scrapy.org)",
    "Mozilla/5.0 (compatible; GPTBot/1.0; +https://openai.com/gptbot)",
    "",
]
PEOPLE = [
    BROWSER_UA,
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 9; CUBOT_X19) AppleWebKit/537.36 Chrome/120 Mobile Safari",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
]


@pytest.mark.parametrize("ua", BOTS)
def test_known_robots_are_recognised(ua: str) -> None:
    assert site_visitors.is_bot(ua)


@pytest.mark.parametrize("ua", PEOPLE)
def test_browsers_are_people(ua: str) -> None:
    assert not site_visitors.is_bot(ua)


def _entry(factory: sessionmaker[Session], language: str = "en", n: int = 0) -> FaqEntry:
    with factory() as s:
        rows = s.scalars(
            select(FaqEntry)
            .where(FaqEntry.language == language, FaqEntry.status == EntryStatus.published)
            .order_by(FaqEntry.id)
        ).all()
        return rows[n]


def _views(factory: sessionmaker[Session], entry_id: int) -> dict[tuple[int, str], int]:
    with factory() as s:
        rows = s.execute(
            select(PageView.revision_id, PageView.source, func.sum(PageView.count))
            .where(PageView.entry_id == entry_id)
            .group_by(PageView.revision_id, PageView.source)
        ).all()
    return {(rev, str(src)): int(n) for rev, src, n in rows}


def _votes(factory: sessionmaker[Session], entry_id: int) -> list[Vote]:
    with factory() as s:
        return list(s.scalars(select(Vote).where(Vote.entry_id == entry_id).order_by(Vote.id)))


def _browser(app_client: TestClient) -> TestClient:
    app_client.headers["User-Agent"] = BROWSER_UA
    return app_client


@pytest.fixture
def web(client: TestClient) -> Iterator[TestClient]:
    yield _browser(client)


def _form(doc: Node, helpful: str) -> dict[str, str]:
    """The fields a browser would send when the visitor presses the `helpful` button."""
    for form in doc.find_all("form", class_="vote"):
        values = {b.get("value") for b in form.find_all("button")} | {
            i.get("value") for i in form.find_all("input", name="helpful")
        }
        if helpful in values:
            fields = {
                i.get("name") or "": i.get("value") or ""
                for i in form.find_all("input", type="hidden")
            }
            fields["helpful"] = helpful
            return fields
    raise AssertionError(f"no form offers helpful={helpful}")


# -- views -------------------------------------------------------------------------------


def test_reloads_within_the_window_count_once_per_visitor(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entry = _entry(session_factory)
    rev = entry.current_revision_id
    assert rev is not None
    for _ in range(3):
        assert web.get(f"/faq/{entry.slug}").status_code == 200
    assert _views(session_factory, entry.id) == {(rev, "direct"): 1}
    web.cookies.clear()  # another visitor
    web.get(f"/faq/{entry.slug}?src=reply")
    web.get(f"/faq/{entry.slug}?src=reply")
    assert _views(session_factory, entry.id) == {(rev, "direct"): 1, (rev, "reply"): 1}


def test_arrival_source_is_kept_and_unknown_sources_count_as_direct(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entry = _entry(session_factory, "ja")
    rev = entry.current_revision_id
    assert rev is not None
    for src in ("reply", "search", "direct", "tweet", ""):
        web.cookies.clear()
        assert web.get(f"/faq/{entry.slug}", params={"src": src}).status_code == 200
    assert _views(session_factory, entry.id) == {
        (rev, "reply"): 1,
        (rev, "search"): 1,
        (rev, "direct"): 3,
    }


def test_robots_and_prefetches_are_not_counted(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entry = _entry(session_factory)
    for ua in BOTS:
        client.cookies.clear()
        assert client.get(f"/faq/{entry.slug}", headers={"User-Agent": ua}).status_code == 200
    client.cookies.clear()
    r = client.get(
        f"/faq/{entry.slug}", headers={"User-Agent": BROWSER_UA, "Sec-Purpose": "prefetch"}
    )
    assert r.status_code == 200
    assert _views(session_factory, entry.id) == {}
    client.cookies.clear()
    client.get(f"/faq/{entry.slug}", headers={"User-Agent": PEOPLE[1]})  # HeadlessChrome
    assert sum(_views(session_factory, entry.id).values()) == 1


def test_view_window_and_day_boundary(session_factory: sessionmaker[Session], seeded: None) -> None:
    entry = _entry(session_factory)
    rev = entry.current_revision_id
    assert rev is not None
    tokyo = ZoneInfo("Asia/Tokyo")
    # 23:50 on 1 May in Tokyo is 14:50 UTC; the repeat 29 minutes later is not counted,
    # the one 31 minutes after the first is, on 2 May in Tokyo.
    t0 = datetime(2024, 5, 1, 14, 50, tzinfo=UTC)
    kwargs = {"entry": entry, "revision_id": rev, "source": ViewSource.direct, "tz": tokyo}
    with session_scope(session_factory) as s:
        assert site_views.record_view(s, visitor="a" * 64, now=t0, **kwargs)  # type: ignore[arg-type]
        assert not site_views.record_view(
            s,
            visitor="a" * 64,
            now=t0 + timedelta(minutes=29),
            **kwargs,  # type: ignore[arg-type]
        )
        assert site_views.record_view(
            s,
            visitor="a" * 64,
            now=t0 + timedelta(minutes=31),
            **kwargs,  # type: ignore[arg-type]
        )
        assert site_views.record_view(s, visitor="b" * 64, now=t0, **kwargs)  # type: ignore[arg-type]
    with session_factory() as s:
        rows = s.execute(select(PageView.day, PageView.count).where(PageView.revision_id == rev))
        assert sorted(rows) == [(date(2024, 5, 1), 2), (date(2024, 5, 2), 1)]
    with session_scope(session_factory) as s:
        assert site_views.prune_visitors(s, older_than=t0 + timedelta(minutes=1)) == 1
        assert s.scalar(select(func.count()).select_from(VisitorSeen)) == 1


def test_concurrent_views_lose_no_count_and_repeat_none(
    session_factory: sessionmaker[Session], seeded: None
) -> None:
    entry = _entry(session_factory)
    rev = entry.current_revision_id
    assert rev is not None
    errors: list[BaseException] = []

    def worker(prefix: str, n: int, same_visitor: bool) -> None:
        try:
            for i in range(n):
                visitor = "same" if same_visitor else f"{prefix}-{i}"
                with session_scope(session_factory) as s:
                    site_views.record_view(
                        s, entry=entry, revision_id=rev, source=ViewSource.reply, visitor=visitor
                    )
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"t{t}", 15, False)) for t in range(8)]
    threads += [threading.Thread(target=worker, args=("x", 5, True)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _views(session_factory, entry.id) == {(rev, "reply"): 8 * 15 + 1}


def test_views_and_votes_belong_to_the_revision_shown(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entry = _entry(session_factory)
    first = entry.current_revision_id
    old_page = parse(web.get(f"/faq/{entry.slug}").text)
    with session_scope(session_factory) as s:
        rev = entry.current_revision
        assert rev is not None
        revise_entry(
            s,
            entry.id,
            question=rev.question,
            answer=rev.answer + "\n\nUpdated.",
            category=entry.category,
            language=entry.language,
        )
    with session_factory() as s:
        second = s.get(FaqEntry, entry.id).current_revision_id  # type: ignore[union-attr]
    assert first is not None and second is not None and second != first
    new_page = parse(web.get(f"/faq/{entry.slug}").text)  # same visitor, new text: counted
    assert _views(session_factory, entry.id) == {(first, "direct"): 1, (second, "direct"): 1}
    # The page loaded before the edit votes for the revision it showed.
    r = web.post(f"/faq/{entry.slug}/vote", data=_form(old_page, "no"), follow_redirects=False)
    assert r.status_code == 303
    web.post(f"/faq/{entry.slug}/vote", data=_form(new_page, "yes"))
    votes = _votes(session_factory, entry.id)
    assert sorted((v.revision_id, v.helpful) for v in votes) == [(first, False), (second, True)]


# -- votes -------------------------------------------------------------------------------


def test_vote_without_javascript_then_change_it(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entry = _entry(session_factory, "ja", 3)
    doc = parse(web.get(f"/faq/{entry.slug}").text)
    feedback = doc.by_id("feedback")
    assert feedback is not None and feedback.find(role="status") is None
    r = web.post(f"/faq/{entry.slug}/vote", data=_form(doc, "yes"), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/faq/{entry.slug}#feedback"
    doc = parse(web.get(r.headers["location"]).text)
    assert doc.one(role="status").get("data-vote") == "yes"
    assert [(v.helpful, v.comment) for v in _votes(session_factory, entry.id)] == [(True, None)]
    # "No" replaces the vote; the panel then offers the optional comment.
    doc = parse(web.post(f"/faq/{entry.slug}/vote", data=_form(doc, "no")).text)
    assert doc.one(role="status").get("data-vote") == "no"
    assert doc.one("textarea").get("name") == "comment"
    fields = _form(doc, "no") | {"comment": "料金の確認方法が知りたい 090-1111-2222"}
    doc = parse(web.post(f"/faq/{entry.slug}/vote", data=fields).text)
    assert doc.find(data_comment="saved") is not None
    votes = _votes(session_factory, entry.id)
    assert [(v.helpful, v.comment) for v in votes] == [(False, "料金の確認方法が知りたい <number>")]
    web.post(f"/faq/{entry.slug}/vote", data=_form(doc, "yes"))
    assert [(v.helpful, v.comment) for v in _votes(session_factory, entry.id)] == [(True, None)]


def test_enhanced_vote_returns_the_panel_alone(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entry = _entry(session_factory, "en", 4)
    doc = parse(web.get(f"/faq/{entry.slug}").text)
    r = web.post(
        f"/faq/{entry.slug}/vote", data=_form(doc, "no"), headers={"X-Requested-With": "fetch"}
    )
    assert r.status_code == 200
    fragment = parse(r.text)
    assert fragment.find("html") is None and fragment.one("section").get("id") == "feedback"
    assert fragment.one(role="status").get("data-vote") == "no"
    assert len(_votes(session_factory, entry.id)) == 1


@pytest.mark.parametrize(
    "tamper",
    ["drop_token", "wrong_token", "no_cookie", "other_visitors_token"],
)
def test_votes_without_the_right_csrf_token_are_refused(
    web: TestClient, session_factory: sessionmaker[Session], tamper: str
) -> None:
    entry = _entry(session_factory, "en", 5)
    doc = parse(web.get(f"/faq/{entry.slug}").text)
    fields = _form(doc, "yes")
    if tamper == "drop_token":
        del fields["csrf_token"]
    elif tamper == "wrong_token":
        fields["csrf_token"] = "0" * 40
    elif tamper == "no_cookie":
        web.cookies.clear()
    else:
        mine = dict(web.cookies)
        web.cookies.clear()
        fields = _form(parse(web.get(f"/faq/{entry.slug}").text), "yes")
        web.cookies.clear()
        web.cookies.update(mine)
    r = web.post(f"/faq/{entry.slug}/vote", data=fields, follow_redirects=False)
    assert r.status_code == 403
    doc = parse(r.text)
    assert doc.one(role="alert") is not None and doc.find(role="status") is None
    assert _votes(session_factory, entry.id) == []


def test_bad_vote_input_is_refused_clearly(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entry, other = _entry(session_factory, "en", 6), _entry(session_factory, "en", 7)
    doc = parse(web.get(f"/faq/{entry.slug}").text)
    cases = [
        ({"helpful": "maybe"}, "helpful"),
        ({"revision_id": str(other.current_revision_id)}, "revision"),
        ({"revision_id": "abc"}, "revision_id"),
        ({"helpful": "no", "comment": "x" * 1001}, "1000"),
    ]
    for change, word in cases:
        r = web.post(f"/faq/{entry.slug}/vote", data=_form(doc, "yes") | change)
        assert r.status_code == 400, change
        alert = parse(r.text).one(role="alert")
        assert word in alert.text
    assert _votes(session_factory, entry.id) == []
    r = web.post("/faq/no-such-article/vote", data=_form(doc, "yes"))
    assert r.status_code == 404


def test_rate_limit_per_visitor_says_so_and_never_thanks(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    entry = _entry(session_factory, "en", 8)
    with limited_client(settings, embedder, vote_rate_limit=3) as web:
        doc = parse(web.get(f"/faq/{entry.slug}").text)
        for helpful in ("yes", "no", "yes"):
            assert web.post(f"/faq/{entry.slug}/vote", data=_form(doc, helpful)).status_code == 200
        r = web.post(f"/faq/{entry.slug}/vote", data=_form(doc, "no"), follow_redirects=False)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        page = parse(r.text)
        alert = page.one(role="alert")
        assert "seconds" in alert.text and "not recorded" in alert.text
        # The panel shows the stored vote (the third), not the refused one.
        assert page.one(role="status").get("data-vote") == "yes"
        r = web.post(
            f"/faq/{entry.slug}/vote",
            data=_form(doc, "no"),
            headers={"X-Requested-With": "fetch"},
        )
        assert r.status_code == 429 and parse(r.text).one(role="alert") is not None
    assert [v.helpful for v in _votes(session_factory, entry.id)] == [True]


def test_rate_limit_per_address_covers_new_visitors(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    entry = _entry(session_factory, "ja", 9)
    with limited_client(settings, embedder, vote_rate_limit_ip=2) as web:
        statuses = []
        for _ in range(3):
            web.cookies.clear()
            doc = parse(web.get(f"/faq/{entry.slug}").text)
            statuses.append(
                web.post(
                    f"/faq/{entry.slug}/vote", data=_form(doc, "yes"), follow_redirects=False
                ).status_code
            )
    assert statuses == [303, 303, 429]
    assert len(_votes(session_factory, entry.id)) == 2


def test_a_thousand_votes_from_one_visitor_count_once(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    entry = _entry(session_factory, "en", 10)
    # With the limit out of the way every vote is accepted, and each replaces the last.
    with limited_client(settings, embedder, vote_rate_limit=5000, vote_rate_limit_ip=5000) as web:
        doc = parse(web.get(f"/faq/{entry.slug}").text)
        fields = {h: _form(doc, h) for h in ("yes", "no")}
        answers = ["yes" if i % 3 else "no" for i in range(1000)]
        statuses = {
            web.post(
                f"/faq/{entry.slug}/vote", data=fields[answer], follow_redirects=False
            ).status_code
            for answer in answers
        }
    assert statuses == {303}
    votes = _votes(session_factory, entry.id)
    assert [v.helpful for v in votes] == [answers[-1] == "yes"]
    # And with the default limit, a flood is refused after the first few.
    with _browser(TestClient(create_app(settings, embedder=embedder))) as web:
        doc = parse(web.get(f"/faq/{entry.slug}").text)
        form = _form(doc, "no")
        codes = [
            web.post(f"/faq/{entry.slug}/vote", data=form, follow_redirects=False).status_code
            for _ in range(200)
        ]
    assert codes.count(303) == settings.vote_rate_limit
    assert codes.count(429) == 200 - settings.vote_rate_limit
    assert len(_votes(session_factory, entry.id)) == 2  # one per visitor


def test_concurrent_votes_from_one_visitor_leave_one_row(
    session_factory: sessionmaker[Session], seeded: None
) -> None:
    entry = _entry(session_factory, "ja", 11)
    errors: list[BaseException] = []

    def worker(helpful: bool) -> None:
        try:
            for _ in range(10):
                with session_scope(session_factory) as s:
                    site_votes.cast_vote(
                        s, entry=entry, revision_id=None, visitor="v" * 64, helpful=helpful
                    )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(_votes(session_factory, entry.id)) == 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ballots=st.lists(
        st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), min_size=1, max_size=30
    )
)
def test_tally_equals_the_last_vote_of_each_visitor(
    session_factory: sessionmaker[Session], seeded: None, ballots: list[tuple[int, bool, bool]]
) -> None:
    entry = _entry(session_factory, "en", 12)
    with session_scope(session_factory) as s:
        s.execute(delete(Vote).where(Vote.entry_id == entry.id))
    last: dict[int, bool] = {}
    with session_scope(session_factory) as s:
        for visitor, helpful, with_comment in ballots:
            site_votes.cast_vote(
                s,
                entry=entry,
                revision_id=None,
                visitor=f"visitor-{visitor}",
                helpful=helpful,
                comment="missing steps" if with_comment else None,
            )
            last[visitor] = helpful
    with session_factory() as s:
        (stats,) = site_stats.entry_stats(s, entry.id)
    assert stats.helpful == sum(last.values())
    assert stats.not_helpful == len(last) - sum(last.values())


# -- units -------------------------------------------------------------------------------


def test_vote_limits_count_per_visitor_and_per_address(settings: Settings) -> None:
    limits = VoteLimits.from_settings(
        settings.model_copy(
            update={"vote_rate_limit": 1, "vote_rate_limit_ip": 3, "vote_rate_window": 60.0}
        )
    )
    limits.check(visitor="v", ip="1.2.3.4")
    with pytest.raises(RateLimited) as info:  # the visitor's limit
        limits.check(visitor="v", ip="1.2.3.4")
    assert 59 <= info.value.retry_after <= 60  # until the first vote leaves the window
    assert f"Please wait {info.value.retry_after} seconds" in info.value.message
    limits.check(visitor="w", ip="1.2.3.4")  # the refused attempt counted for the address
    with pytest.raises(RateLimited):  # the address's limit
        limits.check(visitor="x", ip="1.2.3.4")
    with pytest.raises(RateLimited):  # ... and the refused attempt counted for "x"
        limits.check(visitor="x", ip="5.6.7.8")
    limits.check(visitor="y", ip="5.6.7.8")
    limits.check(visitor=None, ip=None)  # nothing to count by


def test_vote_limits_and_csrf_units() -> None:
    limits = VoteLimits(RateLimiter("votes-visitor", 1, 60), RateLimiter("votes-ip", 5, 60))
    limits.check(visitor="v", ip="1.2.3.4")
    with pytest.raises(RateLimited) as info:
        limits.check(visitor="v", ip="1.2.3.4")
    assert info.value.retry_after >= 1
    token = site_visitors.new_visitor_token()
    site_visitors.check_csrf("s" * 32, token, site_visitors.csrf_token("s" * 32, token))
    for sent, submitted in [
        (token, None),
        (token, site_visitors.csrf_token("another-secret-value", token)),
        (None, site_visitors.csrf_token("s" * 32, token)),
        ("short", site_visitors.csrf_token("s" * 32, "short")),
    ]:
        with pytest.raises(CsrfRejected):
            site_visitors.check_csrf("s" * 32, sent, submitted)
    assert site_visitors.visitor_hash("s" * 32, token) != site_visitors.visitor_hash(
        "t" * 32, token
    )
    assert len(site_visitors.visitor_hash("s" * 32, token)) == 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at a.b+c@example.co.jp", "mail me at <email>"),
        ("電話 03-1234-5678 まで", "電話 <number> まで"),
        ("contract 1234567", "contract <number>"),
        ("5G 3GB 2024年 iPhone 15", "5G 3GB 2024年 iPhone 15"),
        ("see https://example.com/x?y=1 and @taro_y", "see <url> and <handle>"),
    ],
)
def test_personal_data_is_masked(text: str, expected: str) -> None:
    assert scrub_personal_data(text) == expected


def test_parsers() -> None:
    assert site_votes.parse_helpful("はい") is True and site_votes.parse_helpful("no") is False
    with pytest.raises(InvalidInput):
        site_votes.parse_helpful(None)
    assert site_visitors.parse_source("REPLY") == ViewSource.reply
    assert site_visitors.parse_source("utm") == ViewSource.direct
    assert site_visitors.negotiate_language("en;q=0.2, ja;q=0.8") == "ja"
    assert site_visitors.negotiate_language("de, fr") == "ja"
    assert site_visitors.negotiate_language("en-GB") == "en"
    assert site_votes.clean_comment("   ") is None


def test_prune_visitors_command(
    tmp_path: Path, db_url: str, session_factory: sessionmaker[Session], seeded: None
) -> None:
    entry = _entry(session_factory)
    rev = entry.current_revision_id
    assert rev is not None
    old = datetime.now(UTC) - timedelta(hours=2)
    with session_scope(session_factory) as s:
        for visitor, at in (("old", old), ("new", datetime.now(UTC))):
            site_views.record_view(
                s, entry=entry, revision_id=rev, source=ViewSource.direct, visitor=visitor, now=at
            )
    env = dict(os.environ, FAQLOOP_DATA_DIR=str(tmp_path / "data"), FAQLOOP_DATABASE_URL=db_url)
    done = run(env, "prune-visitors", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("removed 1 visitor marks")
    with session_factory() as s:
        assert list(s.scalars(select(VisitorSeen.visitor_hash))) == ["new"]
        assert sum(s.scalars(select(PageView.count))) == 2  # counts are never touched
