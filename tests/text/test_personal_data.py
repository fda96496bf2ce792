"""Personal data in Japanese and English posts: found, masked where stored, never echoed."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kb.models import Suggestion, ThreadPost
from kb.site import search as site_search
from kb.text.personal_data import (
    find_personal_data,
    mask_personal_data,
    personal_data_kinds,
    scrub_personal_data,
    strip_placeholders,
)

# (post, the personal data in it, its kind)
FOUND = [
    # Japanese phones: mobile, landline, no separators, +81, full width, ー as a dash
    ("電話番号は090-1234-5678です", "090-1234-5678", "phone"),
    ("折り返しは09012345678にお願いします", "09012345678", "phone"),
    ("自宅 03-1234-5678 まで", "03-1234-5678", "phone"),
    ("+81 90-1234-5678 に連絡ください", "+81 90-1234-5678", "phone"),
    ("+81-90-1234-5678", "+81-90-1234-5678", "phone"),
    ("+81 (0)90-1234-5678", "+81 (0)90-1234-5678", "phone"),
    ("０９０－１２３４－５６７８に電話ください", "０９０－１２３４－５６７８", "phone"),
    ("080ー1234ー5678です", "080ー1234ー5678", "phone"),
    ("電話090 1234 5678まで", "090 1234 5678", "phone"),
    # North American phones
    ("call me at (555) 123-4567 please", "(555) 123-4567", "phone"),
    ("my number is 555-123-4567", "555-123-4567", "phone"),
    ("text +1 555 123 4567", "+1 555 123 4567", "phone"),
    # e-mail
    ("メールは taro.yamada@example.co.jp です", "taro.yamada@example.co.jp", "email"),
    ("mail me at a.b+c@example.com", "a.b+c@example.com", "email"),
    ("hanako＠example.jp に送って", "hanako＠example.jp", "email"),
    # order / contract / account numbers: the number, not the keyword
    ("注文番号：AB-12345の件です", "AB-12345", "order_number"),
    ("ご注文番号は1234567890です", "1234567890", "order_number"),
    ("契約番号は1234567です", "1234567", "order_number"),
    ("契約者番号 K-2024-00123", "K-2024-00123", "order_number"),
    ("お客様番号：987654", "987654", "order_number"),
    ("会員ID A1234567 でログインできない", "A1234567", "order_number"),
    ("my order #A12345 hasn't arrived", "A12345", "order_number"),
    ("order 98765 is late", "98765", "order_number"),
    ("order number: SO-2024-001234", "SO-2024-001234", "order_number"),
    ("contract no. 4455667", "4455667", "order_number"),
    ("account number 9876543 is locked", "9876543", "order_number"),
    ("ORD-2024-000123 shipped?", "ORD-2024-000123", "order_number"),
    # card numbers (Luhn) and other long numbers
    ("card 4111 1111 1111 1111 was declined", "4111 1111 1111 1111", "card_number"),
    ("ref 12345678", "12345678", "number"),
    # addresses
    ("〒150-0041 に送ってください", "〒150-0041", "address"),
    ("郵便番号 150-0041", "郵便番号 150-0041", "address"),
    (
        "〒150-0041 東京都渋谷区神南1-2-3 に届かない",
        "〒150-0041 東京都渋谷区神南1-2-3",
        "address",
    ),
    ("住所は東京都新宿区西新宿2-8-1です", "東京都新宿区西新宿2-8-1", "address"),
    ("大阪市北区梅田三丁目1番1号に住んでます", "大阪市北区梅田三丁目1番1号", "address"),
    (
        "横浜市中区山下町123-4 サンプルハイツ101号室",
        "横浜市中区山下町123-4 サンプルハイツ101号室",
        "address",
    ),
    ("札幌市中央区北1条西2丁目に住んでいます", "札幌市中央区北1条西2丁目", "address"),
    (
        "send it to 42 Elm Street, Springfield, IL 62704 please",
        "42 Elm Street, Springfield, IL 62704",
        "address",
    ),
    (
        "1600 Pennsylvania Ave NW, Washington, DC 20500",
        "1600 Pennsylvania Ave NW, Washington, DC 20500",
        "address",
    ),
    ("I live at 123 main street", "123 main street", "address"),
    (
        "350 5th Ave, Apt 4B, New York, NY 10118",
        "350 5th Ave, Apt 4B, New York, NY 10118",
        "address",
    ),
]

# Numbers and words customers search with, and data that is not anyone's.
NOT_PERSONAL = [
    "5G 3GB 2024年 iPhone 15",
    "iPhone 15 Pro 256GB won't connect",
    "SM-G991B のAPN設定",
    "2024-12-31 に解約しました",
    "料金は3,300円でした",
    "東京都内で電波が悪い",
    "渋谷区で3日前から圏外",
    "品川区の3丁目付近でつながらない",
    "order status please",
    "サポートは0120-000-000（無料）",
    "call 1-800-555-0199 toll free",
    "メールは noreply@soramimobile.jp から届きます",
    "support@soramimobile.jp に問い合わせた",
    "https://soramimobile.jp/faq/12345678?src=reply を見た",
    "I have 2 sim cards in my drawer",
    "COVID-19 で外出できない",
    "PIN 1234 を3回間違えた",
]


@pytest.mark.parametrize(("text", "data", "kind"), FOUND)
def test_personal_data_is_found_and_masked(text: str, data: str, kind: str) -> None:
    findings = find_personal_data(text)
    assert [(text[f.start : f.end], f.kind) for f in findings] == [(data, kind)]
    masked = mask_personal_data(text)
    placeholder = "<address>" if kind == "address" else "<email>" if kind == "email" else "<number>"
    assert masked == text.replace(data, placeholder)
    assert personal_data_kinds(text) == [kind]


@pytest.mark.parametrize("text", NOT_PERSONAL)
def test_everyday_numbers_and_company_contacts_stay(text: str) -> None:
    assert find_personal_data(text) == []
    assert mask_personal_data(text) == text


def test_several_kinds_in_one_post() -> None:
    text = (
        "注文番号AB-12345、電話090-1111-2222、メール a@example.com、"
        "〒100-0001 東京都千代田区千代田1-1"
    )
    masked = mask_personal_data(text)
    assert masked == "注文番号<number>、電話<number>、メール <email>、<address>"
    assert personal_data_kinds(text) == ["address", "email", "order_number", "phone"]
    assert not re.search(r"\d{3}", masked)


def test_links_survive_masking_but_not_scrubbing() -> None:
    text = "see https://x.com/i/status/1234567890123 and call 090-1234-5678 @taro_y"
    assert mask_personal_data(text) == (
        "see https://x.com/i/status/1234567890123 and call <number> @taro_y"
    )
    assert scrub_personal_data(text) == "see <url> and call <number> <handle>"
    # The site (vote comments, search logs) uses the same implementation.
    assert site_search.scrub_personal_data is scrub_personal_data


def test_placeholders_can_be_removed_for_indexed_text() -> None:
    assert strip_placeholders("注文番号 <number> の配送状況") == "注文番号 の配送状況"
    assert strip_placeholders("<email>") == ""


def test_stored_suggestion_is_masked_and_the_draft_never_echoes_the_data(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    posts = [
        ("@SoramiMobile 注文番号SO-2024-001234の荷物が届かない。電話は090-1234-5678です", "ja"),
        ("@SoramiMobile my order #SO-2024-009876 never arrived, mail me at taro@example.com", "en"),
        ("@SoramiMobile 〒150-0041 東京都渋谷区神南1-2-3 に住んでいますが圏外です", "ja"),
    ]
    secrets = [
        "SO-2024-001234",
        "090-1234-5678",
        "SO-2024-009876",
        "taro@example.com",
        "神南1-2-3",
        "150-0041",
    ]
    for text, lang in posts:
        r = client.post("/v1/suggest", json={"text": text, "channel": "x"}, headers=agent_headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["lang"] == lang and body["personal_data"]
        reply = body["reply"]
        assert reply is not None and reply["dm_handoff"] is True
        assert reply["dm_reason"] == "personal_data" and "DM" in reply["text"]
        assert not any(s in reply["text"] for s in secrets)
        with session_factory() as s:
            row = s.get(Suggestion, body["suggestion_id"])
            assert row is not None
            assert not any(secret in row.text for secret in secrets), row.text
            assert "<number>" in row.text or "<email>" in row.text or "<address>" in row.text
            assert row.dm_handoff is True and row.reply_text == reply["text"]


def test_stored_thread_posts_are_masked(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    thread = {
        "channel": "x",
        "external_id": "pd-1",
        "posts": [
            {
                "role": "customer",
                "author": "@taro",
                "text": "@SoramiMobile 請求が二重になってる。契約番号は1234567、電話090-1234-5678",
            },
            {
                "role": "agent",
                "author": "@SoramiMobile",
                "text": "ご不便をおかけしております。詳しくは "
                "https://soramimobile.jp/faq/bill-explained-ja をご覧ください。"
                "お問い合わせは support@soramimobile.jp または 0120-000-000 へ。",
            },
        ],
    }
    r = client.post("/v1/threads", json=thread, headers=agent_headers)
    assert r.status_code in (200, 201), r.text
    with session_factory() as s:
        posts = s.scalars(select(ThreadPost).order_by(ThreadPost.position)).all()
    customer, agent = posts
    for text in (customer.text_raw, customer.text_clean):
        assert "1234567" not in text and "090-1234-5678" not in text
    assert "契約番号は<number>" in customer.text_raw
    # Company contacts and links in the agent's answer are not personal data.
    assert "https://soramimobile.jp/faq/bill-explained-ja" in agent.text_raw
    assert "support@soramimobile.jp" in agent.text_raw and "0120-000-000" in agent.text_raw
