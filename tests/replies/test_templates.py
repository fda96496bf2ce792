"""Reply templates live in gettext catalogs (the `replies` domain): every catalog translates
every phrase with the same placeholders, `make messages` finds exactly the phrases the code
uses, drafts take their wording from the catalog, and a language without a template gets
no invented draft: the response and triage say why, and the FAQ link is still suggested."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from kb.faqs.content import read_content_dir
from kb.models import TriageAdvice
from kb.replies import wording
from kb.replies.channels import DEFAULT_LIMITS, resolve_channel
from kb.replies.compose import FaqForReply, ReplyPolicy, compose_reply
from kb.replies.triage import Triage
from tests.support.paths import CONTENT_DIR, ROOT

ARTICLES = {a.slug: a for a in read_content_dir(CONTENT_DIR)}
THAI_POST = "@SoramiMobile ตั้งค่า eSIM บน iPhone ยังไงครับ เปิดใช้งานไม่ได้"
CATALOGS = sorted(p.parent.parent.name for p in wording.LOCALES_DIR.glob("*/LC_MESSAGES/*.po"))
PROBLEM = Triage(TriageAdvice.reply, "problem", "reports a problem", "won't")


def _catalog(language: str) -> Any:
    with wording.catalog_path(language).open("rb") as po:
        return read_po(po, locale=language, domain=wording.DOMAIN)


def _draft(language: str, slug: str, post: str = "esim will not activate") -> str | None:
    art = ARTICLES[slug]
    draft = compose_reply(
        post,
        language,
        faq=FaqForReply(1, art.question, art.answer, f"https://h.example/faq/{slug}", art.category),
        triage=PROBLEM,
        personal_data=[],
        channel=resolve_channel("instagram", DEFAULT_LIMITS),
        policy=ReplyPolicy(),
    )
    return draft.text if draft else None


def test_japanese_and_english_have_templates() -> None:
    assert "ja" in CATALOGS
    assert wording.template_languages()[:1] == ("en",)
    assert {"en", "ja"} <= set(wording.template_languages())


@pytest.mark.parametrize("language", CATALOGS)
def test_every_catalog_translates_every_phrase_with_its_placeholders(language: str) -> None:
    catalog = _catalog(language)
    problems = []
    for slot, pairs in wording.PHRASES.items():
        for context, msgid in pairs:
            assert context == slot
            message = catalog.get(msgid, context=context)
            if message is None or not message.string or message.fuzzy:
                problems.append(f"untranslated [{context}] {msgid!r}")
                continue
            names = set(wording.PLACEHOLDER.findall(msgid))
            if set(wording.PLACEHOLDER.findall(message.string)) != names:
                problems.append(f"placeholders differ: {msgid!r} -> {message.string!r}")
            message.string % dict.fromkeys(names, "x")  # a valid format string
    stale = [m.id for m in catalog if m.id and not m.string]
    assert not problems and not stale, "\n".join(problems + stale)
    assert wording.reply_wording(language) is not None


def test_make_messages_extracts_exactly_the_phrases_the_code_uses() -> None:
    path = ROOT / "kb" / "replies" / "wording.py"
    extracted = {
        (context, message)
        for _line, message, _comments, context in extract_from_file(
            "python", str(path), keywords={"R_": ((1, "c"), 2)}
        )
    }
    used = {pair for pairs in wording.PHRASES.values() for pair in pairs}
    assert extracted == used and len(used) == 37
    with (wording.LOCALES_DIR / "replies.pot").open("rb") as pot:
        template = read_po(pot, domain=wording.DOMAIN)
    assert {(m.context, m.id) for m in template if m.id} == used
    assert "babel-replies.cfg" in (ROOT / "Makefile").read_text(encoding="utf-8")


def test_a_japanese_draft_takes_its_wording_from_the_catalog() -> None:
    catalog = _catalog("ja")
    leads = [catalog.get(m, context="lead").string for _, m in wording.PHRASES["lead"]]
    text = _draft("ja", "esim-iphone-activate-ja", "eSIMが開通しない")
    assert text is not None
    link_line = next(line for line in text.split("\n") if "https://" in line)
    assert any(link_line.startswith(lead) for lead in leads)
    assert text.split("\n")[-1] == "ソラミモバイルサポート"


def test_no_template_no_draft_and_an_incomplete_catalog_counts_as_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wording.reply_wording("th") is None
    assert _draft("th", "esim-iphone-activate") is None
    assert wording.no_template_reason("th") == "no reply template for language 'th'"
    # A French catalog that misses one phrase: no draft rather than a mixed one.
    locales = tmp_path / "locales"
    (locales / "fr" / "LC_MESSAGES").mkdir(parents=True)
    ja = wording.catalog_path("ja").read_text(encoding="utf-8")
    partial = ja.replace('msgstr "DMでご連絡ください。"', 'msgstr ""').replace(
        "Language: ja", "Language: fr"
    )
    (locales / "fr" / "LC_MESSAGES" / "replies.po").write_text(partial, encoding="utf-8")
    shutil.copytree(locales / "fr", locales / "xx")
    (locales / "xx" / "LC_MESSAGES" / "replies.po").write_text(ja, encoding="utf-8")
    monkeypatch.setattr(wording, "LOCALES_DIR", locales)
    wording.reply_wording.cache_clear()
    try:
        assert wording.reply_wording("fr") is None
        assert wording.reply_wording("xx") is not None  # complete: a template
        assert wording.template_languages() == ("en", "xx")
    finally:
        monkeypatch.undo()
        wording.reply_wording.cache_clear()


def test_an_article_in_another_language_is_linked_not_quoted() -> None:
    art = ARTICLES["esim-iphone-activate"]
    draft = compose_reply(
        "eSIMが開通しない",
        "ja",
        faq=FaqForReply(
            1, art.question, art.answer, "https://h.example/faq/x", art.category, language="en"
        ),
        triage=PROBLEM,
        personal_data=[],
        channel=resolve_channel("instagram", DEFAULT_LIMITS),
        policy=ReplyPolicy(),
    )
    assert draft is not None and "https://h.example/faq/x?src=reply" in draft.text
    assert "iPhone XS" not in draft.text  # the English gist is left out


def test_a_post_without_a_template_gets_no_draft_but_the_link_and_the_reason(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    r = client.post("/v1/suggest", json={"text": THAI_POST, "channel": "x"}, headers=agent_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lang"] == "th"
    assert body["reply"] is None
    assert body["no_reply_reason"] == "no reply template for language 'th'"
    assert "no reply template for language 'th'" in body["triage"]["reason"]
    assert body["candidates"] and body["candidates"][0]["url"].startswith("http")
    assert "esim" in body["candidates"][0]["slug"]
    # A Japanese post gets its draft and no reason.
    r = client.post(
        "/v1/suggest",
        json={"text": "@ソラミモバイル eSIMが開通しない…", "channel": "x"},
        headers=agent_headers,
    )
    assert r.json()["reply"] is not None and r.json()["no_reply_reason"] is None
