"""`faqloop import-feedback`: history from another help center, idempotent per slug and date,
bad rows named by line (exit 2) while good rows land."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kb.db import session_scope
from kb.faqs import entries as faqs
from kb.faqs.merge import merge_entries
from kb.health import flags, scores
from kb.health.feedback_import import import_feedback, read_feedback
from kb.health.scores import HealthPolicy
from kb.models import DailyFeedback, FaqEntry, FlagKind
from tests.support.serve import run as run_cli
from tests.support.serve import serve_env

TODAY = date(2026, 11, 20)


@pytest.fixture
def articles(session_factory: sessionmaker[Session]) -> dict[str, int]:
    with session_scope(session_factory) as s:
        out = {}
        for slug, question, lang in (
            ("reset-password", "How do I reset my password?", "en"),
            ("apn-settings", "What are the APN settings?", "en"),
            ("reset-password-ja", "パスワードを再設定するには？", "ja"),
        ):
            entry = faqs.create_entry(
                s, question=question, answer="Answer.", category="account", language=lang, slug=slug
            )
            out[slug] = entry.id
        return out


def _rows(session: Session) -> dict[tuple[str, date], tuple[int, int, int, int]]:
    out = {}
    for fb in session.scalars(select(DailyFeedback)):
        entry = session.get(FaqEntry, fb.entry_id)
        assert entry is not None
        out[(entry.slug, fb.day)] = (fb.views, fb.helpful, fb.not_helpful, fb.revision_id)
    return out


def _import(session_factory: sessionmaker[Session], path: Path) -> object:
    with session_scope(session_factory) as s:
        return import_feedback(s, read_feedback(path, today=TODAY))


def test_csv_rows_land_on_the_current_revision_and_importing_again_changes_nothing(
    session_factory: sessionmaker[Session], articles: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "slug,date,views,helpful,not_helpful\n"
        "reset-password,2026-11-01,120,30,10\n"
        "reset-password,2026-11-02,80,20,5\n"
        "reset-password-ja,2026/11/02,1,234,0\n"  # unquoted thousands: 234 votes, 1 view
        'apn-settings,2026-11-02,"1,234",100,20\n',
        encoding="utf-8-sig",  # Excel's BOM
    )
    report = _import(session_factory, path)
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)  # type: ignore[attr-defined]
    [error] = report.rejected  # type: ignore[attr-defined]
    assert error.line == 4 and "more than views" in error.message
    with session_factory() as s:
        rows = _rows(s)
        reset = s.get(FaqEntry, articles["reset-password"])
        assert reset is not None
        assert rows[("reset-password", date(2026, 11, 1))] == (
            120,
            30,
            10,
            reset.current_revision_id,
        )
        assert rows[("apn-settings", date(2026, 11, 2))][:3] == (1234, 100, 20)
    again = _import(session_factory, path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)  # type: ignore[attr-defined]
    with session_factory() as s:
        assert len(_rows(s)) == 3
    # A corrected export replaces the day; it is never added twice.
    path.write_text("slug,date,views,helpful,not_helpful\nreset-password,2026-11-01,130,35,10\n")
    fixed = _import(session_factory, path)
    assert (fixed.created, fixed.updated) == (0, 1)  # type: ignore[attr-defined]
    with session_factory() as s:
        assert _rows(s)[("reset-password", date(2026, 11, 1))][:3] == (130, 35, 10)


def test_every_bad_row_is_named_and_the_good_ones_still_land(
    session_factory: sessionmaker[Session], articles: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "history.jsonl"
    lines = [
        {
            "slug": "reset-password",
            "date": "2026-10-01",
            "views": 50,
            "helpful": 5,
            "not_helpful": 1,
        },
        {"slug": "no-such-article", "date": "2026-10-01", "views": 5},
        {"slug": "reset-password", "date": "2026-13-01", "views": 5},
        {"slug": "reset-password", "date": "yesterday", "views": 5},
        {"slug": "reset-password", "date": "2026-10-02", "views": -5},
        {"slug": "reset-password", "date": "2026-10-02", "views": "many"},
        {"slug": "reset-password", "date": (TODAY + timedelta(days=1)).isoformat(), "views": 5},
        {"date": "2026-10-03", "views": 5},
        {"slug": "reset-password", "date": "2026-10-01", "views": 60},
        {"slug": "/faq/reset-password-ja", "date": "2026-10-01", "views": 7, "helpful": 1},
    ]
    text = "\n".join(json.dumps(x) for x in lines[:5]) + "\n{not json\n\n[1, 2]\n"
    text += "\n".join(json.dumps(x) for x in lines[5:]) + "\n"
    path.write_text(text, encoding="utf-8")
    report = _import(session_factory, path)
    messages = {e.line: e.message for e in report.rejected}  # type: ignore[attr-defined]
    assert set(messages) == {2, 3, 4, 5, 6, 8, 9, 10, 11, 12}
    assert "no FAQ has the slug 'no-such-article'" in messages[2]
    assert "does not exist" in messages[3] and "YYYY-MM-DD" in messages[4]
    assert "negative" in messages[5] and "invalid JSON" in messages[6]
    assert "JSON object" in messages[8] and "whole number" in messages[9]
    assert "future" in messages[10] and "slug is missing" in messages[11]
    assert "already on line 1" in messages[12]
    with session_factory() as s:
        rows = _rows(s)
        assert rows[("reset-password", date(2026, 10, 1))][:3] == (50, 5, 1)
        assert rows[("reset-password-ja", date(2026, 10, 1))][:3] == (7, 1, 0)
        assert len(rows) == 2


def test_imported_history_counts_in_health_and_can_raise_a_flag(
    session_factory: sessionmaker[Session], articles: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "zendesk.csv"
    rows = ["Article,Day,Page views,Helpful votes,Unhelpful"]
    for d in range(30):
        day = (TODAY - timedelta(days=d + 1)).isoformat()
        rows.append(f"reset-password,{day},40,1,4")
        rows.append(f"apn-settings,{day},40,4,1")
        rows.append(f"reset-password-ja,{day},40,4,1")
    path.write_text("\n".join(rows) + "\n")
    report = _import(session_factory, path)
    assert report.created == 90 and report.rejected == []  # type: ignore[attr-defined]
    policy = HealthPolicy(min_views=100, min_votes=20)
    with session_scope(session_factory) as s:
        h = scores.article_health(s, articles["reset-password"], policy)
        [rev] = h.revisions
        assert rev.counts.views["imported"] == 1200 and rev.counts.views_total == 1200
        assert (rev.counts.helpful, rev.counts.not_helpful) == (30, 120)
        assert rev.counts.organic_views == 0  # imported views are counted apart
        assert sum(p.views for p in h.series) == 1200 and len(h.series) == 30
        flags.recompute(s, policy)
        rows_, _ = flags.list_flags(s, kind=FlagKind.low_helpfulness)
        # Three articles (fewer than five judged): the bar is the pooled ratio 270/450,
        # and the bad article's upper bound (30/150 helpful) is far below it.
        assert [f.entry_id for f in rows_] == [articles["reset-password"]]


def test_a_merged_slug_lands_on_the_surviving_article(
    session_factory: sessionmaker[Session], articles: dict[str, int], tmp_path: Path
) -> None:
    with session_scope(session_factory) as s:
        merge_entries(s, articles["apn-settings"], articles["reset-password"], by="ed")
    path = tmp_path / "old.csv"
    path.write_text("slug,date,views,helpful,not_helpful\napn-settings,2026-11-03,10,1,1\n")
    report = _import(session_factory, path)
    assert report.created == 1  # type: ignore[attr-defined]
    with session_factory() as s:
        assert list(_rows(s)) == [("reset-password", date(2026, 11, 3))]


def test_cli_exit_codes_and_messages(
    db_url: str,
    tmp_path: Path,
    models_dir: Path,
    articles: dict[str, int],
    session_factory: sessionmaker[Session],
) -> None:
    env = serve_env(tmp_path / "data", db_url, models_dir)
    good = tmp_path / "good.csv"
    good.write_text("slug,date,views,helpful,not_helpful\nreset-password,2026-11-01,10,2,1\n")
    r = run_cli(env, "import-feedback", str(good))
    assert r.returncode == 0, r.stderr
    assert "1 days imported (1 new, 0 replaced, 0 unchanged); 0 rows rejected" in r.stdout
    r = run_cli(env, "import-feedback", str(good))
    assert r.returncode == 0 and "0 new, 0 replaced, 1 unchanged" in r.stdout
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        "slug,date,views,helpful,not_helpful\n"
        "apn-settings,2026-11-01,10,2,1\n"
        "nothing-here,2026-11-01,10,2,1\n"
        "apn-settings,2026-11-02,10,20,1\n"
    )
    report = tmp_path / "report.json"
    r = run_cli(env, "import-feedback", str(mixed), "--report", str(report))
    assert r.returncode == 2
    assert "line 3: no FAQ has the slug 'nothing-here'" in r.stderr
    assert "line 4: helpful + not_helpful (21) is more than views (10)" in r.stderr
    assert "2 rows rejected" in r.stderr
    body = json.loads(report.read_text())
    assert body["created"] == 1 and [e["line"] for e in body["rejected"]] == [3, 4]
    with session_factory() as s:
        assert ("apn-settings", date(2026, 11, 1)) in _rows(s)
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("article_id,when,count\n1,2026-11-01,3\n")
    r = run_cli(env, "import-feedback", str(bad_header))
    assert r.returncode == 2 and "no slug, date, views column" in r.stderr
    r = run_cli(env, "import-feedback", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run_cli(env, "import-feedback", str(good), "--format", "xml")
    assert r.returncode == 2 and "--format" in r.stderr
