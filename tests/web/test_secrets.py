"""Secrets: keys stored only as hashes and compared in constant time, visitor ids salted,
revocation effective on every replica at once (no per-process key cache)."""

from __future__ import annotations

import hashlib
import hmac
import json as jsonlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import String, Text, select
from sqlalchemy import text as sql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from api.web.deps import SessionDep
from api.web.observability import JsonFormatter
from indexer.embedding.encoders import CachedEmbedder
from kb.auth import keys
from kb.db import session_scope
from kb.models import ApiKey, Base, PageView, Thread, VisitorSeen, Vote
from tests.support.serve import run as run_cli
from tests.support.serve import serve_env


def _all_text(session: Session) -> str:
    """Every string value of every table, to search for secrets that must not be stored."""
    parts: list[str] = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, String | Text)]
        if not columns:
            continue
        for row in session.execute(select(*columns)):
            parts.extend(str(v) for v in row if v is not None)
    return "\n".join(parts)


def test_keys_are_stored_only_as_sha256_hashes(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        key, secret = keys.create_key(s, role="editor", name="ops")
        key_id = key.id
    with session_factory() as s:
        stored = s.get(ApiKey, key_id)
        assert stored is not None
        assert stored.key_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in _all_text(s)  # neither the secret nor a reversible form of it
        assert stored.prefix == secret[: len(stored.prefix)] and len(stored.prefix) <= 10
    assert len(secret) >= 40  # 32 random bytes behind the prefix


def test_keys_are_compared_in_constant_time(
    client: TestClient,
    agent_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, str]] = []
    real: Callable[[str, str], bool] = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    secret = agent_headers["Authorization"].removeprefix("Bearer ")
    assert client.get("/v1/faqs", headers=agent_headers).status_code == 200
    digest = keys.hash_key(secret)
    # The stored hash is checked against the presented key's hash with compare_digest.
    assert (digest, digest) in calls
    # A wrong key of the same shape is refused without any plain comparison of secrets.
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    r = client.get("/v1/faqs", headers={"Authorization": f"Bearer {wrong}"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_visitor_ids_are_salted_hashes_of_the_cookie(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    slug = "esim-iphone-activate"
    stored: dict[str, set[str]] = {}
    token = "A" * 32  # the same browser cookie on two deployments with different secrets
    for secret in ("first-visitor-secret-0123456789", "second-visitor-secret-987654321"):
        app = create_app(settings.model_copy(update={"visitor_secret": secret}), embedder=embedder)
        with TestClient(app) as client:
            client.cookies.set("fql_v", token)
            article = client.get(f"/v1/public/faqs/{slug}").json()
            r = client.post(
                f"/v1/public/faqs/{slug}/vote",
                json={"helpful": True},
                headers={"X-CSRF-Token": article["csrf_token"]},
            )
            assert r.status_code == 200, r.text
            r = client.post(f"/v1/public/faqs/{slug}/views", json={"src": "reply"})
            assert r.status_code == 200 and r.json()["counted"], r.text
        with session_factory() as s:
            stored[secret] = set(s.scalars(select(Vote.visitor_hash))) | set(
                s.scalars(select(VisitorSeen.visitor_hash))
            )
    first, second = stored.values()
    new_in_second = second - first
    assert len(first) == 1 and len(new_in_second) == 1  # one identity per secret
    for value in first | new_in_second:
        assert value != token and value != hashlib.sha256(token.encode()).hexdigest()
        assert len(value) == 64
    with session_factory() as s:
        assert token not in _all_text(s)
        assert s.scalar(select(PageView.count)) == 2  # two visitors counted


def test_revoking_a_key_takes_effect_on_every_replica_at_once(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    db_url: str,
    models_dir: Path,
) -> None:
    with session_scope(session_factory) as s:
        key, secret = keys.create_key(s, role="agent", name="replicated")
        key_id = key.id
    headers = {"Authorization": f"Bearer {secret}"}
    # Two app processes' worth of state over one database: two replicas.
    one = TestClient(create_app(settings, embedder=embedder))
    two = TestClient(
        create_app(
            settings.model_copy(update={"data_dir": tmp_path / "replica2"}), embedder=embedder
        )
    )
    with one, two:
        for replica in (one, two):
            for _ in range(3):  # warm anything a replica might remember
                assert replica.get("/v1/faqs", headers=headers).status_code == 200
        env = serve_env(tmp_path / "cli", db_url, models_dir)
        r = run_cli(env, "keys", "revoke", str(key_id), timeout=120)
        assert r.returncode == 0, r.stderr
        # The very next request on either replica is refused: nothing cached the key.
        for replica in (two, one):
            r2 = replica.get("/v1/faqs", headers=headers)
            assert r2.status_code == 401 and r2.json()["detail"] == "invalid or revoked API key"
            r3 = replica.post("/v1/suggest", json={"text": "forgot my password"}, headers=headers)
            assert r3.status_code == 401


def test_serve_warns_while_secrets_are_development_defaults(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.web.observability import warn_about_default_secrets

    monkeypatch.delenv("FAQLOOP_VISITOR_SECRET", raising=False)
    monkeypatch.delenv("FAQLOOP_PSEUDONYM_SECRET", raising=False)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    with caplog.at_level("WARNING"):
        named = warn_about_default_secrets(defaults)
    assert sorted(named) == ["pseudonym_secret", "visitor_secret"]
    assert "FAQLOOP_VISITOR_SECRET is the development default" in caplog.text
    configured = defaults.model_copy(
        update={"visitor_secret": "x" * 40, "pseudonym_secret": "y" * 40}
    )
    assert warn_about_default_secrets(configured) == []


# ------------------------------------------------------------ serving with weak secrets

STRONG = "s3cr3t-" + "k" * 40


def _serve(tmp_path: Path, models_dir: Path, *args: str, **env_extra: str) -> Any:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FAQLOOP_") or k == "FAQLOOP_TEST_DATABASE_URL"
    }
    env.update(
        FAQLOOP_DATA_DIR=str(tmp_path / "serve"),
        FAQLOOP_EMBEDDING_MODEL="no-such-model-so-serve-stops-before-binding",
        FAQLOOP_MODELS_DIR=str(models_dir),
        **env_extra,
    )
    return run_cli(env, "serve", *args, timeout=120)


def test_serve_refuses_a_public_address_with_weak_secrets(tmp_path: Path, models_dir: Path) -> None:
    # Development defaults on 0.0.0.0: refused with a clear message, before anything else.
    r = _serve(tmp_path, models_dir, "--host", "0.0.0.0")
    assert r.returncode == 2
    assert "refusing to serve on 0.0.0.0" in r.stderr
    assert "FAQLOOP_VISITOR_SECRET" in r.stderr and "FAQLOOP_PSEUDONYM_SECRET" in r.stderr
    # Set but shorter than 32 bytes: refused too, naming only the short one.
    r = _serve(
        tmp_path,
        models_dir,
        "--host",
        "192.0.2.1",
        FAQLOOP_VISITOR_SECRET=STRONG,
        FAQLOOP_PSEUDONYM_SECRET="only-twenty-bytes-ok",
    )
    assert r.returncode == 2 and "FAQLOOP_PSEUDONYM_SECRET" in r.stderr
    assert "FAQLOOP_VISITOR_SECRET" not in r.stderr
    # Strong secrets, loopback, or the explicit demo switch: serve goes on (and stops later,
    # at the missing model: proof it passed the secrets check).
    for args, extra in (
        (
            ("--host", "0.0.0.0"),
            {"FAQLOOP_VISITOR_SECRET": STRONG, "FAQLOOP_PSEUDONYM_SECRET": STRONG},
        ),
        (("--host", "127.0.0.1"), {}),
        (("--host", "::1"), {}),
        (("--host", "0.0.0.0"), {"FAQLOOP_ALLOW_INSECURE_SECRETS": "true"}),
    ):
        r = _serve(tmp_path, models_dir, *args, **extra)
        assert r.returncode != 0 and "refusing" not in r.stderr, r.stderr
        assert "no-such-model" in r.stderr


def test_one_character_secrets_are_rejected_everywhere() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(visitor_secret="x", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(pseudonym_secret="x", _env_file=None)  # type: ignore[call-arg]


def test_weak_secret_rules() -> None:
    from api.web.observability import is_loopback, refuse_insecure_secrets, weak_secrets

    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert set(weak_secrets(defaults)) == {"pseudonym_secret", "visitor_secret"}
    strong = defaults.model_copy(update={"visitor_secret": STRONG, "pseudonym_secret": STRONG})
    assert weak_secrets(strong) == []
    # 31 bytes of Japanese text is short even though it is 11 characters.
    short = strong.model_copy(update={"visitor_secret": "ひみつのあいことばです"[:10] + "x"})
    assert weak_secrets(short) == ["visitor_secret"]
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))
    assert refuse_insecure_secrets(defaults, "localhost") is None
    assert refuse_insecure_secrets(strong, "0.0.0.0") is None
    demo = defaults.model_copy(update={"allow_insecure_secrets": True})
    assert refuse_insecure_secrets(demo, "0.0.0.0") is None


# ------------------------------------------------------------------ thread URLs, no handles


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://x.com/taro_y/status/1234567890?s=20", "https://x.com/i/status/1234567890"),
        ("https://twitter.com/Taro/status/99/photo/1", "https://x.com/i/status/99"),
        (
            "https://www.instagram.com/taro.y/p/CxYz123/?igsh=abc",
            "https://www.instagram.com/p/CxYz123/",
        ),
        ("https://www.instagram.com/stories/taro.y/3141/", None),
        ("https://x.com/taro_y", None),
        ("mailto:taro@example.com", None),
        ("https://www.tiktok.com/@taro_y/video/7", "https://www.tiktok.com/video/7"),
        ("https://desk.example.com/tickets/42", "https://desk.example.com/tickets/42"),
    ],
)
def test_thread_urls_are_stored_without_the_customer_handle(
    client: TestClient,
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    given: str,
    stored: str | None,
) -> None:
    body = {
        "channel": "x",
        "external_id": "url-" + hashlib.sha256(given.encode()).hexdigest()[:12],
        "url": given,
        "posts": [
            {"role": "customer", "author": "@taro_y", "text": "eSIMが開通しません"},
            {"role": "agent", "author": "@SoramiSupport", "text": "設定をご確認ください。"},
        ],
    }
    r = client.post("/v1/threads", json=body, headers=agent_headers)
    assert r.status_code in (200, 201), r.text
    with session_factory() as s:
        assert s.scalar(select(Thread.url).where(Thread.external_id == body["external_id"])) == (
            stored
        )
        everything = _all_text(s)
    for handle in ("taro_y", "taro.y", "taro@example.com"):
        assert handle not in everything


# ----------------------------------------------------------------------- logs keep no secrets

POST_TEXT = "私の電話番号は090-5555-1234、秘密のご相談です zq-canary-7731"


def test_logs_never_hold_sql_parameters_bodies_or_keys(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    agent_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings, embedder=embedder)

    @app.post("/v1/test-db-error")
    def db_error(payload: dict[str, str], session: SessionDep) -> None:
        # A unique violation whose value is the posted text: PostgreSQL quotes it in DETAIL,
        # SQLAlchemy lists it in [parameters: ...].
        session.execute(sql("CREATE TEMPORARY TABLE canary (v VARCHAR(200) UNIQUE)"))
        insert = sql("INSERT INTO canary (v) VALUES (:v)")
        try:
            with session.begin_nested():
                for _ in range(2):
                    session.execute(insert, {"v": payload["text"]})
        except IntegrityError:
            logging.getLogger("tests.canary").exception("duplicate")
        # A statement error nobody handles: a logged traceback and a 500 (503 on SQLite).
        session.execute(sql("INSERT INTO canary (nope) VALUES (:v)"), {"v": payload["text"]})

    @app.post("/v1/test-error-with-text")
    def text_error(payload: dict[str, str]) -> None:
        raise ValueError(f"cannot handle [parameters: ({payload['text']!r},)]")

    secret = agent_headers["Authorization"].removeprefix("Bearer ")
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as client:
        r = client.post("/v1/test-db-error", json={"text": POST_TEXT}, headers=agent_headers)
        assert r.status_code in (500, 503), r.text
        r = client.post("/v1/test-error-with-text", json={"text": POST_TEXT})
        assert r.status_code == 500
        # A request id that is an API key is not echoed back nor logged.
        r = client.get("/healthz", headers={"X-Request-ID": secret})
        assert r.headers["x-request-id"] != secret
        r = client.get("/healthz", headers={"X-Request-ID": "Zk8fQ2mX9pL4vB7nR1tY6wC3"})
        assert r.headers["x-request-id"] != "Zk8fQ2mX9pL4vB7nR1tY6wC3"
        assert (
            client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1"}).headers["x-request-id"]
            == "lb-7f3a.1"
        )
        # Suggest and a failing validation with the post text and the key in play.
        client.post("/v1/suggest", json={"text": POST_TEXT}, headers=agent_headers)
        client.post("/v1/suggest", json={"text": POST_TEXT, "k": "x"}, headers=agent_headers)
    fmt = JsonFormatter()
    logged = caplog.text + "\n".join(
        jsonlib.dumps(jsonlib.loads(fmt.format(rec)), ensure_ascii=False) for rec in caplog.records
    )
    assert "IntegrityError" in logged and "canary" in logged  # the failures are logged...
    assert "zq-canary-7731" not in logged and "090-5555-1234" not in logged  # ...not the text
    assert "[SQL: INSERT" not in logged and "[parameters: (" not in logged  # nor the SQL
    assert "[SQL: hidden]" in logged
    assert secret not in logged and secret[4:] not in logged
    assert "Zk8fQ2mX9pL4vB7nR1tY6wC3" not in logged


# ----------------------------------------------------------------- API docs without a CDN


def test_api_docs_load_nothing_from_other_hosts(client: TestClient) -> None:
    import re

    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        html = r.text
        # Every script and stylesheet is ours: relative URLs only, no inline script.
        refs = re.findall(r'(?:src|href)="([^"]*)"', html)
        assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs)
        assert "http://" not in html and "https://" not in html
        assert re.search(r"<script>(?!</script>)", html) is None
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "http" not in csp  # no third-party origin allowed
        for ref in refs:
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 100, ref
    assert client.get("/openapi.json").status_code == 200
