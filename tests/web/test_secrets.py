"""Secrets: keys stored only as hashes and compared in constant time, visitor ids salted,
revocation effective on every replica at once (no per-process key cache)."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import String, Text, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.auth import keys
from kb.db import session_scope
from kb.models import ApiKey, Base, PageView, VisitorSeen, Vote
from tests.support.paths import CONTENT_DIR, TEST_MODEL


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
        env = {
            **os.environ,
            "FAQLOOP_DATA_DIR": str(tmp_path / "cli"),
            "FAQLOOP_DATABASE_URL": db_url,
            "FAQLOOP_EMBEDDING_MODEL": TEST_MODEL,
            "FAQLOOP_MODELS_DIR": str(models_dir),
            "FAQLOOP_CONTENT_DIR": str(CONTENT_DIR),
        }
        r = subprocess.run(
            [sys.executable, "-m", "api.cli.main", "keys", "revoke", str(key_id)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
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
        assert warn_about_default_secrets(defaults) == ["visitor_secret", "pseudonym_secret"]
    assert "FAQLOOP_VISITOR_SECRET is the development default" in caplog.text
    configured = defaults.model_copy(
        update={"visitor_secret": "x" * 40, "pseudonym_secret": "y" * 40}
    )
    assert warn_about_default_secrets(configured) == []
