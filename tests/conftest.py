"""Shared fixtures: a real database per test (SQLite, or PostgreSQL when configured), the
embedding model loaded once per session, and the real app through TestClient."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder, load_embedder
from kb.auth.keys import create_key
from kb.db import make_engine, make_session_factory, migrate, session_scope
from kb.faqs.content import read_content_dir
from kb.faqs.entries import load_articles
from kb.models import Base, FaqEntry
from tests.support.accounts import Account, make_account, signed_in
from tests.support.paths import CONTENT_DIR, PG_URL, TEST_MODEL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that touch the database are marked, so `make test` can run them again on PG.
    for item in items:
        if "db_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


def pytest_report_header() -> list[str]:
    db = make_url(PG_URL).render_as_string(hide_password=True) if PG_URL else "SQLite"
    return [f"faqloop tests: database {db}, embedding model {TEST_MODEL}"]


@pytest.fixture(scope="session")
def seed_articles() -> list:  # type: ignore[type-arg]
    return read_content_dir(CONTENT_DIR)


def _load_seed(url: str, articles: list) -> None:  # type: ignore[type-arg]
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            load_articles(s, articles, author="faq_content")
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Migrating once and copying the file keeps a fresh, real, migrated database per test cheap.
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _sqlite_seeded_template(
    _sqlite_template: Path,
    tmp_path_factory: pytest.TempPathFactory,
    seed_articles: list,  # type: ignore[type-arg]
) -> Path:
    # Loading the seed content (106 articles through the domain code) costs 1-3 s; done once,
    # then each test that asks for `seeded` starts from a copy of the result.
    path = tmp_path_factory.mktemp("template") / "seeded.db"
    shutil.copy(_sqlite_template, path)
    _load_seed(f"sqlite:///{path}", seed_articles)
    return path


def _pg_schema_url(schema: str) -> str:
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _pg_seeded_schema(seed_articles: list) -> Iterator[str]:  # type: ignore[type-arg]
    """A schema on the test server holding the migrated, seeded database (once per session)."""
    schema = f"t_seed_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        migrate(_pg_schema_url(schema))
        _load_seed(_pg_schema_url(schema), seed_articles)
        yield schema
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _copy_rows(conn: Connection, source: str, target: str) -> None:
    """Every mapped table's rows from schema `source` into `target` (same migrations), then
    the target's id sequences moved past the copied ids. Foreign keys are not checked while
    copying (entries and revisions refer to each other; the source satisfied them)."""
    conn.execute(text("SET session_replication_role = replica"))
    for table in Base.metadata.sorted_tables:
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        conn.execute(
            text(
                f'INSERT INTO "{target}"."{table.name}" ({cols}) '
                f'SELECT {cols} FROM "{source}"."{table.name}"'
            )
        )
    for table in Base.metadata.sorted_tables:
        for col in table.primary_key.columns:
            seq = conn.scalar(
                text("SELECT pg_get_serial_sequence(:t, :c)"),
                {"t": f'"{target}"."{table.name}"', "c": col.name},
            )
            if seq:
                conn.execute(
                    text(
                        f'SELECT setval(:seq, COALESCE((SELECT MAX("{col.name}") '
                        f'FROM "{target}"."{table.name}"), 0) + 1, false)'
                    ),
                    {"seq": seq},
                )
    conn.execute(text("RESET session_replication_role"))


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for this test only: empty, or already holding the seed content
    when the test asks for `seeded` (a copy of a snapshot seeded once per session)."""
    wants_seed = "seeded" in request.fixturenames
    if not PG_URL:
        template = request.getfixturevalue(
            "_sqlite_seeded_template" if wants_seed else "_sqlite_template"
        )
        path = tmp_path / "faqloop.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    # One schema per test on the shared server: isolated, and dropped afterwards.
    seed_schema = request.getfixturevalue("_pg_seeded_schema") if wants_seed else None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url_str = _pg_schema_url(schema)
    migrate(url_str)
    if seed_schema:
        with admin.connect() as conn:
            _copy_rows(conn, seed_schema, schema)
    try:
        yield url_str
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def session_factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return Settings().models_dir


@pytest.fixture(scope="session")
def embedder(models_dir: Path) -> CachedEmbedder:
    """The test model on the backend `faqloop serve` uses (FAQLOOP_EMBED_BACKEND, default
    onnx-int8), loaded once; its passage cache makes each test's index build cheap."""
    backend = Settings(_env_file=None).embed_backend  # type: ignore[call-arg]
    return load_embedder(TEST_MODEL, models_dir, backend=backend)


@pytest.fixture(scope="session")
def torch_embedder(models_dir: Path) -> CachedEmbedder:
    """The test model on torch (sentence-transformers): the reference of the ONNX backends
    and of the TorchScript trace; loaded once, by the tests that ask for it."""
    return load_embedder(TEST_MODEL, models_dir, backend="torch")


@pytest.fixture
def settings(tmp_path: Path, db_url: str, models_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        embedding_model=TEST_MODEL,
        models_dir=models_dir,
        content_dir=CONTENT_DIR,
        sync_interval=3600,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def seeded(session_factory: sessionmaker[Session], seed_articles: list) -> None:  # type: ignore[type-arg]
    """The database holds the seed content (`db_url` starts from a seeded snapshot; loaded
    here only when the database is still empty, e.g. after a dynamic fixture request)."""
    with session_scope(session_factory) as s:
        if s.scalar(select(func.count()).select_from(FaqEntry)):
            return
        load_articles(s, seed_articles, author="faq_content")


@pytest.fixture
def client(settings: Settings, embedder: CachedEmbedder, seeded: None) -> Iterator[TestClient]:
    """The real app over the seeded database."""
    with TestClient(create_app(settings, embedder=embedder)) as c:
        yield c


def _key(session_factory: sessionmaker[Session], role: str) -> str:
    with session_scope(session_factory) as s:
        _, secret = create_key(s, role=role, name=f"test {role}")
    return secret


@pytest.fixture
def agent_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key(session_factory, 'agent')}"}


@pytest.fixture
def editor_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    return {"Authorization": f"Bearer {_key(session_factory, 'editor')}"}


@pytest.fixture
def editor_account(session_factory: sessionmaker[Session]) -> Account:
    """An active editor account (email and password in tests/support/accounts.py)."""
    return make_account(session_factory)


@pytest.fixture
def editor_client(client: TestClient, editor_account: Account) -> TestClient:
    """The app's client signed in to /review as `editor_account` (a session cookie)."""
    return signed_in(client, editor_account)
