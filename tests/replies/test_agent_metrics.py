"""GET /v1/metrics over a window: every figure checked against the rows it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from indexer.lexical.tokenizer import default_tokenizer
from kb.db import session_scope
from kb.models import (
    EntryStatus,
    FaqEntry,
    PostRole,
    Suggestion,
    SuggestionOutcome,
    Thread,
    ThreadPost,
    ThreadStatus,
    TriageAdvice,
)
from kb.replies.metrics import content_gaps, has_faq_link

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=7)


@dataclass
class Row:
    triage: TriageAdvice | None
    abstained: bool
    outcome: SuggestionOutcome | None = None
    dm: bool | None = None
    days_ago: float = 1.0
    text: str = "my esim won't activate"
    language: str = "en"


ROWS = [
    Row(TriageAdvice.reply, False, SuggestionOutcome.sent),
    Row(TriageAdvice.reply, False, SuggestionOutcome.sent, dm=True),
    Row(TriageAdvice.reply, False, SuggestionOutcome.edited),
    Row(TriageAdvice.reply, False, SuggestionOutcome.rejected),
    Row(TriageAdvice.reply, False, None),
    Row(None, False, SuggestionOutcome.sent),  # recorded before triage existed
    Row(TriageAdvice.thank, False, SuggestionOutcome.sent),
    Row(TriageAdvice.skip, True, None),
    Row(TriageAdvice.skip, False, None),
    Row(TriageAdvice.reply, True, None, text="can I pay my bill with bitcoin?"),
    Row(TriageAdvice.reply, True, None, text="do you accept bitcoin for the monthly bill"),
    Row(TriageAdvice.reply, True, None, text="bitcoin payment for my bill possible?"),
    Row(TriageAdvice.reply, True, None, text="ペット保険はありますか", language="ja"),
    Row(TriageAdvice.reply, True, None, text="ペット保険に入りたい", language="ja"),
    Row(TriageAdvice.reply, True, None, text="is there a karaoke plan for my phone"),
    Row(TriageAdvice.thank, True, None, text="lovely bitcoin weather today"),
    # Outside the window: counted nowhere.
    Row(TriageAdvice.reply, False, SuggestionOutcome.rejected, days_ago=9),
    Row(TriageAdvice.reply, True, None, days_ago=30, text="bitcoin bitcoin"),
]


def _seed_suggestions(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        faq = s.scalars(select(FaqEntry.id)).first()
        for r in ROWS:
            s.add(
                Suggestion(
                    text=r.text,
                    language=r.language,
                    channel="x",
                    candidates=[{"faq_id": faq, "score": 0.5}],
                    best_faq_id=None if r.abstained else faq,
                    confidence=0.1 if r.abstained else 0.8,
                    abstained=r.abstained,
                    latency_ms=10.0,
                    outcome=r.outcome,
                    outcome_faq_id=faq if r.outcome else None,
                    triage=r.triage,
                    dm_handoff=r.dm,
                    created_at=NOW - timedelta(days=r.days_ago),
                )
            )


THREADS = [
    # (agent posts, days since resolved)
    (["Here you go: https://help.sorami-mobile.com/faq/esim-iphone-activate?src=reply"], 1),
    (["詳しくはこちら [eSIMの設定](/faq/esim-iphone-activate-ja) をご覧ください"], 2),
    (["Please restart your phone."], 1),  # one reply, no FAQ link
    (["Sorry!", "See https://help.sorami-mobile.com/faq/no-signal"], 3),  # two replies
    (["See https://help.sorami-mobile.com/faq/no-signal"], 10),  # outside the window
]


def _seed_threads(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        for n, (replies, days) in enumerate(THREADS):
            thread = Thread(
                channel="x",
                external_id=f"t{n}",
                status=ThreadStatus.covered,
                resolved_at=NOW - timedelta(days=days),
            )
            thread.posts.append(
                ThreadPost(position=0, role=PostRole.customer, author_hash="c", text_raw="help?")
            )
            for i, text in enumerate(replies, 1):
                thread.posts.append(
                    ThreadPost(position=i, role=PostRole.agent, author_hash="a", text_raw=text)
                )
            s.add(thread)


def _seed_growth(factory: sessionmaker[Session]) -> tuple[int, int]:
    """All seed FAQs are a month old except two published three days ago."""
    with session_scope(factory) as s:
        s.execute(update(FaqEntry).values(created_at=NOW - timedelta(days=30)))
        recent = s.scalars(select(FaqEntry).order_by(FaqEntry.id.desc()).limit(2)).all()
        for entry in recent:
            entry.created_at = NOW - timedelta(days=3)
        published = s.scalars(select(FaqEntry).where(FaqEntry.status == EntryStatus.published))
        total = len(published.all())
    return total - 2, total


def test_metrics_of_a_window(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    _seed_suggestions(session_factory)
    _seed_threads(session_factory)
    at_start, at_end = _seed_growth(session_factory)
    r = client.get(
        "/v1/metrics",
        params={"start": START.isoformat(), "end": NOW.isoformat()},
        headers=agent_headers,
    )
    assert r.status_code == 200, r.text
    m = r.json()

    inside = [x for x in ROWS if x.days_ago < 7]
    needing = [x for x in inside if x.triage in (None, TriageAdvice.reply)]
    made = [x for x in needing if not x.abstained]
    reported = [x for x in made if x.outcome]
    accepted = [x for x in reported if x.outcome != SuggestionOutcome.rejected]
    assert m["posts_seen"] == len(inside)
    assert m["triage"] == {
        "reply": len(needing),
        "thank": sum(x.triage == TriageAdvice.thank for x in inside),
        "skip": sum(x.triage == TriageAdvice.skip for x in inside),
    }
    assert m["needing_reply"] == len(needing) and m["suggestions_made"] == len(made)
    assert m["coverage"] == round(len(made) / len(needing), 4)
    assert m["outcomes"]["reported"] == len(reported)
    assert m["outcomes"]["rejected"] == 1 and m["outcomes"]["edited"] == 1
    assert m["acceptance"] == round(len(accepted) / len(reported), 4)
    assert m["dm_handoffs"] == sum(bool(x.dm) for x in inside)

    resolved = [t for t in THREADS if t[1] < 7]
    one = [t for t in resolved if len(t[0]) == 1 and has_faq_link(t[0][0])]
    assert m["threads_resolved"] == len(resolved) == 4
    assert m["resolved_with_one_faq_reply"] == len(one) == 2
    assert m["one_reply_resolution"] == round(len(one) / len(resolved), 4)

    assert (m["faqs_at_start"], m["faqs_at_end"], m["faqs_added"]) == (at_start, at_end, 2)
    assert m["faq_growth"] == round(2 / at_start, 4)

    gaps = m["content_gaps"]
    assert gaps[0]["posts"] == 3 and gaps[0]["language"] == "en"
    assert "bitcoin" in gaps[0]["terms"] and len(gaps[0]["examples"]) == 3
    assert gaps[1]["posts"] == 2 and gaps[1]["language"] == "ja"
    assert all("bitcoin weather" not in e for g in gaps for e in g["examples"])  # a thank-you
    assert sum(g["posts"] for g in gaps) == sum(x.abstained for x in needing)
    assert m["threshold"]["threshold"] == m["threshold"]["base"]  # no outcomes learnt from


def test_metrics_defaults_and_bad_windows(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    _seed_suggestions(session_factory)
    m = client.get("/v1/metrics", headers=agent_headers).json()  # the last 7 days
    assert m["posts_seen"] == sum(x.days_ago < 7 for x in ROWS)
    m = client.get("/v1/metrics", params={"days": 60, "gaps": 0}, headers=agent_headers).json()
    assert m["posts_seen"] == len(ROWS) and m["content_gaps"] == []
    r = client.get(
        "/v1/metrics",
        params={"start": NOW.isoformat(), "end": START.isoformat()},
        headers=agent_headers,
    )
    assert r.status_code == 400 and "before" in r.json()["detail"]
    assert client.get("/v1/metrics", params={"days": 0}, headers=agent_headers).status_code == 422
    for params in (
        {"start": "0001-01-01T00:00:00+01:00"},
        {"end": "0001-01-02T00:00:00Z", "days": 7},
    ):
        r = client.get("/v1/metrics", params=params, headers=agent_headers)
        assert r.status_code == 400 and "years" in r.json()["detail"]
    assert client.get("/v1/metrics").status_code == 401
    empty = client.get(
        "/v1/metrics",
        params={"start": "2001-01-01T00:00:00Z", "end": "2001-02-01T00:00:00Z"},
        headers=agent_headers,
    ).json()
    assert empty["posts_seen"] == 0 and empty["coverage"] is None and empty["acceptance"] is None


def test_gap_grouping_keeps_languages_apart_and_unrelated_posts_alone(
    session_factory: sessionmaker[Session],
) -> None:
    texts = [
        ("en", "can I pay my bill with bitcoin?"),
        ("en", "bitcoin payment for my bill possible?"),
        ("en", "is there a karaoke plan for my phone"),
        ("ja", "ビットコインで支払いできますか"),
        ("ja", "ビットコインで払いたい"),
        ("en", "karaoke plan available?"),
    ]
    with session_scope(session_factory) as s:
        for i, (lang, text) in enumerate(texts):
            s.add(
                Suggestion(
                    text=text,
                    language=lang,
                    candidates=[],
                    confidence=0.05,
                    abstained=True,
                    latency_ms=1.0,
                    triage=TriageAdvice.reply,
                    created_at=NOW - timedelta(hours=10 - i),
                )
            )
    with session_factory() as s:
        gaps = content_gaps(s, START, NOW, default_tokenizer().tokenize)
    groups = sorted((g.language, sorted(g.examples)) for g in gaps)
    assert groups == [
        ("en", sorted([texts[0][1], texts[1][1]])),
        ("en", sorted([texts[2][1], texts[5][1]])),
        ("ja", sorted([texts[3][1], texts[4][1]])),
    ]
    assert all(g.nearest_faq_id is None for g in gaps)
