"""Periodic jobs run once per cluster (issue 18, point 7), on SQLite and PostgreSQL.

- The lock of a job (kb/ops/jobs.py) excludes a second holder, in the same process (two
  app instances) and in another process; when the holder's process dies, the lock is free
  (PostgreSQL drops the advisory lock with the connection, the kernel the file lock).
- Two app instances ("replicas") on one database, with a short interval: the prune job and
  the content-health recompute run one at a time, and at most once per interval across
  both (the runs' own start and end times are recorded); each replica skips ticks the
  other covered.
- An editor's "recompute now" works on either replica, waits while another replica holds
  the health job, and then runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.db import make_engine, make_session_factory
from kb.models import JobRun
from kb.ops.jobs import ClusterJobs, advisory_key, is_due, slack
from tests.support.paths import ROOT

# How long the test waits for something that must happen (a deadline, not a measurement).
GIVE_UP_AFTER = 120.0
# Clock noise between the wall clock the runs are recorded with and time.monotonic.
CLOCK_NOISE = 0.05


@dataclass(frozen=True)
class Run:
    job: str
    replica: str
    start: float
    end: float


@contextmanager
def _jobs(db_url: str) -> Iterator[ClusterJobs]:
    """A job runner with an engine (connections) of its own, like another replica's."""
    engine = make_engine(db_url)
    try:
        yield ClusterJobs(engine, make_session_factory(engine))
    finally:
        engine.dispose()


@pytest.fixture
def two_job_runners(db_url: str) -> Iterator[tuple[ClusterJobs, ClusterJobs]]:
    """Two runners with their own engines on one database."""
    with _jobs(db_url) as a, _jobs(db_url) as b:
        yield a, b


def _wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GIVE_UP_AFTER
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


def test_due_rule_and_keys() -> None:
    from datetime import UTC, datetime, timedelta

    t = datetime(2026, 12, 3, tzinfo=UTC)
    assert is_due(None, t, 60)
    assert not is_due(t, t + timedelta(seconds=30), 60)
    assert is_due(t, t + timedelta(seconds=60 - slack(60)), 60)
    assert not is_due(t, t + timedelta(seconds=60 - slack(60) - 0.01), 60)
    assert slack(3600) == 5.0 and slack(1.0) == pytest.approx(0.1)
    # One key per (database, schema, job): test schemas and deployments sharing a server
    # never block each other, and the key fits PostgreSQL's bigint.
    keys = {advisory_key(d, s, n) for d in ("a", "b") for s in ("x", "y") for n in ("h", "p")}
    assert len(keys) == 8 and all(-(2**63) <= k < 2**63 for k in keys)


def test_a_held_job_lock_excludes_a_second_runner(
    two_job_runners: tuple[ClusterJobs, ClusterJobs],
) -> None:
    a, b = two_job_runners
    ran: list[str] = []
    with a.lock("health") as held_a:
        assert held_a
        with b.lock("health") as held_b:
            assert not held_b
        # Another job's lock is another lock.
        with b.lock("prune") as held_other:
            assert held_other
        # The same runner from another thread (the loop and an editor's request) is excluded too.
        with a.lock("health") as held_again:
            assert not held_again
        result = b.run("health", lambda: ran.append("b"))
        assert not result.ran and result.reason == "busy" and ran == []
    with b.lock("health") as held_b:
        assert held_b
    # A waiting caller gets the lock once the holder lets go.
    release = threading.Event()

    holding: list[bool] = []

    def hold() -> None:
        # (It may have to wait: the main thread's probes take the lock for a moment.)
        with a.lock("health", wait=GIVE_UP_AFTER) as held:
            holding.append(held)
            release.wait(GIVE_UP_AFTER)

    holder = threading.Thread(target=hold)
    holder.start()
    _wait_for("the holder holds", lambda: holding == [True])
    assert not _free(b, "health")
    threading.Timer(0.3, release.set).start()
    result = b.run("health", lambda: ran.append("b"), wait=GIVE_UP_AFTER)
    holder.join()
    assert result.ran and ran == ["b"]


def _free(jobs: ClusterJobs, name: str) -> bool:
    with jobs.lock(name) as held:
        return held


def test_a_job_runs_once_per_interval_across_runners(
    two_job_runners: tuple[ClusterJobs, ClusterJobs], session_factory: sessionmaker[Session]
) -> None:
    a, b = two_job_runners
    count = {"a": 0, "b": 0}
    first = a.run("prune", lambda: count.__setitem__("a", count["a"] + 1), interval=3600)
    assert first.ran and first.last_started is None
    second = b.run("prune", lambda: count.__setitem__("b", count["b"] + 1), interval=3600)
    assert not second.ran and second.reason == "recent" and count == {"a": 1, "b": 0}
    # Without an interval ("recompute now") it runs although it just ran.
    third = b.run("prune", lambda: count.__setitem__("b", count["b"] + 1))
    assert third.ran and count == {"a": 1, "b": 1}
    with session_factory() as s:
        row = s.scalars(select(JobRun).where(JobRun.name == "prune")).one()
        assert row.runs == 2 and row.ok and row.runner == b.runner
        assert row.finished_at >= row.started_at
    # A failed run is recorded as one (it is retried at the next interval, not at once),
    # and its exception reaches the caller.
    with pytest.raises(RuntimeError, match="boom"):
        a.run("health", _boom, interval=0.0)
    last = a.last_run("health")
    assert last is not None and not last.ok and last.runs == 1
    assert not b.run("health", lambda: None, interval=3600).ran


def _boom() -> None:
    raise RuntimeError("boom")


# -- a holder that dies -----------------------------------------------------------------

HOLDER = """
import sys, time
from kb.db import make_engine, make_session_factory
from kb.ops.jobs import ClusterJobs

engine = make_engine(sys.argv[1])
jobs = ClusterJobs(engine, make_session_factory(engine), runner="doomed")

def stuck():
    print("running", flush=True)
    time.sleep(3600)

jobs.run("prune", stuck, interval=float(sys.argv[2]))
"""


def test_when_the_holder_dies_another_replica_takes_over(
    db_url: str, two_job_runners: tuple[ClusterJobs, ClusterJobs]
) -> None:
    a, _ = two_job_runners
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url, "3600"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"running"
        # The other process is in the middle of the job: this replica leaves it alone.
        busy = a.run("prune", lambda: "mine", interval=3600)
        assert not busy.ran and busy.reason == "busy"
        proc.send_signal(signal.SIGKILL)  # no clean-up, no unlock: the process is gone
        proc.wait(GIVE_UP_AFTER)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Its lock went with it, and the dead run left no record, so the job is due here at
    # once (PostgreSQL may take a moment to notice the closed connection: wait for it).
    result = a.run("prune", lambda: "mine", interval=3600, wait=GIVE_UP_AFTER)
    assert result.ran and result.value == "mine" and result.last_started is None
    last = a.last_run("prune")
    assert last is not None and last.runner == a.runner and last.runs == 1


# -- two app instances as replicas ------------------------------------------------------


def _record_runs(jobs: ClusterJobs, replica: str, runs: list[Run]) -> None:
    """Make `jobs` record when each job it runs actually starts and ends."""
    original = jobs.run
    guard = threading.Lock()

    def run(name: str, job: Callable[[], Any], **kwargs: Any) -> Any:
        def recorded() -> Any:
            start = time.monotonic()
            try:
                return job()
            finally:
                with guard:
                    runs.append(Run(name, replica, start, time.monotonic()))

        return original(name, recorded, **kwargs)

    jobs.run = run  # type: ignore[method-assign]


def _replica_settings(settings: Settings, name: str, **changes: Any) -> Settings:
    return settings.model_copy(
        update={"data_dir": settings.data_dir.parent / f"data-{name}", **changes}
    )


def _assert_once_per_interval(runs: list[Run], job: str, interval: float) -> None:
    mine = sorted((r for r in runs if r.job == job), key=lambda r: r.start)
    for before, after in pairwise(mine):
        # Never two at once, on the same replica or across them ...
        assert after.start >= before.end, (before, after)
        # ... and never again before (nearly) an interval has passed since the last start.
        assert after.start - before.start >= interval - slack(interval) - CLOCK_NOISE, (
            before,
            after,
        )


def test_two_replicas_prune_once_per_interval_in_all(
    settings: Settings, embedder: CachedEmbedder
) -> None:
    interval = 0.5
    runs: list[Run] = []
    apps = {
        name: create_app(
            _replica_settings(settings, name, prune_interval=interval, health_interval=0),
            embedder=embedder,
        )
        for name in ("a", "b")
    }
    with TestClient(apps["a"]), TestClient(apps["b"]):
        loops = {}
        for name, app in apps.items():
            loop = app.state.prune_loop
            _record_runs(loop.jobs, name, runs)
            # Each run takes a while, so the replicas' ticks fall inside each other's runs.
            job = loop.job
            loop.job = lambda job=job: (time.sleep(0.15), job())[1]
            loops[name] = loop
        _wait_for(
            "8 prunes and ticks skipped on both replicas",
            lambda: len(runs) >= 8 and all(loop.skipped for loop in loops.values()),
        )
    _assert_once_per_interval(runs, "prune", interval)
    assert all(loop.failed == 0 for loop in loops.values())
    # Each replica ticked every interval, yet together they ran about once per interval.
    ticks = sum(loop.ran + loop.skipped for loop in loops.values())
    assert sum(loop.ran for loop in loops.values()) < ticks


def test_two_replicas_recompute_health_once_per_interval_and_on_demand(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    editor_headers: dict[str, str],
    db_url: str,
) -> None:
    interval = 1.0
    runs: list[Run] = []
    apps = {
        name: create_app(
            _replica_settings(settings, name, health_interval=interval, prune_interval=0),
            embedder=embedder,
        )
        for name in ("a", "b")
    }
    with TestClient(apps["a"]) as client_a, TestClient(apps["b"]) as client_b:
        for name, app in apps.items():
            _record_runs(app.state.services.jobs, name, runs)
        loops = {name: app.state.health_loop for name, app in apps.items()}
        _wait_for(
            "4 scheduled recomputes",
            lambda: len(runs) >= 4 and sum(loop.skipped for loop in loops.values()) > 0,
        )
        for loop in loops.values():
            loop.stop()
        _assert_once_per_interval(runs, "health", interval)
        assert all(loop.failed == 0 for loop in loops.values())
        scheduled = len(runs)

        # "Recompute now" on replica b while another process holds the health job: it waits
        # (it neither fails nor runs beside it), then runs as soon as the lock is free.
        kit_b = apps["b"].state.health_loop.kit
        done_before = kit_b.completed
        with _jobs(db_url) as other, other.lock("health") as held:
            assert held
            started = client_b.post("/v1/health/recompute", headers=editor_headers)
            assert started.status_code == 202 and started.json()["started"]
            time.sleep(0.5)
            assert kit_b.completed == done_before and len(runs) == scheduled
            assert client_b.get("/v1/health/recompute", headers=editor_headers).json()["running"]
        _wait_for("the recompute asked for", lambda: kit_b.completed == done_before + 1)
        status = client_b.get("/v1/health/recompute", headers=editor_headers).json()
        assert status["last_error"] is None and status["last"] is not None
        # And on replica a, right after: "now" ignores the interval.
        kit_a = apps["a"].state.health_loop.kit
        done_a = kit_a.completed
        assert client_a.post("/v1/health/recompute", headers=editor_headers).status_code == 202
        _wait_for("a's recompute", lambda: kit_a.completed == done_a + 1)
        assert kit_a.last_error is None
    on_demand = sorted(runs[scheduled:], key=lambda r: r.start)
    assert [r.replica for r in on_demand] == ["b", "a"]
    assert on_demand[1].start >= on_demand[0].end


def test_lock_files_sit_beside_the_sqlite_database(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    with _jobs(db_url) as jobs:
        path = jobs.lock_path("health")
        assert path is not None and path.parent == Path(jobs.engine.url.database or "").parent
        with jobs.lock("health") as held:
            assert held and path.exists()
    memory = make_engine("sqlite://")
    try:
        jobs = ClusterJobs(memory, make_session_factory(memory))
        assert jobs.lock_path("health") is None
        with jobs.lock("health") as held, jobs.lock("health") as again:
            assert held and not again
    finally:
        memory.dispose()
