"""Outcomes: recorded once, masked, teaching phrasings when sent or edited (or the better FAQ
when rejected), and moving the learnt abstention threshold that suggest then uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.models import FaqEntry, PhrasingSource, QuestionPhrasing, Suggestion, SuggestionOutcome
from kb.replies.outcomes import ThresholdPolicy, choose_threshold

POST_EN = "@SoramiMobile forgot my password and now I'm locked out of the app, what do I do?"
POST_JA = "@ソラミモバイル パスワード忘れてログインできない…どうすればいい？"


def _suggest(client: TestClient, headers: dict[str, str], text: str) -> dict:  # type: ignore[type-arg]
    r = client.post("/v1/suggest", json={"text": text}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _outcome(
    client: TestClient, headers: dict[str, str], suggestion_id: int, **body: object
) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = client.post(f"/v1/suggestions/{suggestion_id}/outcome", json=body, headers=headers)
    return r.status_code, r.json()


def _phrasings(factory: sessionmaker[Session], faq_id: int) -> list[QuestionPhrasing]:
    with factory() as s:
        return list(
            s.scalars(
                select(QuestionPhrasing).where(
                    QuestionPhrasing.entry_id == faq_id,
                    QuestionPhrasing.source == PhrasingSource.outcome,
                )
            )
        )


def test_sent_teaches_the_faq_a_phrasing_that_is_searchable_once_approved(
    client: TestClient,
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    first = _suggest(client, agent_headers, POST_EN)
    faq_id = first["best"]["faq_id"]
    status, body = _outcome(client, agent_headers, first["suggestion_id"], outcome="sent")
    assert status == 200, body
    # One agent's lesson waits for trust (tests/replies/test_quarantine.py).
    assert body["phrasing_added"] is False and body["phrasing_pending"] is True
    assert body["faq_id"] == faq_id and body["repeated"] is False
    learnt = _phrasings(session_factory, faq_id)
    approved = client.post(f"/v1/phrasings/{learnt[0].id}/approve", headers=editor_headers)
    assert approved.status_code == 200, approved.text
    with session_factory() as s:
        row = s.get(Suggestion, first["suggestion_id"])
        assert row is not None and row.outcome == SuggestionOutcome.sent
        assert row.outcome_faq_id == faq_id and row.outcome_at is not None
        assert [p.text for p in learnt] == [row.text]
    # The post is now one of the FAQ's texts: the same post matches it more confidently.
    again = _suggest(client, agent_headers, POST_EN)
    assert again["best"]["faq_id"] == faq_id
    assert again["confidence"] > first["confidence"]
    faq = client.get(f"/v1/faqs/{faq_id}", headers=agent_headers).json()
    assert any(p["source"] == "outcome" for p in faq["phrasings"])


def test_edited_needs_the_final_text_and_keeps_it_masked(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    out = _suggest(client, agent_headers, POST_JA)
    sid = out["suggestion_id"]
    status, body = _outcome(client, agent_headers, sid, outcome="edited")
    assert status == 400 and "final_text" in body["detail"]
    final = "パスワードの再設定はこちら。折り返しは090-1234-5678へ https://help.example.jp/faq/x"
    status, body = _outcome(client, agent_headers, sid, outcome="edited", final_text=final)
    assert status == 200 and body["phrasing_pending"] is True
    with session_factory() as s:
        row = s.get(Suggestion, sid)
        assert row is not None and row.outcome == SuggestionOutcome.edited
        assert row.outcome_text is not None and "090-1234-5678" not in row.outcome_text
        assert (
            "<number>" in row.outcome_text and "https://help.example.jp/faq/x" in row.outcome_text
        )


def test_rejected_with_a_better_faq_teaches_that_faq(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    out = _suggest(client, agent_headers, POST_EN)
    suggested = out["best"]["faq_id"]
    with session_factory() as s:
        better = s.scalar(
            select(FaqEntry.id).where(FaqEntry.slug == "verification-code-not-arriving")
        )
    assert better is not None and better != suggested
    status, body = _outcome(
        client, agent_headers, out["suggestion_id"], outcome="rejected", faq_id=better
    )
    assert status == 200 and body["phrasing_pending"] is True
    assert len(_phrasings(session_factory, better)) == 1
    assert _phrasings(session_factory, suggested) == []
    # A plain rejection teaches nothing.
    other = _suggest(client, agent_headers, POST_EN + " pls")
    status, body = _outcome(client, agent_headers, other["suggestion_id"], outcome="rejected")
    assert status == 200 and body["phrasing_added"] is False and body["faq_id"] is None


def test_outcomes_are_recorded_once_and_bad_input_changes_nothing(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    out = _suggest(client, agent_headers, POST_EN)
    sid = out["suggestion_id"]
    assert _outcome(client, agent_headers, sid, outcome="maybe")[0] == 422
    assert _outcome(client, agent_headers, sid, outcome="sent", faq_id=999_999)[0] == 404
    assert _outcome(client, agent_headers, 999_999, outcome="sent")[0] == 404
    with session_factory() as s:
        row = s.get(Suggestion, sid)
        assert row is not None and row.outcome is None
    assert _outcome(client, agent_headers, sid, outcome="sent")[0] == 200
    status, body = _outcome(client, agent_headers, sid, outcome="sent")
    assert status == 200 and body["repeated"] is True and body["phrasing_added"] is False
    status, body = _outcome(client, agent_headers, sid, outcome="rejected")
    assert status == 409 and body["error"] == "conflict"
    assert len(_phrasings(session_factory, out["best"]["faq_id"])) == 1
    r = client.post(f"/v1/suggestions/{sid}/outcome", json={"outcome": "sent"})
    assert r.status_code == 401


def test_abstained_suggestions_need_the_faq_that_was_sent(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    out = _suggest(client, agent_headers, "@SoramiMobile do you sell moon roaming for astronauts")
    assert out["abstained"] is True and out["best"] is None
    status, body = _outcome(client, agent_headers, out["suggestion_id"], outcome="sent")
    assert status == 400 and "faq_id" in body["detail"]
    top = out["candidates"][0]["faq_id"]
    status, body = _outcome(client, agent_headers, out["suggestion_id"], outcome="sent", faq_id=top)
    assert status == 200 and body["faq_id"] == top


def test_thank_you_drafts_teach_no_phrasing(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    out = _suggest(client, agent_headers, "@SoramiMobile password reset worked, thank you so much!")
    assert out["triage"]["advice"] == "thank"
    faq_id = out["candidates"][0]["faq_id"]
    status, body = _outcome(
        client, agent_headers, out["suggestion_id"], outcome="sent", faq_id=faq_id
    )
    assert status == 200 and body["phrasing_added"] is False
    assert _phrasings(session_factory, faq_id) == []


# -- the learnt threshold ----------------------------------------------------------------


def _brute_force(points: list[tuple[float, bool]], policy: ThresholdPolicy) -> float:
    lo, hi = policy.bounds
    for t in sorted({lo, hi} | {c for c, _ in points if lo < c < hi}):
        judged = [ok for c, ok in points if c >= t]
        if len(judged) >= policy.min_outcomes and sum(judged) / len(judged) >= (
            policy.target_acceptance
        ):
            return round(t, 4)
    return round(hi, 4)


def test_threshold_stays_calibrated_without_enough_outcomes() -> None:
    policy = ThresholdPolicy(base=0.24, min_outcomes=10)
    learnt = choose_threshold([(0.5, True)] * 9, policy)
    assert learnt.threshold == 0.24 and learnt.outcomes == 9
    assert (
        choose_threshold([(0.5, True)] * 50, ThresholdPolicy(base=0.3, enabled=False)).threshold
        == 0.3
    )


def test_threshold_goes_down_when_low_confidence_suggestions_are_accepted() -> None:
    policy = ThresholdPolicy(base=0.3, min_outcomes=10, max_shift=0.1, target_acceptance=0.8)
    points = [(0.15 + i * 0.01, True) for i in range(30)]
    learnt = choose_threshold(points, policy)
    assert learnt.threshold == pytest.approx(0.2)  # the lower bound: everything was accepted
    assert learnt.accepted_share == 1.0 and learnt.judged == 25


def test_threshold_goes_up_when_agents_reject_what_it_lets_through() -> None:
    policy = ThresholdPolicy(base=0.3, min_outcomes=10, max_shift=0.2, target_acceptance=0.8)
    # Below 0.42 agents reject half; above they accept all.
    points = [(0.25 + i * 0.005, i % 2 == 0) for i in range(34)]
    points += [(0.42 + i * 0.005, True) for i in range(20)]
    learnt = choose_threshold(points, policy)
    assert 0.3 < learnt.threshold <= 0.42
    assert learnt.threshold == _brute_force(points, policy)
    assert learnt.accepted_share is not None and learnt.accepted_share >= 0.8
    # Nothing reaches the target: the upper bound.
    bad = [(0.2 + i * 0.01, i % 3 == 0) for i in range(60)]
    assert choose_threshold(bad, policy).threshold == pytest.approx(0.5)


@given(
    points=st.lists(
        st.tuples(st.floats(0, 1, allow_nan=False), st.booleans()), min_size=0, max_size=120
    ),
    base=st.floats(0.05, 0.95),
    shift=st.floats(0, 0.5),
    target=st.floats(0.5, 1.0),
    minimum=st.integers(1, 40),
)
def test_learnt_threshold_is_the_lowest_that_keeps_the_target_within_bounds(
    points: list[tuple[float, bool]], base: float, shift: float, target: float, minimum: int
) -> None:
    policy = ThresholdPolicy(
        base=base, max_shift=shift, target_acceptance=target, min_outcomes=minimum
    )
    learnt = choose_threshold(points, policy)
    lo, hi = policy.bounds
    if len(points) < minimum:
        assert learnt.threshold == round(base, 4)
        return
    assert round(lo, 4) <= learnt.threshold <= round(hi, 4)
    assert learnt.threshold == _brute_force(points, policy)


@pytest.fixture
def learning_client(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> Iterator[TestClient]:
    """The app with a threshold that learns from five outcomes, up to 0.3 either way."""
    tuned = settings.model_copy(update={"threshold_min_outcomes": 5, "threshold_max_shift": 0.3})
    with TestClient(create_app(tuned, embedder=embedder)) as c:
        yield c


def test_suggest_follows_the_threshold_learnt_from_outcomes(
    learning_client: TestClient, agent_headers: dict[str, str]
) -> None:
    client = learning_client
    probe = "@SoramiMobile do you sell moon roaming for astronauts"
    before = _suggest(client, agent_headers, probe)
    assert before["abstained"] is True
    posts = [
        "@SoramiMobile is there a student discount or something",
        "@SoramiMobile can I get a paper bill mailed to me",
        "@SoramiMobile does the sim work in a tablet",
        "@SoramiMobile what happens to my data if I travel to Guam",
        "@SoramiMobile can I share my plan with my mum",
        "@SoramiMobile change my number to a nicer one?",
    ]
    recorded = 0
    threshold = None
    for text in posts:
        out = _suggest(client, agent_headers, text)
        top = out["candidates"][0]["faq_id"]
        # The agent sent the top candidate each time: the ranking was right.
        status, body = _outcome(
            client, agent_headers, out["suggestion_id"], outcome="sent", faq_id=top
        )
        assert status == 200, body
        recorded += 1
        threshold = body["threshold"]
    assert threshold is not None and recorded >= 5
    base = client.get("/v1/metrics", headers=agent_headers).json()["threshold"]["base"]
    assert threshold < base  # every one accepted: the threshold went down...
    assert threshold == pytest.approx(max(0.0, base - 0.3))  # ...to its lower bound
    after = _suggest(client, agent_headers, probe)
    # ...and suggest uses it: the post it abstained on before is now answered.
    assert after["confidence"] == pytest.approx(before["confidence"], abs=1e-3)
    assert after["confidence"] >= threshold and after["abstained"] is False
