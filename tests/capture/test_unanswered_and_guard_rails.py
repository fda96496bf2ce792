"""Drafts carry an answer or say they need one (unanswered demand, never published empty);
links in agents' replies cover threads through the API; unknown categories are 422."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from kb.text.cleaning import agent_reply_markdown, is_substantive_answer

pytestmark = pytest.mark.db


def thread(
    external_id: str, question: str, *replies: str, channel: str = "facebook"
) -> dict[str, Any]:
    posts: list[dict[str, Any]] = [
        {
            "role": "customer",
            "author": "Kim Minsu",
            "text": question,
            "created_at": "2026-12-01T08:00:00Z",
        }
    ]
    posts += [{"role": "agent", "author": "Sorami Care", "text": r} for r in replies]
    return {
        "channel": channel,
        "external_id": external_id,
        "resolved_at": "2026-12-01T09:00:00Z",
        "posts": posts,
    }


# Topics no seed article covers, asked twice each so they cluster.
KARAOKE = [
    "@ソラミモバイル公式 カラオケ店のWi-Fiにつなぐとソラミのアプリが開けないのはなぜ?",
    "@サポート カラオケのWi-Fi接続中にソラミアプリが起動しません",
]
FERRY = [
    "Does my Sorami plan work on the ferry to Busan?",
    "@SoramiCare will I have signal on the Busan ferry?",
]


def drafts(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/v1/drafts", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def draft_of(items: list[dict[str, Any]], word: str) -> dict[str, Any]:
    return next(d for d in items if word in d["question"])


@pytest.mark.parametrize(
    ("reply", "substantive"),
    [
        ("詳しくはDMにてお伺いします。^中野", False),
        ("こんにちは!担当部署に確認いたします。少々お待ちください。", False),
        ("Hi there! We'll look into it and get back to you. —Ken", False),
        ("Thanks for reaching out! Please DM us your account number. Have a great day!", False),
        ("@김민수 님 확인 후 DM 드리겠습니다", False),
        ("お調べいたしますので、ご契約の機種を教えていただけますか?", False),
        ("", False),
        ("フェリーの中では船舶の電波を使うため、海上では圏外になります。", True),
        ("Yes, it works until the ferry leaves Japanese waters, then roaming applies.", True),
        ("アプリはWi-Fiを切ってモバイルデータで開いてください。^中野", True),
    ],
)
def test_what_counts_as_an_answer(reply: str, substantive: bool) -> None:
    assert is_substantive_answer(agent_reply_markdown([reply])) is substantive


def test_threads_without_an_answer_become_unanswered_demand_that_cannot_be_published(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    items = [
        thread("fb-1", KARAOKE[0], "詳しくはDMにてお伺いします。"),
        thread("fb-2", KARAOKE[1]),  # no agent post at all
        thread("fb-3", FERRY[0], "Yes, Sorami works on the ferry until it leaves Japanese waters."),
        thread("fb-4", FERRY[1], "We'll look into it!"),
    ]
    for item in items:
        r = client.post("/v1/threads", json=item, headers=agent_headers)
        assert r.status_code in (200, 201), r.text
    everything = drafts(client, editor_headers)
    karaoke = draft_of(everything, "カラオケ")
    ferry = draft_of(everything, "ferry")
    assert karaoke["needs_answer"] is True and karaoke["answer"] == ""
    assert karaoke["demand"] == 2 and len(karaoke["source_threads"]) == 2
    assert ferry["needs_answer"] is False and "Japanese waters" in ferry["answer"]
    assert [d["id"] for d in drafts(client, editor_headers, unanswered="true")] == [karaoke["id"]]
    assert karaoke["id"] not in [
        d["id"] for d in drafts(client, editor_headers, unanswered="false")
    ]

    refused = client.post(
        f"/v1/drafts/{karaoke['id']}/publish", json={"category": "network"}, headers=editor_headers
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "unprocessable" and "answer" in refused.json()["detail"]
    also = client.post(
        f"/v1/drafts/{karaoke['id']}/publish",
        json={"category": "network", "answer": "  "},
        headers=editor_headers,
    )
    assert also.status_code == 422
    # The editor writes the answer: now it publishes.
    ok = client.post(
        f"/v1/drafts/{karaoke['id']}/publish",
        json={
            "category": "network",
            "answer": "Wi-Fiを切って、モバイルデータでアプリを開いてください。",
        },
        headers=editor_headers,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["slug"] == f"draft-{karaoke['id']}-ja"


def test_unknown_categories_are_refused_on_drafts_and_faqs(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    r = client.post(
        "/v1/threads",
        json=thread(
            "fb-9", FERRY[0], "Yes, Sorami works on the ferry until it leaves Japanese waters."
        ),
        headers=agent_headers,
    )
    assert r.status_code in (200, 201), r.text
    draft = draft_of(drafts(client, editor_headers), "ferry")
    bad = client.put(
        f"/v1/drafts/{draft['id']}", json={"category": "Ferries!!"}, headers=editor_headers
    )
    assert bad.status_code == 422 and bad.json()["error"] == "unprocessable"
    assert "Ferries!!" in bad.json()["detail"] and "network" in bad.json()["detail"]
    bad = client.post(
        f"/v1/drafts/{draft['id']}/publish",
        json={"category": "roaming-at-sea"},
        headers=editor_headers,
    )
    assert bad.status_code == 422
    assert (
        client.get(f"/v1/drafts/{draft['id']}", headers=editor_headers).json()["status"] == "open"
    )
    ok = client.post(
        f"/v1/drafts/{draft['id']}/publish", json={"category": "network"}, headers=editor_headers
    )
    assert ok.status_code == 201, ok.text
    # Slugs follow the seed content's convention: English = the group, others group + -lang.
    assert ok.json()["slug"] == "does-my-sorami-plan-work-on-the-ferry-to-busan"

    new = {
        "question": "Can I use Sorami on a ferry?",
        "answer": "Yes, near the coast.",
        "lang": "en",
    }
    created = client.post("/v1/faqs", json={**new, "category": "boats"}, headers=editor_headers)
    assert created.status_code == 422 and created.json()["error"] == "unprocessable"
    created = client.post("/v1/faqs", json={**new, "category": "network"}, headers=editor_headers)
    assert created.status_code == 201, created.text
    faq_id = created.json()["id"]
    updated = client.put(
        f"/v1/faqs/{faq_id}", json={**new, "category": "boats"}, headers=editor_headers
    )
    assert updated.status_code == 422


def test_an_agents_faq_link_covers_a_thread_through_the_api(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    item = thread("fb-20", FERRY[0], "こちらをご覧ください:/faq/no-signal-ja?src=reply")
    r = client.post("/v1/threads", json=item, headers=agent_headers)
    assert r.status_code in (200, 201), r.text
    filed = r.json()
    assert filed["status"] == "covered" and filed["covered_by"] == "link"
    faq = client.get(f"/v1/faqs/{filed['faq_id']}", headers=agent_headers).json()
    assert faq["slug"] == "no-signal-ja"
    assert drafts(client, editor_headers) == []
