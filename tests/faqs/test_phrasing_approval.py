"""An outcome-learnt phrasing waiting for approval is approved from the article's page:
a CSRF-protected form, recorded in the audit trail with the editor's name, search matches
it at once; labels translated. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kb.db import session_scope
from kb.faqs import entries as faqs
from kb.models import AuditEvent, PhrasingSource, PhrasingStatus, QuestionPhrasing
from tests.support.accounts import make_account, signed_in
from tests.support.html_dom import Node, parse

pytestmark = pytest.mark.db

LEARNT = "qr code scanned but esim never activates"


@pytest.fixture
def editor(client: TestClient, session_factory: sessionmaker[Session]) -> TestClient:
    return signed_in(client, make_account(session_factory, name="Erika Editor"))


def _rows(doc: Node) -> dict[str, Node]:
    return {
        row.one("td", class_="phrasing-text").text: row
        for row in doc.find_all("tr", class_="phrasing-row")
    }


def _learn(factory: sessionmaker[Session], slug: str, text: str) -> tuple[int, int]:
    with session_scope(factory) as s:
        entry = faqs.get_entry_by_slug(s, slug)
        assert entry is not None
        (p,) = faqs.add_phrasings(s, entry, [text], source=PhrasingSource.outcome)
        p.status = PhrasingStatus.pending  # as kb/replies/outcomes.py quarantines them
        return entry.id, p.id


def _search_ids(client: TestClient, headers: dict[str, str], text: str) -> list[int]:
    r = client.post("/v1/suggest", json={"text": text, "k": 3}, headers=headers)
    assert r.status_code == 200, r.text
    return [c["faq_id"] for c in r.json()["candidates"]]


def test_an_editor_approves_a_quarantined_phrasing_from_the_article_page(
    editor: TestClient,
    session_factory: sessionmaker[Session],
    agent_headers: dict[str, str],
) -> None:
    faq_id, pid = _learn(session_factory, "reset-password", LEARNT)
    url = f"/review/articles/{faq_id}"
    # Quarantined: search does not match the article by it.
    assert _search_ids(editor, agent_headers, LEARNT)[:1] != [faq_id]
    doc = parse(editor.get(url).text)
    row = _rows(doc)[LEARNT]
    assert row.one("span", class_="phrasing-state").text == "waiting for approval"
    form = row.one("form", class_="approve-phrasing")
    assert form.get("action") == f"/review/articles/{faq_id}/approve-phrasing"
    data = {
        "csrf": form.one("input", name="csrf").get("value") or "",
        "phrasing_id": form.one("input", name="phrasing_id").get("value") or "",
    }
    assert data["phrasing_id"] == str(pid)
    # Approved phrasings and those of other origins have no approve button.
    others = [r for text, r in _rows(doc).items() if text != LEARNT]
    assert others and all(not r.find_all("form", class_="approve-phrasing") for r in others)

    # Without the form's token: refused, nothing approved.
    forged = editor.post(f"{url}/approve-phrasing", data={"phrasing_id": str(pid)})
    assert forged.status_code == 403
    with session_factory() as s:
        assert s.get(QuestionPhrasing, pid).status == PhrasingStatus.pending  # type: ignore[union-attr]

    done = editor.post(f"{url}/approve-phrasing", data=data, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{url}?done=phrasing-approved"
    page = editor.get(done.headers["location"]).text
    assert "Phrasing approved. Search matches it now." in page
    assert _search_ids(editor, agent_headers, LEARNT)[:1] == [faq_id]
    row = _rows(parse(page))[LEARNT]
    assert row.one("span", class_="phrasing-state").text == "approved"
    assert not row.find_all("form", class_="approve-phrasing")
    with session_factory() as s:
        p = s.get(QuestionPhrasing, pid)
        assert p is not None and p.status == PhrasingStatus.approved
        assert p.approved_by == "Erika Editor <editor@example.com>"
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "phrasing_approved"))
    assert (event.actor, event.actor_kind, event.target_type, event.target_id) == (
        "Erika Editor <editor@example.com>",
        "user",
        "faq",
        str(faq_id),
    )
    assert event.before == {"phrasing": pid, "text": LEARNT, "status": "pending"}
    assert event.after == {"phrasing": pid, "status": "approved"}

    # Approving twice, another article's phrasing or a non-outcome phrasing is refused.
    again = editor.post(f"{url}/approve-phrasing", data=data)
    assert again.status_code == 409 and "not waiting for approval" in again.text
    _, other_pid = _learn(session_factory, "reset-password-ja", "QR読んだのに開通しない")
    wrong = editor.post(f"{url}/approve-phrasing", data={**data, "phrasing_id": str(other_pid)})
    assert wrong.status_code == 404
    empty = editor.post(f"{url}/approve-phrasing", data={**data, "phrasing_id": ""})
    assert empty.status_code == 400
    with session_factory() as s:
        assert len(list(s.scalars(select(AuditEvent).where(
            AuditEvent.action == "phrasing_approved")))) == 1  # fmt: skip


def test_the_phrasing_states_and_the_button_are_translated(
    editor: TestClient, session_factory: sessionmaker[Session]
) -> None:
    faq_id, _ = _learn(session_factory, "reset-password", LEARNT)
    doc = parse(editor.get(f"/review/articles/{faq_id}?lang=ja").text)
    row = _rows(doc)[LEARNT]
    assert row.one("span", class_="phrasing-state").text == "承認待ち"
    assert row.one("form", class_="approve-phrasing").one("button").text.strip() == "承認"
