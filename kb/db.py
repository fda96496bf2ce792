"""Engine, sessions and migrations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, TableClause, create_engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# Connections kept open per process. Requests run in a thread pool of 40; with the default
# of 5, every request beyond the fifth opened and closed its own connection (an SQLite
# file plus its pragmas, or a PostgreSQL backend), which under 32 concurrent clients was a
# visible share of the time. Connections are opened on demand, so an idle process holds few.
POOL_SIZE = 20


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout.

    Statement parameters (post texts, answers) never appear in SQLAlchemy's exception
    messages, so a logged traceback carries no customer text (`hide_parameters`).
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": 30}
        if ":memory:" not in url and url.rstrip("/") != "sqlite:" and "poolclass" not in kwargs:
            kwargs.setdefault("pool_size", POOL_SIZE)
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers go on while one writer commits; FKs are off by default.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", POOL_SIZE)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory used by the API and the CLI."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def lock_rows(session: Session, table: TableClause, ids: Iterable[int]) -> None:
    """Lock the rows of `table` with these ids until the session's transaction ends.

    Rows are locked in id order, so two transactions locking overlapping rows never
    deadlock; a transaction that comes second waits for the first to end, and what it reads
    afterwards (with `populate_existing`) is what the first committed. PostgreSQL locks the
    rows (`SELECT ... FOR UPDATE`); SQLite has one write lock per database, taken here by a
    write that changes nothing, so it must be the transaction's first write (the driver
    starts a transaction at the first write, so reads before it see no stale snapshot).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return
    key = table.c.id
    if session.get_bind().dialect.name == "sqlite":
        # Every column with an update default is set to itself: the write changes nothing.
        same = {c: c for c in table.c if getattr(c, "onupdate", None) is not None or c is key}
        session.execute(update(table).where(key.in_(wanted)).values(same))
    else:
        session.execute(select(key).where(key.in_(wanted)).order_by(key).with_for_update())


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "heads") -> None:
    """Upgrade the database schema to `revision` (default: every branch head).

    "heads" rather than "head": features may add migrations on separate branches from the
    same parent; upgrading to all heads applies each of them.
    """
    command.upgrade(alembic_config(url), revision)
