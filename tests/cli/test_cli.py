"""The `faqloop` CLI as a user runs it: real subprocesses, real database, exit codes."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kb.auth.keys import hash_key
from kb.db import make_engine, make_session_factory
from kb.models import ApiKey, FaqEntry
from tests.support.paths import CONTENT_DIR, TEST_MODEL
from tests.support.serve import run


@pytest.fixture
def env(tmp_path: Path, db_url: str, models_dir: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        FAQLOOP_DATA_DIR=str(tmp_path / "data"),
        FAQLOOP_DATABASE_URL=db_url,
        FAQLOOP_EMBEDDING_MODEL=TEST_MODEL,
        FAQLOOP_MODELS_DIR=str(models_dir),
        FAQLOOP_CONTENT_DIR=str(CONTENT_DIR),
        HF_HUB_OFFLINE="1",
    )
    return e


def _count(db_url: str, model: type) -> int:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        n = s.scalar(select(func.count()).select_from(model)) or 0
    engine.dispose()
    return n


def test_keys_create_prints_only_the_key_and_stores_its_hash(
    env: dict[str, str], db_url: str
) -> None:
    r = run(env, "keys", "create", "--role", "editor", "--name", "alice")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fql_")
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        key = s.scalar(select(ApiKey))
        assert key is not None and key.key_hash == hash_key(lines[0]) and key.name == "alice"
    engine.dispose()
    listing = run(env, "keys", "list")
    assert "editor" in listing.stdout and lines[0] not in listing.stdout
    assert run(env, "keys", "revoke", str(key.id)).returncode == 0
    assert "revoked" in run(env, "keys", "list").stdout
    bad = run(env, "keys", "create", "--role", "root")
    assert bad.returncode == 2 and "role must be one of" in bad.stderr
    assert run(env, "keys", "revoke", "999").returncode == 2


def test_load_content_is_idempotent_and_all_or_nothing(
    env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    r = run(env, "load-content")
    assert r.returncode == 0, r.stderr
    n = _count(db_url, FaqEntry)
    assert n >= 80 and f"{n} created" in r.stdout
    r = run(env, "load-content")
    assert r.returncode == 0 and f"{n} unchanged" in r.stdout
    assert _count(db_url, FaqEntry) == n
    broken = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, broken)
    first = sorted((broken / "en").glob("*.md"))[0]
    first.write_text("---\nid: [oops\n---\n# Q\n\nA\n")
    (broken / "en" / "zz-new.md").write_text(
        "---\nid: zz.en\nslug: zz-new\ncategory: billing\nlanguage: en\n---\n# New?\n\nYes.\n"
    )
    r = run(env, "load-content", str(broken))
    assert r.returncode == 2 and first.name in r.stderr and "malformed front matter" in r.stderr
    assert _count(db_url, FaqEntry) == n  # the good new file was not loaded either


def test_reindex_and_suggest_print_ranked_candidates(env: dict[str, str]) -> None:
    assert run(env, "load-content").returncode == 0
    r = run(env, "reindex")
    assert r.returncode == 0, r.stderr
    assert "index generation 1" in r.stdout and TEST_MODEL in r.stdout
    r = run(env, "suggest", "eSIMの再発行をしたい。スマホを機種変更したので")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("confidence ")
    assert lines[1].startswith(" 1. [") and "/faq/" in lines[1]
    assert len(lines) == 6
    r = run(env, "suggest", "   ")
    assert r.returncode == 2 and "text must not be empty" in r.stderr
    r = run(env, "suggest", "hi", "--lang", "xx")
    assert r.returncode == 2 and "lang must be one of" in r.stderr
    r = run(env, "reindex", "--if-needed")
    assert r.returncode == 0 and "loaded generation 1" in r.stdout


def test_reindex_takes_the_saved_vectors_unless_told_to_re_embed(
    env: dict[str, str], tmp_path: Path
) -> None:
    content = tmp_path / "content"
    (content / "en").mkdir(parents=True)
    shutil.copy(CONTENT_DIR / "categories.yaml", content)
    shutil.copy(CONTENT_DIR / "en" / "5g-not-showing.md", content / "en")
    assert run(env, "load-content", str(content)).returncode == 0
    first = run(env, "reindex")
    assert first.returncode == 0, first.stderr
    texts = re.search(r"index generation 1: 1 entries, (\d+) texts", first.stdout)
    assert texts and "taken from the saved index" not in first.stdout
    again = run(env, "reindex")
    assert again.returncode == 0, again.stderr
    assert "index generation 2" in again.stdout
    assert f"({texts[1]} vectors taken from the saved index)" in again.stdout
    fresh = run(env, "reindex", "--re-embed")
    assert fresh.returncode == 0, fresh.stderr
    assert "index generation 3" in fresh.stdout and "taken from" not in fresh.stdout


def test_invalid_configuration_is_a_clear_error(env: dict[str, str]) -> None:
    r = run({**env, "FAQLOOP_PORT": "not-a-port"}, "migrate")
    assert r.returncode == 2 and "invalid configuration" in r.stderr
    r = run({**env, "FAQLOOP_EMBEDDING_MODEL": "/nonexistent/model"}, "reindex")
    assert r.returncode == 2 and "neither one of" in r.stderr
