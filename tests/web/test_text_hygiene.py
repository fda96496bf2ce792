"""Text hygiene at the edge: NUL and lone surrogates are refused (422) wherever text enters
the API, raw invalid UTF-8 is 400, and no text at all makes any endpoint answer 500."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from api.web.text import json_body_problems, text_problem
from kb.capture.thread_files import ThreadRow, read_threads
from kb.db import session_scope
from kb.faqs import entries as faqs
from kb.models import FaqDraft
from kb.text.tabular import RowError

SPECIALS = [
    "esim \ud800",
    "\udfff tail",
    "nul\x00inside",
    "\x00",
    "\u202eRTL override \u202c",
    "مرحبا بالعالم",
    "שלום",
    "📱🔥 eSIM 👨‍👩‍👧",
    "\ufeffBOM",
    "e\u0301\u0301\u0301",
    "\u200b\u200d",
    "１２３ｅＳＩＭ",
    "\x07\x1b[31m",
    "a" * 600,
    "",
    " ",
]
# Any code point, surrogates and control characters included.
ANY_TEXT = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=60),
    st.sampled_from(SPECIALS),
    st.tuples(st.sampled_from(SPECIALS), st.text(max_size=20)).map("".join),
)
_ids = itertools.count(1)


def _bad(text: str) -> bool:
    return text_problem(text) is not None


def _post(client: TestClient, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
    # json.dumps escapes lone surrogates as \ud800 (the client's own encoder would fail on them).
    raw = json.dumps(body).encode()
    return client.request(
        method, url, content=raw, headers={**headers, "Content-Type": "application/json"}
    )


def _check(r: Any, text: str, where: str) -> None:
    assert r.status_code < 500, f"{where}: {r.status_code} {r.text[:300]}"
    if _bad(text):
        assert r.status_code == 422, f"{where}: {r.status_code} {r.text[:300]}"
        body = r.json()
        assert body["error"] == "validation_error"
        assert body["detail"][0]["type"] == "invalid_text"


def test_text_rules() -> None:
    assert text_problem("ok 日本語 📱 \u202e") is None
    assert "NUL" in (text_problem("a\x00b") or "")
    assert "surrogate" in (text_problem("\ud83d") or "")
    assert text_problem("\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")) is None
    # A paired escape is an emoji, not a surrogate; a lone one is refused; keys count too.
    assert json_body_problems(b'{"text": "\\ud83d\\ude00"}') == []
    assert json_body_problems(b'{"text": ["ok", "\\ud800"]}') == [
        (["body", "text", 1], "contains a lone surrogate (U+D800\u2013U+DFFF), which is not text")
    ]
    assert json_body_problems(b'{"a\\u0000": 1}') != []
    assert json_body_problems(b'{"text": "\\\\u0000"}') == []  # an escaped backslash, then text
    assert json_body_problems(b'{"text": "\xed\xa0\x80"}') is None


@pytest.fixture
def targets(session_factory: sessionmaker[Session]) -> dict[str, int]:
    with session_scope(session_factory) as s:
        entry = faqs.create_entry(
            s, question="Hygiene article", answer="Text.", category="plans", language="en"
        )
        draft = FaqDraft(language="en", question="How do I pause my plan", answer="", category=None)
        s.add(draft)
        s.flush()
        return {"faq": entry.id, "draft": draft.id}


def test_every_text_field_survives_any_unicode(
    client: TestClient,
    editor_headers: dict[str, str],
    targets: dict[str, int],
) -> None:
    h = editor_headers

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(text=ANY_TEXT)
    @example(text="a" * 200 + "\x00")
    def run(text: str) -> None:
        n = next(_ids)
        calls = [
            ("suggest", "POST", "/v1/suggest", {"text": text, "k": 3}),
            ("suggest lang", "POST", "/v1/suggest", {"text": text, "lang": "ja"}),
            ("batch", "POST", "/v1/suggest/batch", {"posts": [{"id": text[:200], "text": text}]}),
            (
                "threads",
                "POST",
                "/v1/threads",
                {
                    "channel": "email",
                    "external_id": f"hygiene-{n}",
                    "url": f"https://example.com/{text}",
                    "posts": [
                        {"role": "customer", "author": text, "text": text},
                        {"role": "agent", "text": f"Answer: {text}"},
                    ],
                },
            ),
            (
                "faq put",
                "PUT",
                f"/v1/faqs/{targets['faq']}",
                {
                    "question": "Hygiene article",
                    "answer": text or "x",
                    "category": "plans",
                    "lang": "en",
                    "phrasings": [text],
                },
            ),
            (
                "faq create",
                "POST",
                "/v1/faqs",
                {"question": text, "answer": text, "category": text[:64], "lang": "en"},
            ),
            (
                "faq create slug",
                "POST",
                "/v1/faqs",
                {
                    "question": "Slug test",
                    "answer": "A.",
                    "category": "plans",
                    "lang": "en",
                    "slug": text[:200],
                },
            ),
            ("draft edit", "PATCH", f"/v1/drafts/{targets['draft']}", {"answer": text}),
            ("draft question", "PATCH", f"/v1/drafts/{targets['draft']}", {"question": text}),
        ]
        # The slug call sends the first 200 characters only: a bad character past them is
        # not in the request (hypothesis found 200 letters and a NUL: 409, rightly).
        sent = {"faq create slug": text[:200]}
        for where, method, url, body in calls:
            _check(_post(client, method, url, body, h), sent.get(where, text), where)
        # Query strings: the same rule (percent-encoded surrogates are not UTF-8 at all).
        quoted = text.encode("utf-8", "surrogatepass")
        for url in ("/v1/public/search?q=", "/v1/faqs?category="):
            r = client.get(url + quote_from_bytes(quoted), headers=h)
            assert r.status_code < 500, f"{url}: {r.status_code} {r.text[:300]}"
            if _bad(text):
                assert r.status_code == 422, f"{url}: {r.status_code}"

    run()


def test_raw_invalid_utf8_and_forms_are_client_errors(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    h = {**agent_headers, "Content-Type": "application/json"}
    r = client.post("/v1/suggest", content=b'{"text": "esim \xed\xa0\x80"}', headers=h)
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    r = client.post("/v1/suggest", content=b'{"text": "\xff\xfe"}', headers=h)
    assert r.status_code == 400
    r = client.post("/v1/suggest", content=b'{"text": "esim \\ud800"}', headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "text"]
    r = client.post("/v1/suggest", content=b'{"text": "esim \\u0000"}', headers=h)
    assert r.status_code == 422
    r = client.post("/v1/suggest", content=b'{"text": "esim \\ud83d\\udcf1"}', headers=h)
    assert r.status_code == 200
    r = client.get("/v1/public/search?q=esim%00")
    assert r.status_code == 422
    # Pages: a form with NUL is a plain 400, before any route runs.
    r = client.post(
        "/faq/esim-iphone-activate/vote",
        content=b"helpful=yes&comment=a%00b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and "NUL" in r.text


def test_file_importers_report_bad_text_as_row_errors(tmp_path: Path) -> None:
    jsonl = tmp_path / "threads.jsonl"
    lines = [
        {"channel": "email", "external_id": f"a{n}", "posts": [{"role": "customer", "text": t}]}
        for n, t in enumerate(("esim \ud800 broken", "nul \x00 here", "fine text"), 1)
    ]
    jsonl.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    items = read_threads(jsonl)
    errors = {i.line: i.message for i in items if isinstance(i, RowError)}
    assert set(errors) == {1, 2}
    assert "posts.0.text" in errors[1] and "surrogate" in errors[1] and "NUL" in errors[2]
    assert [i.thread.external_id for i in items if isinstance(i, ThreadRow)] == ["a3"]
    csv_file = tmp_path / "threads.csv"
    csv_file.write_bytes(
        b"channel,external_id,role,text\nemail,b1,customer,nul \x00 cell\n"
        b"email,b2,customer,good\nemail,b2,agent,ok\n"
    )
    items = read_threads(csv_file)
    errors = {i.line: i.message for i in items if isinstance(i, RowError)}
    assert list(errors) == [2] and "NUL" in errors[2]
    assert [i.thread.external_id for i in items if isinstance(i, ThreadRow)] == ["b2"]
