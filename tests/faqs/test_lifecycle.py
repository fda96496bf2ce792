"""An article's life cycle: unpublish, archive, restore, translations, phrasings — in the
domain (transitions, conflicts, audit rows) and through the JSON API (site, search, errors)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kb.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from kb.faqs import entries as faqs
from kb.faqs import lifecycle
from kb.models import AuditEvent, EntryStatus, FaqEntry, PhrasingSource, QuestionPhrasing, Thread

pytestmark = pytest.mark.db


def _entry(session: Session, question: str, lang: str = "en", **kw: object) -> FaqEntry:
    return faqs.create_entry(
        session,
        question=question,
        answer=f"Answer to {question}",
        category="account",
        language=lang,
        **kw,  # type: ignore[arg-type]
    )


def _actions(session: Session, target: str) -> list[tuple[str, str]]:
    rows = session.execute(
        select(AuditEvent.action, AuditEvent.actor)
        .where(AuditEvent.target_type + ":" + AuditEvent.target_id == target)
        .order_by(AuditEvent.id)
    )
    return [(a, b) for a, b in rows]


def test_transitions_follow_the_life_cycle_and_are_audited(session: Session) -> None:
    e = _entry(session, "How do I close my account?")
    lifecycle.unpublish(session, e.id, by="alice")
    assert e.status == EntryStatus.draft
    with pytest.raises(InvalidTransition):
        lifecycle.unpublish(session, e.id, by="alice")
    lifecycle.archive(session, e.id, by="bob")
    assert e.status == EntryStatus.archived
    with pytest.raises(InvalidTransition, match="archived"):
        lifecycle.archive(session, e.id, by="bob")
    lifecycle.restore(session, e.id, by="carol")
    assert e.status == EntryStatus.published
    with pytest.raises(InvalidTransition):
        lifecycle.restore(session, e.id, by="carol")
    with pytest.raises(InvalidInput):
        lifecycle.change_status(session, e.id, "delete", by="carol")
    with pytest.raises(NotFound):
        lifecycle.archive(session, 999_999, by="bob")
    assert _actions(session, f"faq:{e.id}") == [
        ("unpublish", "alice"),
        ("archive", "bob"),
        ("restore", "carol"),
    ]


def test_a_merged_article_is_out_of_the_life_cycle(session: Session) -> None:
    e = _entry(session, "Old duplicate question")
    e.status, e.merged_into_id = EntryStatus.merged, _entry(session, "Survivor").id
    session.flush()
    for action in ("archive", "unpublish", "restore"):
        with pytest.raises(InvalidTransition, match="merged"):
            lifecycle.change_status(session, e.id, action, by="x")


def test_translations_link_one_article_per_language_and_unlink(session: Session) -> None:
    en = _entry(session, "Roaming charges abroad")
    ja = _entry(session, "海外ローミングの料金", lang="ja")
    en2 = _entry(session, "Roaming prices in other countries")
    with pytest.raises(InvalidInput):
        lifecycle.link_translation(session, en.id, en2.id, by="x")
    with pytest.raises(InvalidInput):
        lifecycle.link_translation(session, en.id, en.id, by="x")
    lifecycle.link_translation(session, en.id, ja.id, by="x")
    assert en.translation_group and en.translation_group == ja.translation_group
    lifecycle.link_translation(session, ja.id, en.id, by="x")  # again: nothing changes
    assert [t.id for t in lifecycle.translations(session, en)] == [ja.id]
    with pytest.raises(Conflict) as clash:
        lifecycle.link_translation(session, ja.id, en2.id, by="x")
    assert clash.value.detail == {"faq_id": en.id, "lang": "en"}
    with pytest.raises(NotFound):
        lifecycle.unlink_translation(session, en.id, en2.id, by="x")
    lifecycle.unlink_translation(session, en.id, ja.id, by="x")
    assert en.translation_group is None and ja.translation_group is None
    lifecycle.link_translation(session, ja.id, en2.id, by="x")
    assert lifecycle.translations(session, ja)[0].id == en2.id
    assert [a for a, _ in _actions(session, f"faq:{en.id}")] == [
        "translation_linked",
        "translation_unlinked",
    ]


def test_groups_join_when_their_languages_do_not_clash(session: Session) -> None:
    ja = _entry(session, "SIMカードの交換", lang="ja", translation_group="sim-swap")
    en = _entry(session, "Swapping a SIM card")
    lifecycle.link_translation(session, en.id, ja.id, by="x")
    assert en.translation_group == ja.translation_group == "sim-swap"


def test_phrasings_show_their_origin_and_one_can_be_removed(session: Session) -> None:
    e = _entry(session, "Reset my password", phrasings=["forgot password"])
    thread = Thread(channel="x", external_id="t-1", url="https://x.example/t/1")
    session.add(thread)
    session.flush()
    faqs.add_phrasings(
        session,
        e,
        ["cannot log in to my account"],
        source=PhrasingSource.thread,
        thread_id=thread.id,
    )
    faqs.add_phrasings(session, e, ["password not working"], source=PhrasingSource.outcome)
    origins = lifecycle.list_phrasings(session, e.id)
    assert [(o.text, o.source) for o in origins] == [
        ("forgot password", PhrasingSource.editor),
        ("cannot log in to my account", PhrasingSource.thread),
        ("password not working", PhrasingSource.outcome),
    ]
    assert origins[1].thread_channel == "x" and origins[1].thread_url == "https://x.example/t/1"
    other = _entry(session, "Another article")
    with pytest.raises(NotFound):
        lifecycle.remove_phrasing(session, other.id, origins[2].id, by="x")
    lifecycle.remove_phrasing(session, e.id, origins[2].id, by="dana")
    assert session.get(QuestionPhrasing, origins[2].id) is None
    assert [o.text for o in lifecycle.list_phrasings(session, e.id)] == [
        "forgot password",
        "cannot log in to my account",
    ]
    assert _actions(session, f"faq:{e.id}") == [("phrasing_removed", "dana")]
    with pytest.raises(NotFound):
        lifecycle.remove_phrasing(session, e.id, origins[2].id, by="x")


# --- through the API


def _article(session_factory: sessionmaker[Session], slug: str) -> FaqEntry:
    with session_factory() as s:
        entry = faqs.get_entry_by_slug(s, slug)
        assert entry is not None
        return entry


def _found(client: TestClient, headers: dict[str, str], text: str, faq_id: int) -> bool:
    r = client.post("/v1/suggest", json={"text": text, "k": 5}, headers=headers)
    assert r.status_code == 200, r.text
    return any(c["faq_id"] == faq_id for c in r.json()["candidates"])


def test_archive_and_restore_through_the_api(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    made = client.post(
        "/v1/faqs",
        json={
            "question": "Can I keep my number when moving to Mars?",
            "answer": "Yes, **interplanetary** porting works.",
            "category": "account",
            "lang": "en",
        },
        headers=editor_headers,
    ).json()
    faq_id, slug = made["id"], made["slug"]
    query = "keep my number moving to Mars"
    assert client.get(f"/faq/{slug}").status_code == 200
    assert _found(client, agent_headers, query, faq_id)

    r = client.post(f"/v1/faqs/{faq_id}/archive", headers=editor_headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "archived"
    assert client.get(f"/faq/{slug}").status_code in (404, 410)
    assert not _found(client, agent_headers, query, faq_id)

    again = client.post(f"/v1/faqs/{faq_id}/archive", headers=editor_headers)
    assert again.status_code == 409 and again.json()["error"] == "invalid_transition"

    r = client.post(f"/v1/faqs/{faq_id}/restore", headers=editor_headers)
    assert r.status_code == 200 and r.json()["status"] == "published"
    assert client.get(f"/faq/{slug}").status_code == 200
    assert _found(client, agent_headers, query, faq_id)

    r = client.post(f"/v1/faqs/{faq_id}/unpublish", headers=editor_headers)
    assert r.json()["status"] == "draft"
    assert client.get(f"/faq/{slug}").status_code in (404, 410)

    assert client.post(f"/v1/faqs/{faq_id}/archive", headers=agent_headers).status_code == 403
    assert client.post(f"/v1/faqs/{faq_id}/archive").status_code == 401
    missing = client.post("/v1/faqs/999999/restore", headers=editor_headers)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    with session_factory() as s:
        actors = {
            a
            for (a,) in s.execute(
                select(AuditEvent.actor).where(AuditEvent.target_id == str(faq_id))
            )
        }
    assert actors == {"test editor"}


def test_phrasings_and_translations_through_the_api(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    made = client.post(
        "/v1/faqs",
        json={
            "question": "Why is my bill purple?",
            "answer": "Bills are purple in spring.",
            "category": "billing",
            "lang": "en",
            "phrasings": ["violet invoice colour explained"],
        },
        headers=editor_headers,
    ).json()
    faq_id = made["id"]
    listed = client.get(f"/v1/faqs/{faq_id}/phrasings", headers=editor_headers)
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert item["text"] == "violet invoice colour explained" and item["source"] == "editor"
    assert _found(client, agent_headers, "violet invoice colour explained", faq_id)
    gone = client.delete(f"/v1/faqs/{faq_id}/phrasings/{item['id']}", headers=editor_headers)
    assert gone.status_code == 204
    assert client.get(f"/v1/faqs/{faq_id}/phrasings", headers=editor_headers).json()["items"] == []
    again = client.delete(f"/v1/faqs/{faq_id}/phrasings/{item['id']}", headers=editor_headers)
    assert again.status_code == 404 and again.json()["error"] == "not_found"
    assert client.get(f"/v1/faqs/{faq_id}/phrasings", headers=agent_headers).status_code == 403

    ja = client.post(
        "/v1/faqs",
        json={
            "question": "請求書が紫色なのはなぜ？",
            "answer": "春は紫色です。",
            "category": "billing",
            "lang": "ja",
        },
        headers=editor_headers,
    ).json()
    r = client.put(f"/v1/faqs/{faq_id}/translations/{ja['id']}", headers=editor_headers)
    assert r.status_code == 200, r.text
    assert r.json()["translations"] == {"ja": ja["id"]}
    assert client.get(f"/v1/faqs/{ja['id']}", headers=agent_headers).json()["translations"] == {
        "en": faq_id
    }
    same_lang = _article(session_factory, "reset-password")
    r = client.put(f"/v1/faqs/{faq_id}/translations/{same_lang.id}", headers=editor_headers)
    assert r.status_code == 400 and r.json()["error"] == "invalid_input"
    r = client.delete(f"/v1/faqs/{faq_id}/translations/{ja['id']}", headers=editor_headers)
    assert r.status_code == 200 and r.json()["translations"] == {}
    r = client.delete(f"/v1/faqs/{faq_id}/translations/{ja['id']}", headers=editor_headers)
    assert r.status_code == 404


def test_the_openapi_document_describes_the_life_cycle(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (
        ("/v1/faqs/{faq_id}/archive", "post"),
        ("/v1/faqs/{faq_id}/restore", "post"),
        ("/v1/faqs/{faq_id}/unpublish", "post"),
        ("/v1/faqs/{faq_id}/translations/{other_id}", "put"),
        ("/v1/faqs/{faq_id}/translations/{other_id}", "delete"),
        ("/v1/faqs/{faq_id}/phrasings", "get"),
        ("/v1/faqs/{faq_id}/phrasings/{phrasing_id}", "delete"),
    ):
        op = paths[path][method]
        assert {"404", "409"} <= set(op["responses"]), (path, method)
