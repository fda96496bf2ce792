"""/review/admin/webhooks: admins add and remove webhooks from the pages (CSRF-protected
forms, audit-recorded, the secret shown once), editors are refused, labels translated.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.auth.editor_session import csrf_token
from kb.models import AuditEvent, Webhook
from kb.notify.delivery import DeliveryPolicy, deliver_due
from tests.notify.receiver import receiver
from tests.support.accounts import Account, make_account, signed_in
from tests.support.html_dom import parse
from tests.support.pages import check_accessible

PAGE = "/review/admin/webhooks"


def _csrf(client: TestClient) -> str:
    return csrf_token(client.cookies["fql_session"])


def _hooks(factory: sessionmaker[Session]) -> list[Webhook]:
    with factory() as s:
        return list(s.scalars(select(Webhook).order_by(Webhook.id)))


def test_the_webhooks_page_is_for_admins_only(
    client: TestClient, session_factory: sessionmaker[Session], editor_account: Account
) -> None:
    r = client.get(PAGE, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
    signed_in(client, editor_account)
    assert client.get(PAGE).status_code == 403
    form = {"url": "https://h.example.com/x", "events": ["flag.raised"], "csrf": _csrf(client)}
    assert client.post(PAGE, data=form).status_code == 403
    assert _hooks(session_factory) == []


def test_an_admin_adds_a_webhook_sees_its_log_and_removes_it(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    admin = make_account(session_factory, email="ada@example.com", name="Ada Admin", role="admin")
    signed_in(client, admin, PAGE)
    page = parse(client.get(PAGE).text)
    check_accessible(page)
    assert page.one("a", href=PAGE) is not None  # the admin navigation links the page
    # No event is chosen in advance.
    assert all("checked" not in box.attrs for box in page.find_all("input", name="events"))

    with receiver() as r:
        form = {
            "url": r.url,
            "events": ["article.published", "draft.demand"],
            "min_demand": "4",
            "description": "#support-chat",
        }
        # Without the form's token: refused, nothing registered.
        assert client.post(PAGE, data=form).status_code == 403
        bad = client.post(PAGE, data={**form, "url": "ftp://x.example.com", "csrf": _csrf(client)})
        assert bad.status_code == 422 and "http:// or https://" in bad.text
        assert parse(bad.text).one("input", name="url").attrs["value"] == "ftp://x.example.com"
        none = client.post(PAGE, data={**form, "events": [], "csrf": _csrf(client)})
        assert none.status_code == 422 and "at least one event" in none.text
        low = client.post(PAGE, data={**form, "min_demand": "0", "csrf": _csrf(client)})
        assert low.status_code == 422
        assert _hooks(session_factory) == []

        created = client.post(PAGE, data={**form, "csrf": _csrf(client)})
        assert created.status_code == 201, created.text
        (hook,) = _hooks(session_factory)
        assert (hook.url, hook.events, hook.min_demand, hook.description) == (
            r.url,
            ["draft.demand", "article.published"],
            4,
            "#support-chat",
        )
        shown = parse(created.text).one(id="new-webhook").text
        assert hook.secret in shown
        # Never again: not on the list, not on the log page.
        assert hook.secret not in client.get(PAGE).text
        assert hook.secret not in client.get(f"{PAGE}/{hook.id}").text

        # An article created from the pages' API is delivered and shows in the log.
        with session_factory() as s:
            from kb.faqs.entries import create_entry

            create_entry(
                s,
                question="Where is my invoice?",
                answer="In My Sorami under Billing.",
                category="billing",
                language="en",
            )
            s.commit()
        deliver_due(session_factory, DeliveryPolicy(max_attempts=1, timeout=2.0))
        assert len(r.requests) == 1
    check_accessible(parse(client.get(PAGE).text))
    log = parse(client.get(f"{PAGE}/{hook.id}").text)
    check_accessible(log)
    (row,) = log.find_all("tr", data_status="delivered")
    assert "An article is published" in row.text and "HTTP 200" in row.text

    # Removing needs the confirmation box.
    url = f"{PAGE}/{hook.id}/delete"
    assert client.post(url, data={"csrf": _csrf(client)}).status_code == 400
    assert client.post(url, data={"confirm": "yes"}).status_code == 403  # no token
    done = client.post(url, data={"confirm": "yes", "csrf": _csrf(client)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?done=deleted"
    assert _hooks(session_factory) == []
    assert client.get(f"{PAGE}/{hook.id}").status_code == 404

    with session_factory() as s:
        events = list(
            s.scalars(
                select(AuditEvent)
                .where(AuditEvent.target_type == "webhook")
                .order_by(AuditEvent.id)
            )
        )
    assert [(e.action, e.actor) for e in events] == [
        ("webhook.create", "Ada Admin <ada@example.com>"),
        ("webhook.delete", "Ada Admin <ada@example.com>"),
    ]
    assert hook.secret not in str(events[0].after)


def test_the_webhooks_page_speaks_japanese(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    admin = make_account(session_factory, email="ada@example.com", name="Ada Admin", role="admin")
    signed_in(client, admin, PAGE)
    text = client.get(f"{PAGE}?lang=ja").text
    for english in ("Add a webhook", "An article is published", "Draft threshold"):
        assert english not in text
    page = parse(text)
    assert page.one("h1").text.strip() == "Webhook"
    assert "記事が公開されたとき" in text and "Webhook を追加" in text
