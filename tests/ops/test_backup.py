"""`faqloop backup` / `faqloop restore` as an operator runs them, on SQLite and PostgreSQL.

A backup taken while the service runs and writes restores into an empty database with the
same API answers (entries, revisions, phrasings, votes, views, flags, threads, drafts) and
the same rows in every table; the index is rebuilt from the restored rows; a non-empty
target and damaged files are refused without writing anything; an older backup is
upgraded by the migrations.
"""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from indexer.store import IndexStore
from kb.db import alembic_config, make_engine, make_session_factory, migrate, session_scope
from kb.models import EntryStatus, FaqEntry, Flag, FlagKind, FlagStatus
from kb.ops.backup import count_rows, restore_database
from tests.support.paths import CONTENT_DIR, PG_URL, TEST_MODEL
from tests.support.serve import run as run_cli
from tests.support.serve import serve_env

# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def new_database(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty databases (no tables): SQLite files, or PostgreSQL schemas."""
    schemas: list[str] = []
    counter = iter(range(1000))

    def make() -> str:
        n = next(counter)
        if not PG_URL:
            path = tmp_path / f"target-{n}" / "faqloop.db"
            path.parent.mkdir()
            return f"sqlite:///{path}"
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        schemas.append(schema)
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield make
    if schemas:
        admin = create_engine(PG_URL or "", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _env(url: str, data_dir: Path, models_dir: Path) -> dict[str, str]:
    # The runtime of the in-process `embedder` fixture (the default's, as in `faqloop
    # serve`): the restored index is compared with answers of that embedder, to the fourth
    # decimal.
    return serve_env(data_dir, url, models_dir)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (alembic_version aside), in primary-key order."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            meta = MetaData()
            meta.reflect(bind=conn)
            out = {}
            for table in sorted(meta.tables.values(), key=lambda t: t.name):
                if table.name == "alembic_version":
                    continue
                order = list(table.primary_key.columns) or list(table.columns)
                rows = conn.execute(select(table).order_by(*order))
                out[table.name] = [tuple(_plain(v) for v in row) for row in rows]
            return out
    finally:
        engine.dispose()


def _populate(
    client: TestClient,
    agent: dict[str, str],
    editor: dict[str, str],
    factory: sessionmaker[Session],
) -> None:
    """Entries with revisions and phrasings, threads, a draft, votes, views, a flag."""
    r = client.post(
        "/v1/faqs",
        json={
            "question": "回線を一時停止できますか？",
            "answer": "はい。**マイソラミ**から手続きできます。\n\n1. ログイン\n2. 一時停止",
            "category": "plans",
            "lang": "ja",
            "phrasings": ["しばらく使わないので止めたい", "海外にいる間だけ休止したい"],
            "translation_group": "pause-line",
        },
        headers=editor,
    )
    assert r.status_code == 201, r.text
    faq_id = r.json()["id"]
    r = client.put(
        f"/v1/faqs/{faq_id}",
        json={
            "question": "回線を一時停止するには？",
            "answer": "マイソラミの「契約」から一時停止できます。",
            "category": "plans",
            "lang": "ja",
            "reason": "わかりやすく",
        },
        headers=editor,
    )
    assert r.status_code == 200, r.text
    for n, (text_, lang) in enumerate(
        (
            ("@SoramiMobile 海外でデータ通信を止める方法は？😭", "ja"),
            ("How do I get a refund for a double charge on my bill?", "en"),
            ("Why is my bill higher than usual this month??", "en"),
        )
    ):
        body = {
            "channel": "x",
            "external_id": f"18600000000000000{n}",
            "resolved_at": "2026-11-19T10:05:00+09:00",
            "posts": [
                {"role": "customer", "author": f"@user_{n}", "text": text_},
                {
                    "role": "agent",
                    "author": "@SoramiSupport",
                    "text": "DMでご案内します"
                    if lang == "ja"
                    else "We've sent you a DM with the steps.",
                },
            ],
        }
        r = client.post("/v1/threads", json=body, headers=agent)
        assert r.status_code == 201, r.text
    for slug, helpful, comment in (
        ("esim-iphone-activate", False, "no Android steps"),
        ("esim-iphone-activate-ja", True, None),
        ("esim-iphone-activate", True, None),
    ):
        client.cookies.clear()
        article = client.get(f"/v1/public/faqs/{slug}").json()
        r = client.post(
            f"/v1/public/faqs/{slug}/vote",
            json={"helpful": helpful, "comment": comment},
            headers={"X-CSRF-Token": article["csrf_token"]},
        )
        assert r.status_code == 200, r.text
        r = client.post(f"/v1/public/faqs/{slug}/views", json={"src": "reply"})
        assert r.status_code == 200, r.text
    r = client.post("/v1/suggest", json={"text": "eSIMが開通しない"}, headers=agent)
    assert r.status_code == 200
    for query in ("宇宙旅行のプランはありますか", "eSIM 開通"):  # a content gap and a hit
        assert client.get("/v1/public/search", params={"q": query}).status_code == 200
    with session_scope(factory) as s:
        entry = s.scalar(select(FaqEntry).where(FaqEntry.slug == "esim-iphone-activate"))
        assert entry is not None
        s.add(
            Flag(
                entry_id=entry.id,
                kind=FlagKind.low_helpfulness,
                key=f"low_helpfulness:{entry.id}",
                score=0.75,
                evidence={"votes": 2, "helpful": 1, "comment": "手順が足りない"},
                status=FlagStatus.open,
            )
        )


def _api_answers(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    """What the API says about everything that was backed up."""
    out: dict[str, Any] = {}

    def get(path: str) -> None:
        r = client.get(path, headers=headers)
        assert r.status_code == 200, (path, r.text)
        out[path] = r.json()

    get("/v1/faqs?limit=500")
    for item in out["/v1/faqs?limit=500"]["items"]:
        get(f"/v1/faqs/{item['id']}")
        get(f"/v1/faqs/{item['id']}/stats")
    get("/v1/threads?limit=500")
    for item in out["/v1/threads?limit=500"]["items"]:
        get(f"/v1/threads/{item['id']}")
    get("/v1/drafts?status=all")
    get("/v1/search-gaps")
    out["/v1/search-gaps"].pop("since")  # "30 days before now"
    paths = client.get("/openapi.json").json()["paths"]
    if "/v1/flags" in paths:  # the content-health feature's view of the flags
        get("/v1/flags?status=all")
    for post in ("eSIMが開通しない", "I was charged twice this month"):
        r = client.post("/v1/suggest", json={"text": post, "k": 5}, headers=headers)
        assert r.status_code == 200
        out[f"suggest {post}"] = [
            (c["faq_id"], round(c["score"], 4)) for c in r.json()["candidates"]
        ]
    return out


# -------------------------------------------------------------------------------- tests


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["auto", "logical"])
def test_restore_gives_identical_api_answers_and_rows(
    fmt: str,
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
    db_url: str,
    new_database: Callable[[], str],
    models_dir: Path,
    tmp_path: Path,
) -> None:
    backup_file = tmp_path / f"faqloop-{fmt}.backup"
    with TestClient(create_app(settings, embedder=embedder)) as source:
        _populate(source, agent_headers, editor_headers, session_factory)
        # The service is running (its app is open) while the backup is taken.
        r = run_cli(
            _env(db_url, settings.data_dir, models_dir), "backup", str(backup_file), "--format", fmt
        )
        assert r.returncode == 0, r.stderr
        assert f"written to {backup_file}" in r.stdout
        rows_before = _dump(db_url)
        before = _api_answers(source, editor_headers)  # (records suggestions: after the dump)

    target = new_database()
    target_dir = tmp_path / "restored-data"
    r = run_cli(_env(target, target_dir, models_dir), "restore", str(backup_file))
    assert r.returncode == 0, r.stderr
    assert "index generation 1 rebuilt" in r.stdout
    assert _dump(target) == rows_before

    # The index was built from the restored rows (the backup holds none).
    manifest = IndexStore(target_dir / "index").current_manifest()
    with make_session_factory(make_engine(target))() as s:
        published = s.scalar(
            select(func.count())
            .select_from(FaqEntry)
            .where(FaqEntry.status == EntryStatus.published)
        )
    assert manifest is not None and manifest.entries == published

    restored_settings = settings.model_copy(update={"database_url": target, "data_dir": target_dir})
    with TestClient(create_app(restored_settings, embedder=embedder)) as restored:
        assert restored.get("/healthz").json()["index"]["generation"] == 1  # loaded, not rebuilt
        after = _api_answers(restored, editor_headers)  # the same keys work after a restore
    assert after == before


def test_a_logical_export_restores_into_sqlite(
    seeded: None,
    session_factory: sessionmaker[Session],
    db_url: str,
    models_dir: Path,
    tmp_path: Path,
) -> None:
    # On the PostgreSQL pass this moves PostgreSQL data into SQLite; the other way round is
    # the same code path (the restore reads the export, whichever database wrote it).
    backup_file = tmp_path / "export.ndjson.gz"
    r = run_cli(
        _env(db_url, tmp_path / "d", models_dir), "backup", str(backup_file), "--format", "logical"
    )
    assert r.returncode == 0, r.stderr
    with gzip.open(backup_file, "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline())
    heads = sorted(ScriptDirectory.from_config(alembic_config(db_url)).get_heads())
    assert header["format"] == "faqloop-backup" and header["alembic_revisions"] == heads
    assert [t["name"] for t in header["tables"]].index("faq_entry") < [
        t["name"] for t in header["tables"]
    ].index("faq_revision")
    target = f"sqlite:///{tmp_path / 'sqlite-target' / 'faqloop.db'}"
    (tmp_path / "sqlite-target").mkdir()
    summary = restore_database(target, backup_file)
    assert summary.total_rows == sum(count_rows(make_engine(db_url)).values())
    assert _dump(target) == _dump(db_url)


@pytest.mark.slow
def test_a_backup_taken_during_writes_is_a_consistent_snapshot(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
    editor_headers: dict[str, str],
    db_url: str,
    models_dir: Path,
    tmp_path: Path,
) -> None:
    app = create_app(settings, embedder=embedder)
    stop = threading.Event()
    created: list[int] = []
    errors: list[str] = []

    def write_entries() -> None:
        client = TestClient(app)  # the app's services come from the main `with` below
        n = 0
        while not stop.is_set():
            n += 1
            r = client.post(
                "/v1/faqs",
                json={
                    "question": f"バックアップ中の質問 {n}",
                    "answer": f"回答 {n}",
                    "category": "plans",
                    "lang": "ja",
                    "phrasings": [f"言い換え {n} の一", f"言い換え {n} の二", f"言い換え {n} の三"],
                },
                headers=editor_headers,
            )
            if r.status_code != 201:
                errors.append(r.text)
                return
            created.append(r.json()["id"])

    def write_votes() -> None:
        client = TestClient(app)
        while not stop.is_set():
            client.cookies.clear()
            article = client.get("/v1/public/faqs/esim-iphone-activate").json()
            r = client.post(
                "/v1/public/faqs/esim-iphone-activate/vote",
                json={"helpful": True},
                headers={"X-CSRF-Token": article["csrf_token"]},
            )
            if r.status_code not in (200, 429):
                errors.append(r.text)
                return

    backups: list[Path] = []
    with TestClient(app):
        writers = [threading.Thread(target=write_entries), threading.Thread(target=write_votes)]
        for w in writers:
            w.start()
        try:
            env = _env(db_url, settings.data_dir, models_dir)
            for i in range(3):
                path = tmp_path / f"during-{i}.backup"
                r = run_cli(env, "backup", str(path))
                assert r.returncode == 0, r.stderr
                backups.append(path)
        finally:
            stop.set()
            for w in writers:
                w.join(60)
    assert not errors, errors[:3]
    assert created, "no write happened while the backups ran"
    counts = []
    for path in backups:
        target = f"sqlite:///{tmp_path / path.stem / 'faqloop.db'}"
        (tmp_path / path.stem).mkdir()
        restore_database(target, path)
        with make_session_factory(make_engine(target))() as s:
            entries = s.execute(text("SELECT id, current_revision_id FROM faq_entry")).all()
            revisions = dict(s.execute(text("SELECT id, entry_id FROM faq_revision")).all())
            # Every entry's current revision is in the snapshot and belongs to it.
            assert all(revisions.get(rev) == eid for eid, rev in entries)
            phrasings = dict(
                s.execute(
                    text("SELECT entry_id, count(*) FROM question_phrasing GROUP BY entry_id")
                ).all()
            )
            mine = [eid for eid, _ in entries if eid in set(created)]
            # Entries are written with their 3 phrasings in one transaction: all or none.
            assert all(phrasings.get(eid) == 3 for eid in mine)
            changes = {r[0] for r in s.execute(text("SELECT DISTINCT entry_id FROM entry_change"))}
            assert {eid for eid, _ in entries} <= changes
            votes = s.execute(
                text(
                    "SELECT count(*) FROM vote v JOIN faq_revision r ON r.id = v.revision_id "
                    "AND r.entry_id = v.entry_id"
                )
            ).scalar()
            assert votes == s.execute(text("SELECT count(*) FROM vote")).scalar()
            counts.append((len(entries), votes))
    print(f"\nsnapshots during writes (entries, votes): {counts}; entries written: {len(created)}")


def test_restore_refuses_a_database_that_holds_rows(
    seeded: None,
    session_factory: sessionmaker[Session],
    db_url: str,
    models_dir: Path,
    tmp_path: Path,
) -> None:
    env = _env(db_url, tmp_path / "d", models_dir)
    backup_file = tmp_path / "b.backup"
    assert run_cli(env, "backup", str(backup_file)).returncode == 0
    before = _dump(db_url)
    r = run_cli(env, "restore", str(backup_file), "--no-reindex")
    assert r.returncode == 2
    assert "is not empty" in r.stderr and "faq_entry (106)" in r.stderr
    assert _dump(db_url) == before


def test_damaged_backups_are_refused_and_leave_the_target_empty(
    seeded: None,
    db_url: str,
    new_database: Callable[[], str],
    models_dir: Path,
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.ndjson.gz"
    env = _env(db_url, tmp_path / "d", models_dir)
    assert run_cli(env, "backup", str(good), "--format", "logical").returncode == 0
    data = good.read_bytes()
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(data[: len(data) // 2])
    no_footer = tmp_path / "no-footer.gz"
    with gzip.open(good, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    with gzip.open(no_footer, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines[:-1]) + "\n")  # every row, but no end marker
    other = tmp_path / "other.gz"
    with gzip.open(other, "wt") as fh:
        fh.write('{"hello": "world"}\n')
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00not a backup at all")
    foreign_db = tmp_path / "foreign.db"
    con = __import__("sqlite3").connect(foreign_db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    cases = {
        truncated: "damaged or truncated",
        no_footer: "truncated (no end marker)",
        other: "not a faqloop backup",
        garbage: "not a faqloop backup",
        foreign_db: "no schema version",
    }
    for path, message in cases.items():
        target = new_database()
        r = run_cli(_env(target, tmp_path / f"t-{path.stem}", models_dir), "restore", str(path))
        assert r.returncode == 2, (path, r.stdout, r.stderr)
        assert message in r.stderr, (path, r.stderr)
        assert sum(count_rows(make_engine(target)).values()) == 0


def test_an_older_backup_is_upgraded_by_the_migrations(
    new_database: Callable[[], str],
    models_dir: Path,
    tmp_path: Path,
    embedder: CachedEmbedder,
) -> None:
    old = new_database()
    migrate(old, "0001")  # a database as the first release left it
    engine = make_engine(old)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        meta = MetaData()
        meta.reflect(bind=conn)
        conn.execute(
            insert(meta.tables["faq_entry"]),
            {
                "id": 1,
                "slug": "pause-line",
                "category": "plans",
                "language": "en",
                "status": "published",
                "created_at": now,
                "updated_at": now,
            },
        )
        conn.execute(
            insert(meta.tables["faq_revision"]),
            {
                "id": 1,
                "entry_id": 1,
                "number": 1,
                "question": "Can I pause my line?",
                "answer": "Yes, in My Sorami.",
                "author": "",
                "reason": "",
                "created_at": now,
            },
        )
        conn.execute(meta.tables["faq_entry"].update().values(current_revision_id=1))
        conn.execute(
            insert(meta.tables["entry_change"]), {"id": 1, "entry_id": 1, "created_at": now}
        )
    engine.dispose()
    heads = sorted(ScriptDirectory.from_config(alembic_config(old)).get_heads())
    for fmt in ("auto", "logical"):
        backup_file = tmp_path / f"old-{fmt}.backup"
        r = run_cli(
            _env(old, tmp_path / "old", models_dir), "backup", str(backup_file), "--format", fmt
        )
        assert r.returncode == 0, r.stderr
        assert "schema 0001" in r.stdout
        target = new_database()
        target_dir = tmp_path / f"new-{fmt}"
        r = run_cli(
            _env(target, target_dir, models_dir), "restore", str(backup_file), "--no-reindex"
        )
        assert r.returncode == 0, r.stderr
        with make_engine(target).connect() as conn:
            assert sorted(conn.scalars(text("SELECT version_num FROM alembic_version"))) == heads
        settings = Settings(
            data_dir=target_dir,
            database_url=target,
            embedding_model=TEST_MODEL,
            models_dir=models_dir,
            content_dir=CONTENT_DIR,
            sync_interval=3600,
            _env_file=None,  # type: ignore[call-arg]
        )
        with session_scope(make_session_factory(make_engine(target))) as s:
            from kb.auth.keys import create_key

            _, key = create_key(s, role="agent")
        with TestClient(create_app(settings, embedder=embedder)) as client:
            r2 = client.get("/v1/faqs/1", headers={"Authorization": f"Bearer {key}"})
            assert r2.status_code == 200 and r2.json()["question"] == "Can I pause my line?"
        shutil.rmtree(target_dir, ignore_errors=True)
