"""Crash safety: real `faqloop` processes killed with SIGKILL in the middle of a large
`import-threads`, a `reindex` and a burst of votes against `faqloop serve`.

After each crash: the service starts and /healthz is ready, no thread or revision is half
written, the index on disk is one complete generation (the old or the new one), its counts
agree with the database, acknowledged votes are all there, and re-running the import
completes without duplicates. These tests run real processes and take a few minutes.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from indexer.embedding.encoders import CachedEmbedder
from indexer.lexical.tokenizer import default_tokenizer
from indexer.store import IndexStore
from kb.db import session_scope
from kb.faqs.content import read_content_dir
from kb.faqs.entries import create_entry
from kb.indexing import IndexRecipe
from kb.models import (
    EntryChange,
    EntryStatus,
    FaqDraft,
    FaqEntry,
    FaqRevision,
    PageView,
    QuestionPhrasing,
    Thread,
    ThreadPost,
    VisitorSeen,
    Vote,
)
from kb.site.visitors import visitor_hash
from tests.support.paths import CONTENT_DIR
from tests.support.serve import kill, serve_env, serving, start
from tests.support.serve import run as run_cli

pytestmark = pytest.mark.slow

VISITOR_SECRET = "crash-test-visitor-secret-0123456789"
# Visitors are browsers (HTTP libraries count as robots, whose views are not counted).
BROWSER = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1"}


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def env(tmp_path: Path, db_url: str, models_dir: Path) -> dict[str, str]:
    return serve_env(
        tmp_path / "data",
        db_url,
        models_dir,
        FAQLOOP_VISITOR_SECRET=VISITOR_SECRET,
        FAQLOOP_VOTE_RATE_LIMIT="1000",
        FAQLOOP_VOTE_RATE_LIMIT_IP="1000000",
        FAQLOOP_VIEW_COUNT_LIMIT_IP="0",  # every client is 127.0.0.1
        FAQLOOP_SEARCH_RATE_LIMIT="0",
        FAQLOOP_SYNC_INTERVAL="1",
    )


def _sqlite_ok(db_url: str) -> None:
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return
    con = sqlite3.connect(url.database or "")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _published(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(FaqEntry)
                .where(FaqEntry.status == EntryStatus.published)
            )
            or 0
        )


def _no_half_written_entries(factory: sessionmaker[Session]) -> None:
    """Every entry has its current revision, and that revision is its own."""
    with factory() as s:
        rows = s.execute(
            select(FaqEntry.id, FaqEntry.current_revision_id, FaqRevision.entry_id).outerjoin(
                FaqRevision, FaqRevision.id == FaqEntry.current_revision_id
            )
        ).all()
        assert rows and all(rev is not None and owner == eid for eid, rev, owner in rows)
        changed = set(s.scalars(select(EntryChange.entry_id)))
        assert {eid for eid, _, _ in rows} <= changed  # every write reached the change feed


def _index_is_one_complete_generation(data_dir: Path, embedder: CachedEmbedder) -> tuple[int, int]:
    """Load the saved index exactly as a server would (checksums, counts, model)."""
    store = IndexStore(data_dir / "index")
    tokenizer = default_tokenizer()
    index, manifest = store.load(embedder, tokenizer, recipe=IndexRecipe().key(tokenizer.name))
    assert index.entry_count == manifest.entries
    return manifest.generation, manifest.entries


def _ready_and_consistent(base: str, factory: sessionmaker[Session]) -> dict[str, object]:
    health = httpx.get(f"{base}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    info = health.json()["index"]
    with factory() as s:
        last_change = int(s.scalar(select(func.max(EntryChange.id))) or 0)
    # The server catches up with the change feed within its sync interval.
    deadline = time.monotonic() + 60
    while info["last_change_id"] < last_change and time.monotonic() < deadline:
        time.sleep(0.5)
        info = httpx.get(f"{base}/healthz", timeout=30).json()["index"]
    assert info["entries"] == _published(factory)
    assert info["last_change_id"] == last_change
    return info


# ------------------------------------------------------------------------ import-threads


def _thread_file(path: Path, n: int) -> dict[str, int]:
    """n resolved threads (2-4 posts each, ja and en, covered and new topics)."""
    rng = random.Random(7)
    questions = []
    for art in read_content_dir(CONTENT_DIR):
        questions.append(art.question)
        questions.extend(art.questions)
    gaps = [
        "宇宙ステーションでも使えるプランはありますか",
        "Can I pay my bill with cryptocurrency?",
        "ペットの見守りカメラ用のSIMはありますか",
        "Do you offer a plan for smartwatches only?",
    ]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    posts_per_thread = {}
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            question = rng.choice(questions) if i % 3 else f"{rng.choice(gaps)} ({i})"
            ja = any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in question)
            posts = [
                {
                    "role": "customer",
                    "author": f"@customer_{i}",
                    "text": f"@SoramiMobile {question}",
                },
                {
                    "role": "agent",
                    "author": "@SoramiSupport",
                    "text": "ご連絡ありがとうございます。手順をご案内します。"
                    if ja
                    else "Thanks! Here is how.",
                },
            ]
            for extra in range(rng.randrange(0, 3)):
                posts.append(
                    {"role": "customer", "author": f"@customer_{i}", "text": f"ありがとう {extra}"}
                )
            external_id = f"crash-{i:05d}"
            posts_per_thread[external_id] = len(posts)
            line = {
                "channel": "x",
                "external_id": external_id,
                "resolved_at": (start + timedelta(minutes=i)).isoformat(),
                "posts": posts,
            }
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return posts_per_thread


def _threads_whole(factory: sessionmaker[Session], expected_posts: dict[str, int]) -> int:
    """Every stored thread has all its posts; every draft has threads; returns the count."""
    with factory() as s:
        stored = s.execute(
            select(Thread.external_id, func.count(ThreadPost.id))
            .outerjoin(ThreadPost, ThreadPost.thread_id == Thread.id)
            .group_by(Thread.id, Thread.external_id)
        ).all()
        for external_id, posts in stored:
            assert posts == expected_posts[external_id], external_id
        drafts = set(s.scalars(select(FaqDraft.id)))
        members = set(s.scalars(select(Thread.draft_id).where(Thread.draft_id.is_not(None))))
        assert drafts <= members  # no draft without the threads it was made from
        keys = s.execute(select(Thread.channel, Thread.external_id)).all()
        assert len(keys) == len(set(keys))
        orphans = s.scalar(
            select(func.count())
            .select_from(QuestionPhrasing)
            .where(QuestionPhrasing.thread_id.is_not(None))
            .where(~QuestionPhrasing.thread_id.in_(select(Thread.id)))
        )
        assert orphans == 0
    return len(stored)


def test_import_killed_midway_keeps_whole_threads_and_reruns_without_duplicates(
    env: dict[str, str],
    seeded: None,
    session_factory: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    embedder: CachedEmbedder,
) -> None:
    assert run_cli(env, "reindex").returncode == 0  # the import then loads it instead of building
    threads_file = tmp_path / "threads.jsonl"
    n = 120
    expected = _thread_file(threads_file, n)
    log = tmp_path / "import.log"
    proc = start(env, "import-threads", str(threads_file), "--batch-size", "20", log=log)
    deadline = time.monotonic() + 600
    while _count(session_factory, Thread) == 0:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kill(proc)  # SIGKILL right after the first batch committed
    killed_at = _threads_whole(session_factory, expected)
    assert 0 < killed_at < n, f"the import was not interrupted ({killed_at} of {n})"
    _no_half_written_entries(session_factory)
    _sqlite_ok(db_url)
    generation, _ = _index_is_one_complete_generation(tmp_path / "data", embedder)

    r = run_cli(env, "import-threads", str(threads_file), "--batch-size", "20")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{n} threads imported ({n - killed_at} new" in r.stdout
    assert _threads_whole(session_factory, expected) == n
    assert _count(session_factory, ThreadPost) == sum(expected.values())
    r = run_cli(env, "import-threads", str(threads_file), "--batch-size", "20")
    assert (
        r.returncode == 0 and f"{n} threads imported (0 new, 0 updated, {n} unchanged" in r.stdout
    )
    _no_half_written_entries(session_factory)
    _sqlite_ok(db_url)
    assert _index_is_one_complete_generation(tmp_path / "data", embedder)[0] >= generation
    with serving(env, tmp_path / "serve.log") as (base, _):
        _ready_and_consistent(base, session_factory)
    print(f"\nimport killed after {killed_at} of {n} threads; the re-run completed all {n}")


# -------------------------------------------------------------------------------- reindex


def test_reindex_killed_midway_leaves_one_complete_generation(
    env: dict[str, str],
    seeded: None,
    session_factory: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    embedder: CachedEmbedder,
) -> None:
    data_dir = tmp_path / "data"
    assert run_cli(env, "reindex").returncode == 0
    old_generation, old_entries = _index_is_one_complete_generation(data_dir, embedder)
    with session_scope(session_factory) as s:
        create_entry(
            s,
            question="回線を一時停止できますか？",
            answer="はい、マイソラミから。",
            category="plans",
            language="ja",
            phrasings=["しばらく止めたい"],
        )
    assert _published(session_factory) == old_entries + 1
    index_dir = data_dir / "index"
    outcomes = []
    # 1: killed while writing the new generation (its temporary directory exists);
    # 2: killed at a random moment while it loads the model and embeds.
    for attempt, mode in enumerate(("writing", "random")):
        log = tmp_path / f"reindex-{attempt}.log"
        proc = start(env, "reindex", log=log)
        started = time.monotonic()
        delay = random.Random(attempt).uniform(1.0, 6.0)
        seen_tmp = False
        while proc.poll() is None:
            if mode == "writing":
                if any(p.name.startswith(".gen-") for p in index_dir.iterdir()):
                    seen_tmp = True
                    break
                time.sleep(0.001)
            else:
                if time.monotonic() - started >= delay:
                    break
                time.sleep(0.01)
        finished = proc.poll() is not None
        kill(proc)
        generation, entries = _index_is_one_complete_generation(data_dir, embedder)
        assert (generation, entries) == (old_generation, old_entries) or (
            generation > old_generation and entries == old_entries + 1
        )
        outcomes.append(
            f"{mode}: {'finished first' if finished else 'killed'}"
            f"{' mid-write' if seen_tmp else ''} -> generation {generation}"
        )
    assert "killed mid-write" in outcomes[0], outcomes
    _no_half_written_entries(session_factory)
    _sqlite_ok(db_url)
    with serving(env, tmp_path / "serve.log") as (base, _):
        info = _ready_and_consistent(base, session_factory)
        assert info["entries"] == old_entries + 1
    r = run_cli(env, "reindex", "--if-needed")
    assert r.returncode == 0 and "loaded generation" in r.stdout
    print("\n" + "; ".join(outcomes))


# ---------------------------------------------------------------------------------- votes


def test_server_killed_during_a_vote_burst_keeps_every_acknowledged_vote(
    env: dict[str, str],
    seeded: None,
    session_factory: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
) -> None:
    assert run_cli(env, "reindex").returncode == 0
    slug = "esim-iphone-activate"
    visitors = 400
    acknowledged_votes: dict[str, bool] = {}
    acknowledged_views: set[str] = set()
    attempted = 0
    lock = threading.Lock()
    with serving(env, tmp_path / "serve-1.log") as (base, proc):
        # Each visitor first loads the article (cookie + CSRF token), as browsers do.
        sessions = []
        with httpx.Client(base_url=base, timeout=30, headers=BROWSER) as c:
            for _ in range(visitors):
                c.cookies.clear()
                article = c.get(f"/v1/public/faqs/{slug}").json()
                sessions.append((c.cookies["fql_v"], article["csrf_token"]))
        killed = threading.Event()

        def vote(i: int) -> None:
            nonlocal attempted
            if killed.is_set():
                return
            cookie, token = sessions[i]
            helpful = i % 3 != 0
            with lock:
                attempted += 1
            try:
                with httpx.Client(
                    base_url=base, timeout=30, cookies={"fql_v": cookie}, headers=BROWSER
                ) as c:
                    r = c.post(
                        f"/v1/public/faqs/{slug}/vote",
                        json={"helpful": helpful, "comment": None if helpful else "手順が古い"},
                        headers={"X-CSRF-Token": token},
                    )
                    if r.status_code == 200:
                        with lock:
                            acknowledged_votes[cookie] = helpful
                    v = c.post(f"/v1/public/faqs/{slug}/views", json={"src": "reply"})
                    if v.status_code == 200 and v.json()["counted"]:
                        with lock:
                            acknowledged_views.add(cookie)
            except httpx.HTTPError:
                pass  # the server died under this request: it was never acknowledged

        done = threading.Event()

        def killer() -> None:
            while len(acknowledged_votes) < visitors // 3 and not done.is_set():
                time.sleep(0.005)
            killed.set()
            proc.send_signal(signal.SIGKILL)

        k = threading.Thread(target=killer)
        k.start()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(vote, range(visitors)))
        done.set()
        k.join(120)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
    assert 0 < len(acknowledged_votes) < visitors

    _sqlite_ok(db_url)
    _no_half_written_entries(session_factory)
    with session_factory() as s:
        stored = {h: helpful for h, helpful in s.execute(select(Vote.visitor_hash, Vote.helpful))}
        seen = set(s.scalars(select(VisitorSeen.visitor_hash)))
        views = int(s.scalar(select(func.sum(PageView.count))) or 0)
    for cookie, helpful in acknowledged_votes.items():
        assert stored.get(visitor_hash(VISITOR_SECRET, cookie)) is helpful
    assert len(acknowledged_votes) <= len(stored) <= attempted
    # A counted view writes the visitor mark and the counter together: they agree.
    assert views == len(seen) and len(acknowledged_views) <= views <= attempted
    for cookie in acknowledged_views:
        assert visitor_hash(VISITOR_SECRET, cookie) in seen

    with serving(env, tmp_path / "serve-2.log") as (base, _):
        _ready_and_consistent(base, session_factory)
        with httpx.Client(base_url=base, timeout=30, headers=BROWSER) as c:
            article = c.get(f"/v1/public/faqs/{slug}").json()
            r = c.post(
                f"/v1/public/faqs/{slug}/vote",
                json={"helpful": True},
                headers={"X-CSRF-Token": article["csrf_token"]},
            )
            assert r.status_code == 200  # the restarted server takes votes again
    assert _count(session_factory, Vote) == len(stored) + 1
    print(
        f"\nvotes: {attempted} sent, {len(acknowledged_votes)} acknowledged before SIGKILL, "
        f"{len(stored)} stored; views: {len(acknowledged_views)} acknowledged, {views} stored"
    )
