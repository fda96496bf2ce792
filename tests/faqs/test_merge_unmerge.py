"""Merges refuse what would lose an article (merged, archived or self targets, cycles), and
an admin can undo one: the article comes back at its own URL with its own numbers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kb.auth.keys import create_key
from kb.db import session_scope
from kb.errors import Conflict, InvalidInput, PreconditionFailed
from kb.faqs import entries as faqs
from kb.faqs.merge import merge_entries, unmerge_entry
from kb.models import EntryStatus, FaqEntry, PageView, Vote, utcnow
from tests.support.traffic import add_views, add_votes


def _article(s: Session, title: str, answer: str = "See the settings page.") -> FaqEntry:
    return faqs.create_entry(s, question=title, answer=answer, category="plans", language="en")


def _admin_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_scope(session_factory) as s:
        _, secret = create_key(s, role="admin", name="test admin")
    return {"Authorization": f"Bearer {secret}"}


def test_merge_refuses_merged_archived_and_self_targets_and_cycles(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        a, b, c, d = (_article(s, f"Question number {w}") for w in ("one", "two", "three", "four"))
        d.status = EntryStatus.archived
        ids = a.id, b.id, c.id, d.id
    a_id, b_id, c_id, d_id = ids
    with session_scope(session_factory) as s, pytest.raises(InvalidInput):
        merge_entries(s, a_id, a_id, by="ed")
    with session_scope(session_factory) as s, pytest.raises(Conflict, match="archived"):
        merge_entries(s, a_id, d_id, by="ed")
    with session_scope(session_factory) as s, pytest.raises(PreconditionFailed):
        merge_entries(s, a_id, b_id, by="ed", expected_version=7)
    with session_scope(session_factory) as s:
        merge_entries(s, a_id, b_id, by="ed", expected_version=1)
    # B→A now: A is merged, so the target is refused with a pointer to the survivor.
    with (
        session_scope(session_factory) as s,
        pytest.raises(Conflict, match=f"merge into FAQ {b_id} instead"),
    ):
        merge_entries(s, b_id, a_id, by="ed")
    with session_scope(session_factory) as s, pytest.raises(Conflict, match="already merged"):
        merge_entries(s, a_id, c_id, by="ed")
    # B→C: A (merged into B) follows to C, no chain; C→B is then refused (B is merged).
    with session_scope(session_factory) as s:
        merge_entries(s, b_id, c_id, by="ed")
    with session_scope(session_factory) as s, pytest.raises(Conflict):
        merge_entries(s, c_id, b_id, by="ed")
        rows = {e.id: e for e in s.scalars(select(FaqEntry).where(FaqEntry.id.in_(ids)))}
        assert rows[a_id].merged_into_id == c_id and rows[b_id].merged_into_id == c_id
        assert rows[c_id].status == EntryStatus.published and rows[c_id].merged_into_id is None


def test_unmerge_brings_the_article_back_with_its_own_views_and_votes(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        source = _article(s, "How do I export my invoices as CSV files", "Billing → Export.")
        target = _article(s, "Downloading invoices", "Open Billing and press Download.")
        add_views(s, source, 12, day=utcnow().date())
        add_votes(s, source, 3, 1)
        add_views(s, target, 5, day=utcnow().date())
        add_votes(s, target, 2, 0)
        src_id, tgt_id, src_slug, tgt_slug = source.id, target.id, source.slug, target.slug
    admin = _admin_headers(session_factory)
    r = client.post(f"/v1/faqs/{src_id}/unmerge", headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "conflict"  # not merged
    r = client.post(f"/v1/faqs/{src_id}/merge", json={"into": tgt_id}, headers=editor_headers)
    assert r.status_code == 200, r.text
    r = client.get(f"/v1/public/faqs/{src_slug}", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"].endswith(f"/{tgt_slug}")
    # Only an admin can undo it.
    r = client.post(f"/v1/faqs/{src_id}/unmerge", headers=editor_headers)
    assert r.status_code == 403
    r = client.post(f"/v1/faqs/{src_id}/unmerge", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "published" and body["was_merged_into"] == tgt_id
    assert body["views_moved_back"] == 12 and body["votes_moved_back"] == 4
    assert body["url"].endswith(f"/faq/{src_slug}")
    with session_factory() as s:
        per_entry = select(PageView.entry_id, func.sum(PageView.count)).group_by(PageView.entry_id)
        views = {entry: total for entry, total in s.execute(per_entry)}
        assert views[src_id] == 12 and views[tgt_id] == 5
        by_entry = select(Vote.entry_id, func.count(Vote.id)).group_by(Vote.entry_id)
        votes = {entry: total for entry, total in s.execute(by_entry)}
        assert votes[src_id] == 4 and votes[tgt_id] == 2
    r = client.get(f"/v1/public/faqs/{src_slug}", follow_redirects=False)
    assert r.status_code == 200 and r.json()["slug"] == src_slug
    assert client.get(f"/faq/{src_slug}", follow_redirects=False).status_code == 200
    # Searchable again under its own id (the index followed the commit).
    r = client.post(
        "/v1/suggest",
        json={"text": "How do I export my invoices as CSV files", "k": 5, "lang": "en"},
        headers=agent_headers,
    )
    assert src_id in [c["faq_id"] for c in r.json()["candidates"]]
    r = client.post(f"/v1/faqs/{src_id}/unmerge", headers=admin)
    assert r.status_code == 409
    # It can be merged again, and undone again: nothing was lost on the way.
    r = client.post(f"/v1/faqs/{src_id}/merge", json={"into": tgt_id}, headers=editor_headers)
    assert r.status_code == 200 and r.json()["views_moved"] >= 12  # + the page views above


def test_unmerge_in_the_domain_refuses_what_is_not_merged(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        a = _article(s, "Changing the delivery address")
        a_id = a.id
    with session_scope(session_factory) as s, pytest.raises(Conflict, match="not merged"):
        unmerge_entry(s, a_id, by="admin")
