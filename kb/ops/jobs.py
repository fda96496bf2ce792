"""Periodic jobs that run once per cluster: a lock per job and a record of its last run.

Every `faqloop serve` replica has the same timers (content health, pruning). A job takes
its lock before it runs:

- **PostgreSQL**: a session-level advisory lock (`pg_try_advisory_lock`) on a connection
  of its own, held for the whole run and released after it. The key is derived from the
  database, the schema and the job's name, so deployments (or test schemas) sharing a
  server never block each other. When the holder dies its connection closes and the
  server releases the lock.
- **SQLite**: an exclusive `flock` on a lock file beside the database file
  (`<file>.job-<name>.lock`); the kernel releases it when the holder's file is closed or
  its process dies. An in-memory database is private to one process: a process-wide lock.

The lock alone only keeps runs apart. Under it, the job's row in `job_run` (when it last
started, who ran it) tells a replica whether another ran it less than an interval ago, in
which case it skips: with N replicas the job runs about once per interval in all, not N
times. A run is recorded when it ends (successful or not): a replica that dies mid-run
leaves no record, and the next replica to wake runs the job.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Generic, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from kb.db import session_scope
from kb.models import JobRun, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a caller that waits for a busy lock tries again.
POLL_SECONDS = 0.1
# A replica's timer fires a little early or late; a run counts as due this much before a full
# interval has passed (a tenth of the interval, at most this many seconds), so the replica
# that ran last runs again on its next tick rather than leaving the job to slip a whole tick.
MAX_SLACK_SECONDS = 5.0
JOB_NAME = re.compile(r"\A[a-z0-9][a-z0-9_.-]{0,99}\Z")

# In-memory SQLite: one database per process, so a process-wide lock per job is enough.
_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def advisory_key(database: str, schema: str, name: str) -> int:
    """The PostgreSQL advisory lock key (a signed 64-bit integer) of a job."""
    digest = hashlib.sha256(f"faqloop-job\0{database}\0{schema}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def slack(interval: float) -> float:
    """How early (seconds) a run counts as due: interval / 10, at most MAX_SLACK_SECONDS."""
    return min(interval / 10, MAX_SLACK_SECONDS)


def is_due(last_started: datetime | None, now: datetime, interval: float) -> bool:
    """Whether a job last started at `last_started` is due again at `now`."""
    if last_started is None or interval <= 0:
        return True
    return now - last_started >= timedelta(seconds=interval - slack(interval))


@dataclass(frozen=True)
class JobResult(Generic[T]):
    """What became of one attempt to run a job."""

    ran: bool
    # "ran", "busy" (another holds the lock) or "recent" (another ran it within the interval)
    reason: str
    value: T | None = None
    last_started: datetime | None = None  # the previous run's start, when skipped as recent


class ClusterJobs:
    """Runs named jobs under a cluster-wide lock, at most once per interval across replicas.

    One per process (or per app instance); thread-safe. Two instances over the same
    database exclude each other exactly as two processes do.
    """

    def __init__(
        self,
        engine: Engine,
        session_factory: sessionmaker[Session],
        *,
        runner: str | None = None,
    ) -> None:
        self.engine = engine
        self.session_factory = session_factory
        self.runner = runner or f"{socket.gethostname()}:{os.getpid()}"
        self._pg_scope: tuple[str, str] | None = None

    # -- the lock -----------------------------------------------------------------------

    @contextmanager
    def lock(self, name: str, *, wait: float = 0.0) -> Iterator[bool]:
        """Hold job `name`'s cluster-wide lock for the block; yields False when another
        holder kept it for longer than `wait` seconds (0: do not wait)."""
        if not JOB_NAME.match(name):
            raise ValueError(f"invalid job name {name!r}")
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            with self._pg_lock(name, wait) as held:
                yield held
        elif dialect == "sqlite":
            with self._sqlite_lock(name, wait) as held:
                yield held
        else:  # pragma: no cover - only SQLite and PostgreSQL are supported
            raise NotImplementedError(f"no job lock for {dialect}")

    @contextmanager
    def _pg_lock(self, name: str, wait: float) -> Iterator[bool]:
        conn = self.engine.connect()
        try:
            key = self._pg_key(conn, name)
            deadline = time.monotonic() + wait
            while True:
                held = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                )
                # The lock belongs to the session, not the transaction: end the transaction
                # so the connection does not sit "idle in transaction" while the job runs.
                conn.commit()
                if held or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_SECONDS)
        except BaseException:
            conn.close()
            raise
        try:
            yield held
        finally:
            if held:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
                except Exception:
                    # Never give a connection that may still hold the lock back to the pool:
                    # closing it for good makes the server release the lock.
                    log.warning(
                        "could not release the lock of job %s; dropping the connection",
                        name,
                        exc_info=True,
                    )
                    conn.invalidate()
            conn.close()

    def _pg_key(self, conn: Connection, name: str) -> int:
        if self._pg_scope is None:
            row = conn.execute(text("SELECT current_database(), current_schema()")).one()
            conn.commit()
            self._pg_scope = (str(row[0]), str(row[1] or ""))
        return advisory_key(*self._pg_scope, name)

    def lock_path(self, name: str) -> Path | None:
        """The lock file of job `name` on SQLite (None for an in-memory database)."""
        database = self.engine.url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return None
        db_file = Path(database).resolve()
        return db_file.with_name(f"{db_file.name}.job-{name}.lock")

    @contextmanager
    def _sqlite_lock(self, name: str, wait: float) -> Iterator[bool]:
        path = self.lock_path(name)
        if path is None:
            with _process_locks_guard:
                plock = _process_locks.setdefault(name, threading.Lock())
            held = plock.acquire(timeout=wait) if wait > 0 else plock.acquire(blocking=False)
            try:
                yield held
            finally:
                if held:
                    plock.release()
            return
        # Each attempt opens the file anew: flock belongs to the open file, so two holders
        # in one process (two app instances, or the loop and an editor's request) exclude
        # each other as two processes do. The file is never deleted (that would race).
        handle: IO[bytes] = path.open("ab")
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = True
                except BlockingIOError:
                    held = False
                if held or time.monotonic() >= deadline:
                    break
                time.sleep(POLL_SECONDS)
            yield held
        finally:
            handle.close()  # releases the lock

    # -- runs ---------------------------------------------------------------------------

    def last_run(self, name: str) -> JobRun | None:
        """The recorded last run of job `name`, if any."""
        with self.session_factory() as session:
            row = session.get(JobRun, name)
            if row is not None:
                session.expunge(row)
            return row

    def run(
        self,
        name: str,
        job: Callable[[], T],
        *,
        interval: float = 0.0,
        wait: float = 0.0,
    ) -> JobResult[T]:
        """Run `job` under `name`'s lock, unless another holds it (waiting up to `wait` s)
        or, with an `interval`, another replica started it less than an interval ago.

        `interval` 0 runs whenever the lock is free (an editor's "recompute now"). The run
        is recorded when it ends, whether `job` returns or raises (the exception goes on).
        """
        with self.lock(name, wait=wait) as held:
            if not held:
                return JobResult(ran=False, reason="busy")
            last = self.last_run(name)
            last_started = last.started_at if last is not None else None
            if interval > 0 and not is_due(last_started, utcnow(), interval):
                return JobResult(ran=False, reason="recent", last_started=last_started)
            started = utcnow()
            ok = False
            try:
                value = job()
                ok = True
            finally:
                self._record(name, started, ok)
            return JobResult(ran=True, reason="ran", value=value, last_started=last_started)

    def _record(self, name: str, started: datetime, ok: bool) -> None:
        # Only the lock's holder writes a job's row, so read-then-write cannot race.
        try:
            with session_scope(self.session_factory) as session:
                row = session.get(JobRun, name)
                if row is None:
                    row = JobRun(name=name, runs=0)
                    session.add(row)
                row.started_at = started
                row.finished_at = utcnow()
                row.ok = ok
                row.runner = self.runner[:200]
                row.runs = (row.runs or 0) + 1
        except Exception:
            # The job's own outcome matters more than its bookkeeping; at worst another
            # replica runs it again before the interval is up.
            log.warning("could not record the run of job %s", name, exc_info=True)
