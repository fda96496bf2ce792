"""Posts in other languages: answered from their own language's articles when they exist,
otherwise from another language with the cross-language confidence, the article's language
in the response, and no invented draft (triage says why)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

SPANISH_POST = "@SoramiMobile ¿cómo activo la eSIM en mi teléfono nuevo?"


def _suggest(client: TestClient, headers: dict[str, str], text: str) -> dict[str, Any]:
    r = client.post("/v1/suggest", json={"text": text, "channel": "x"}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_post_in_a_language_without_articles_falls_back_and_gets_no_draft(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    body = _suggest(client, agent_headers, SPANISH_POST)
    assert body["lang"] == "es" and body["cross_language"] is True
    assert body["candidates"] and {c["article_lang"] for c in body["candidates"]} <= {"ja", "en"}
    assert all(c["category"] for c in body["candidates"])
    assert body["reply"] is None
    assert body["triage"]["advice"] == "reply"
    assert "no reply templates in 'es'" in body["triage"]["reason"]

    # Once an article exists in Spanish, Spanish posts are answered from it.
    faq = {
        "question": "¿Cómo activo la eSIM en un teléfono nuevo?",
        "answer": "Abre Ajustes > Datos móviles > Añadir eSIM y escanea el código QR.",
        "category": "sim-esim",
        "lang": "es",
    }
    r = client.post("/v1/faqs", json=faq, headers=editor_headers)
    assert r.status_code == 201, r.text
    body = _suggest(client, agent_headers, SPANISH_POST)
    assert body["cross_language"] is False
    assert body["candidates"][0]["article_lang"] == "es"
    assert body["candidates"][0]["faq_id"] == r.json()["id"]


def test_a_language_code_outside_the_list_is_a_clear_422(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    r = client.post("/v1/suggest", json={"text": "hola", "lang": "xx"}, headers=agent_headers)
    assert r.status_code == 422 and r.json()["error"]


def test_when_suggest_abstains_triage_says_so(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    body = _suggest(client, agent_headers, "@SoramiMobile my parrot keeps stealing my sandwich")
    assert body["abstained"] is True
    assert body["triage"]["advice"] == "reply"
    assert "abstained" in body["triage"]["reason"]
    assert "reply with the FAQ" not in body["triage"]["reason"]


def test_links_are_absolute_without_a_base_url(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    body = _suggest(client, agent_headers, "@SoramiMobile how do I reset my password?")
    assert body["candidates"]
    assert all(c["url"].startswith("http://testserver/faq/") for c in body["candidates"])
    if body["reply"] is not None and body["reply"]["kind"] == "answer":
        assert "http://testserver/faq/" in body["reply"]["text"]
