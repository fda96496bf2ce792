"""Batch suggestions: POST /v1/suggest/batch (all or nothing, size-limited) and
`faqloop suggest-file` (JSONL or CSV, progress bar, resumable without repeating work)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from api import state
from api.app import create_app
from api.cli.main import app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.errors import InvalidInput
from kb.models import Suggestion
from kb.replies.file_batch import RowError, done_ids, parse_posts, read_posts
from tests.support.paths import CONTENT_DIR, TEST_MODEL

POSTS = [
    {"id": "p1", "text": "@SoramiMobile my esim won't activate after scanning the QR"},
    {"id": "p2", "text": "@ソラミモバイル 解約金はかかりますか？", "channel": "instagram"},
    {"id": "p3", "text": "@SoramiMobile fixed, thanks a lot!"},
    {"id": "p4", "text": "@hanako ソラミにしなよ、安いよ"},
]


def _count(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Suggestion)) or 0


@pytest.fixture
def small_batch_client(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> Iterator[TestClient]:
    with TestClient(
        create_app(settings.model_copy(update={"batch_max": 3}), embedder=embedder)
    ) as c:
        yield c


def test_batch_api_answers_every_post_in_order(
    small_batch_client: TestClient,
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    client = small_batch_client
    r = client.post(
        "/v1/suggest/batch", json={"posts": POSTS[:3], "channel": "x"}, headers=agent_headers
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results] == ["p1", "p2", "p3"]
    assert [x["lang"] for x in results] == ["en", "ja", "en"]
    assert [x["triage"]["advice"] for x in results] == ["reply", "reply", "thank"]
    assert results[0]["reply"]["limit"] == 280  # the batch's channel
    assert results[1]["reply"]["limit"] == 2200  # the post's own channel wins
    single = client.post("/v1/suggest", json={"text": POSTS[0]["text"]}, headers=agent_headers)
    assert results[0]["best"] == single.json()["best"]
    assert _count(session_factory) == 4
    ids = {x["suggestion_id"] for x in results}
    assert len(ids) == 3 and None not in ids


def test_batch_api_refuses_too_many_or_bad_posts_and_stores_nothing(
    small_batch_client: TestClient,
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    client = small_batch_client
    r = client.post("/v1/suggest/batch", json={"posts": POSTS}, headers=agent_headers)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert "at most 3 posts" in r.json()["detail"]
    bad = [POSTS[0], {"id": "empty", "text": "  "}, {"text": "x" * 5001}]
    r = client.post("/v1/suggest/batch", json={"posts": bad}, headers=agent_headers)
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "post 1 (id empty)" in detail and "post 2" in detail and "none was stored" in detail
    assert (
        client.post("/v1/suggest/batch", json={"posts": []}, headers=agent_headers).status_code
        == 422
    )
    assert client.post("/v1/suggest/batch", json={"posts": POSTS[:1]}).status_code == 401
    assert _count(session_factory) == 0


def test_posts_files_are_read_with_line_numbers(tmp_path: Path) -> None:
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text(
        json.dumps(POSTS[0])
        + "\n\n{broken\n"
        + json.dumps({"text": "no id here"})
        + "\n"
        + json.dumps({"id": 7, "text": 5})
        + "\n[1]\n"
        + json.dumps({"id": "k", "text": "hi", "k": "three"})
        + "\n",
        encoding="utf-8",
    )
    items = read_posts(jsonl)
    assert [(type(i).__name__, i.line, i.id) for i in items] == [
        ("PostRow", 1, "p1"),
        ("RowError", 3, "3"),
        ("PostRow", 4, "4"),
        ("RowError", 5, "7"),
        ("RowError", 6, "6"),
        ("RowError", 7, "k"),
    ]
    errors = [i for i in items if isinstance(i, RowError)]
    assert "JSON" in errors[0].message and "text" in errors[1].message
    assert "k must be" in errors[3].message
    csv_file = tmp_path / "posts.csv"
    csv_file.write_text(
        '\ufeffid,text,lang,channel\nc1,"eSIM, not working\nat all",en,x\nc2,解約金は？,,\n',
        encoding="utf-8",
    )
    rows = read_posts(csv_file)
    assert [(r.id, r.text, r.lang, r.channel) for r in rows] == [  # type: ignore[union-attr]
        ("c1", "eSIM, not working\nat all", "en", "x"),
        ("c2", "解約金は？", None, None),
    ]
    with pytest.raises(InvalidInput):
        read_posts(tmp_path / "posts.txt")
    with pytest.raises(InvalidInput):
        read_posts(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInput):
        parse_posts(iter(["id,body\n", "1,x\n"]), "csv")  # type: ignore[arg-type]


def test_a_torn_last_line_is_cut_off_and_its_post_done_again(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "a", "x": 1}\n{"id": "b"}\nnot json\n{"id": "c", "x"')
    assert done_ids(out) == {"a", "b"}
    assert out.read_bytes() == b'{"id": "a", "x": 1}\n{"id": "b"}\nnot json\n'
    assert done_ids(tmp_path / "none.jsonl") == set()


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    db_url: str,
    models_dir: Path,
    embedder: CachedEmbedder,
    seeded: None,
) -> CliRunner:
    """The real command line in this process, sharing the session's loaded model."""
    for name, value in {
        "FAQLOOP_DATA_DIR": str(tmp_path / "data"),
        "FAQLOOP_DATABASE_URL": db_url,
        "FAQLOOP_EMBEDDING_MODEL": TEST_MODEL,
        "FAQLOOP_MODELS_DIR": str(models_dir),
        "FAQLOOP_CONTENT_DIR": str(CONTENT_DIR),
        "FAQLOOP_BASE_URL": "https://help.sorami-mobile.com",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(state, "load_embedder", lambda name, directory, **_: embedder)
    return CliRunner()


def _lines(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_suggest_file_writes_one_line_per_post_and_resumes(
    cli: CliRunner, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    posts = [*POSTS, {"id": "bad", "text": ""}, {"id": "p1", "text": "duplicate id"}]
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts), "utf-8")
    out = tmp_path / "out.jsonl"
    r = cli.invoke(app, ["suggest-file", str(src), "-o", str(out), "--channel", "x"])
    assert r.exit_code == 2, r.output
    assert "6 posts: 4 suggested, 0 already in out.jsonl, 1 failed, 1 duplicate" in r.stdout
    assert "line 5 (id bad): text must not be empty" in r.stderr
    assert "posts" in r.stderr and "6/6" in r.stderr  # the progress bar
    lines = _lines(out)
    assert [x["id"] for x in lines] == ["p1", "p2", "p3", "p4", "bad"]
    assert lines[4]["error"] == "text must not be empty"
    first = lines[0]
    assert first["reply"]["limit"] == 280 and first["reply"]["weighted_length"] <= 280
    assert "https://help.sorami-mobile.com/faq/" in first["reply"]["text"]
    assert "?src=reply" in first["reply"]["text"]
    assert lines[1]["reply"]["limit"] == 2200  # the post's channel
    assert lines[3]["triage"]["advice"] == "skip" and lines[3]["reply"] is None
    stored = _count(session_factory)
    assert stored == 4

    # Nothing left to do: a re-run repeats no work.
    r = cli.invoke(app, ["suggest-file", str(src), "-o", str(out)])
    assert "0 suggested, 5 already in out.jsonl" in r.stdout
    assert _count(session_factory) == stored and len(_lines(out)) == 5

    # Interrupted run: two complete lines and a torn third one.
    raw = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text(raw[0] + raw[1] + raw[2][: len(raw[2]) // 2], encoding="utf-8")
    r = cli.invoke(app, ["suggest-file", str(src), "-o", str(out)])
    assert "2 suggested, 2 already in out.jsonl, 1 failed" in r.stdout, r.output
    lines = _lines(out)
    assert sorted(x["id"] for x in lines) == ["bad", "p1", "p2", "p3", "p4"]
    assert _count(session_factory) == stored + 2  # only p3 and p4 were done again


def test_suggest_file_reads_csv_and_refuses_bad_arguments(cli: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "posts.csv"
    src.write_text(
        "id,text,channel\nc1,@SoramiMobile how do I reset my password?,x\n"
        "c2,@ソラミモバイル パスワードを忘れました,\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    r = cli.invoke(app, ["suggest-file", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    lines = _lines(out)
    assert [(x["id"], x["lang"]) for x in lines] == [("c1", "en"), ("c2", "ja")]
    assert all(x["best"] and x["best"]["slug"].startswith("reset-password") for x in lines)
    r = cli.invoke(app, ["suggest-file", str(src), "-o", str(src)])
    assert r.exit_code == 2 and "must not be the input" in r.stderr
    r = cli.invoke(app, ["suggest-file", str(tmp_path / "nope.csv"), "-o", str(out)])
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = cli.invoke(app, ["suggest-file", str(src), "-o", str(out), "--format", "xml"])
    assert r.exit_code == 2
