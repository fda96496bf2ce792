"""Learning needs trust: a phrasing learnt from agents' outcomes is not indexed (moves
neither suggest nor public search) until an editor approves it or enough distinct agents
(FAQLOOP_PHRASING_AGREEMENT_AGENTS) taught it; one agent cannot reroute a question."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.auth.keys import create_key
from kb.db import session_scope
from kb.models import AuditEvent, FaqEntry, PhrasingSource, PhrasingStatus, QuestionPhrasing

# An English post about a forgotten password; agents "reject" it naming an unrelated FAQ.
POST = "locked out of the app after forgetting my password, how do I get back in"
TARGET_SLUG = "verification-code-not-arriving"


@pytest.fixture
def web(settings: Settings, embedder: CachedEmbedder, seeded: None) -> Iterator[TestClient]:
    # Public search and suggest come from different addresses' budgets; keep them generous.
    with TestClient(create_app(settings, embedder=embedder)) as client:
        yield client


def _agent(factory: sessionmaker[Session], name: str, role: str = "agent") -> dict[str, str]:
    with session_scope(factory) as s:
        _, secret = create_key(s, role=role, name=name)
    return {"Authorization": f"Bearer {secret}"}


def _target(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        faq = s.scalar(select(FaqEntry.id).where(FaqEntry.slug == TARGET_SLUG))
    assert faq is not None
    return faq


def _reroute(client: TestClient, headers: dict[str, str], faq_id: int) -> dict:  # type: ignore[type-arg]
    """Suggest POST, then report that the agent sent `faq_id` instead."""
    r = client.post("/v1/suggest", json={"text": POST}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["best"]["faq_id"] != faq_id
    r = client.post(
        f"/v1/suggestions/{r.json()['suggestion_id']}/outcome",
        json={"outcome": "rejected", "faq_id": faq_id},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _public_top(client: TestClient) -> str:
    r = client.get("/v1/public/search", params={"q": POST, "lang": "en"})
    assert r.status_code == 200, r.text
    return str(r.json()["results"][0]["slug"])


def _suggest_top(client: TestClient, headers: dict[str, str]) -> int:
    r = client.post("/v1/suggest", json={"text": POST}, headers=headers)
    return int(r.json()["best"]["faq_id"])


def _learnt(factory: sessionmaker[Session], faq_id: int) -> list[QuestionPhrasing]:
    with factory() as s:
        return list(
            s.scalars(
                select(QuestionPhrasing).where(
                    QuestionPhrasing.entry_id == faq_id,
                    QuestionPhrasing.source == PhrasingSource.outcome,
                )
            )
        )


def test_one_agent_cannot_move_public_search(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    target = _target(session_factory)
    before = _public_top(web)
    assert before != TARGET_SLUG
    agent = _agent(session_factory, "eager agent")
    for _ in range(5):  # the same agent, again and again
        body = _reroute(web, agent, target)
        assert body["phrasing_added"] is False and body["phrasing_pending"] is True
    assert _public_top(web) == before
    assert _suggest_top(web, agent) != target
    learnt = _learnt(session_factory, target)
    assert len(learnt) == 1 and learnt[0].status == PhrasingStatus.pending


def test_distinct_agents_agreeing_make_it_searchable(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    target = _target(session_factory)
    agents = [_agent(session_factory, f"agent {i}") for i in range(3)]  # the default N is 3
    for agent in agents[:2]:
        assert _reroute(web, agent, target)["phrasing_added"] is False
        assert _public_top(web) != TARGET_SLUG
    body = _reroute(web, agents[2], target)
    assert body["phrasing_added"] is True and body["phrasing_pending"] is False
    assert body["phrasing_faq_id"] == target
    # Searchable when the call returns, on the public site and in suggest.
    assert _public_top(web) == TARGET_SLUG
    assert _suggest_top(web, agents[0]) == target
    (learnt,) = _learnt(session_factory, target)
    assert learnt.status == PhrasingStatus.approved and learnt.approved_by == "3 agents"


def test_the_agreement_needed_is_a_setting(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    target = _target(session_factory)
    two = settings.model_copy(update={"phrasing_agreement_agents": 2})
    with TestClient(create_app(two, embedder=embedder)) as client:
        first, second = (_agent(session_factory, f"agent {i}") for i in range(2))
        assert _reroute(client, first, target)["phrasing_added"] is False
        assert _reroute(client, first, target)["phrasing_added"] is False  # same key again
        assert _reroute(client, second, target)["phrasing_added"] is True
        assert _public_top(client) == TARGET_SLUG


def test_an_editor_can_approve_a_pending_phrasing(
    web: TestClient,
    session_factory: sessionmaker[Session],
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
) -> None:
    target = _target(session_factory)
    _reroute(web, agent_headers, target)
    (pending,) = _learnt(session_factory, target)
    url = f"/v1/phrasings/{pending.id}/approve"
    r = web.post(url, headers=agent_headers)
    assert r.status_code == 403  # agents cannot approve their own lessons
    assert web.post(url).status_code == 401
    assert _public_top(web) != TARGET_SLUG
    r = web.post(url, headers=editor_headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["faq_id"] == target
    assert r.json()["approved_by"].startswith("key ")
    assert _public_top(web) == TARGET_SLUG  # searchable when the approval returns
    # Approving again changes nothing (and records nothing); an unknown phrasing is 404.
    assert web.post(url, headers=editor_headers).json() == r.json()
    with session_factory() as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "phrasing_approved")))
    assert [(e.actor, e.actor_kind, e.target_id) for e in events] == [
        ("test editor", "key", str(target))
    ]
    r = web.post("/v1/phrasings/999999/approve", headers=editor_headers)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_content_and_editor_phrasings_are_approved_at_once(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as s:
        statuses = set(
            s.scalars(
                select(QuestionPhrasing.status).where(
                    QuestionPhrasing.source != PhrasingSource.outcome
                )
            )
        )
    assert statuses == {PhrasingStatus.approved}
