"""Concurrent writers never see a 500 nor lose a write, on SQLite and PostgreSQL.

Threads go through the real app (one TestClient, requests run in the server's thread
pool); processes run the domain functions with their own engines, as replicas do.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kb.db import make_engine, make_session_factory, session_scope
from kb.errors import Conflict, PreconditionFailed
from kb.faqs import entries as faqs
from kb.faqs.merge import merge_entries
from kb.models import EntryStatus, FaqEntry, FaqRevision

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

ROUNDS = 6
WRITERS = 10


def _together(n: int, job: Callable[[int], Any]) -> list[Any]:
    """Run `job(i)` for i in range(n) on n threads released at the same moment."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait()
        return job(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _pairs(session_factory: sessionmaker[Session], n: int, tag: str) -> list[tuple[int, int]]:
    pairs = []
    with session_scope(session_factory) as s:
        for i in range(n):
            a, b = (
                faqs.create_entry(
                    s,
                    question=f"{tag} question {i} {side}",
                    answer=f"Answer {i} {side}.",
                    category="plans",
                    language="en",
                )
                for side in ("left", "right")
            )
            pairs.append((a.id, b.id))
    return pairs


def _check_merged_pair(session_factory: sessionmaker[Session], a: int, b: int) -> int:
    """Exactly one of the pair survives, published, and the other points at it; returns it."""
    with session_factory() as s:
        rows = {e.id: e for e in s.scalars(select(FaqEntry).where(FaqEntry.id.in_([a, b])))}
    merged = [e for e in rows.values() if e.status == EntryStatus.merged]
    alive = [e for e in rows.values() if e.status == EntryStatus.published]
    assert len(merged) == 1 and len(alive) == 1, {e.id: e.status for e in rows.values()}
    assert merged[0].merged_into_id == alive[0].id and alive[0].merged_into_id is None
    return alive[0].id


def test_opposite_merges_over_http_one_wins_the_other_409(
    client: TestClient, editor_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    for a, b in _pairs(session_factory, ROUNDS, "http"):
        jobs = [(a, b), (b, a)]

        def merge(i: int, jobs: list[tuple[int, int]] = jobs) -> Any:
            source, target = jobs[i]
            return client.post(
                f"/v1/faqs/{source}/merge", json={"into": target}, headers=editor_headers
            )

        answers = _together(2, merge)
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        loser = next(r for r in answers if r.status_code == 409)
        assert loser.json()["error"] == "conflict" and "merged" in loser.json()["detail"]
        winner = _check_merged_pair(session_factory, a, b)
        # The winner stays searchable; only the merged article leaves the index.
        indexed = client.app.state.services.index.index_or_raise().entry_ids()  # type: ignore[attr-defined]
        assert winner in indexed and ({a, b} - {winner}).isdisjoint(indexed)
        with session_factory() as s:
            slugs = {i: s.get_one(FaqEntry, i).slug for i in (a, b)}
        for i in (a, b):
            r = client.get(f"/v1/public/faqs/{slugs[i]}", follow_redirects=False)
            if i == winner:
                assert r.status_code == 200
            else:
                assert r.status_code == 301
                assert r.headers["location"] == f"/v1/public/faqs/{slugs[winner]}"


def _merge_in_process(url: str, pairs: list[tuple[int, int]], side: int, barrier: Any) -> None:
    """Worker: merge each pair (left→right for side 0, right→left for side 1)."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    outcomes = []
    for a, b in pairs:
        source, target = (a, b) if side == 0 else (b, a)
        barrier.wait()
        try:
            with session_scope(factory) as s:
                merge_entries(s, source, target, by=f"process {side}")
            outcomes.append("won")
        except Conflict:
            outcomes.append("conflict")
    engine.dispose()
    counts = Counter(outcomes)
    # The exit code carries the count of merges this process won.
    raise SystemExit(counts["won"] if len(outcomes) == counts["won"] + counts["conflict"] else 99)


def test_opposite_merges_from_two_processes_one_wins_each_time(
    db_url: str, session_factory: sessionmaker[Session]
) -> None:
    pairs = _pairs(session_factory, ROUNDS, "process")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_merge_in_process, args=(db_url, pairs, side, barrier))
        for side in (0, 1)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    codes = [p.exitcode for p in procs]
    assert all(c is not None and c != 99 for c in codes), codes
    assert sum(c or 0 for c in codes) == ROUNDS  # every round: exactly one winner
    for a, b in pairs:
        _check_merged_pair(session_factory, a, b)


def _new_entry(session_factory: sessionmaker[Session], title: str) -> int:
    with session_scope(session_factory) as s:
        entry = faqs.create_entry(
            s, question=title, answer="First answer.", category="plans", language="en"
        )
        return entry.id


def _history(session_factory: sessionmaker[Session], entry_id: int) -> dict[int, str]:
    with session_factory() as s:
        rows = s.scalars(select(FaqRevision).where(FaqRevision.entry_id == entry_id))
        return {r.number: r.answer for r in rows}


def test_concurrent_puts_queue_up_and_if_match_lets_one_win(
    client: TestClient, editor_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    faq_id = _new_entry(session_factory, "Pausing a subscription for a month")
    r = client.get(f"/v1/faqs/{faq_id}", headers=editor_headers)
    assert r.headers["etag"] == '"1"'

    def put(i: int, headers: dict[str, str]) -> Any:
        body = {
            "question": "Pausing a subscription for a month",
            "answer": f"Answer written by editor {i}.",
            "category": "plans",
            "lang": "en",
        }
        return client.put(f"/v1/faqs/{faq_id}", json=body, headers=headers)

    # Without If-Match: edits queue up, each gets its own revision, none is lost.
    answers = _together(WRITERS, lambda i: put(i, editor_headers))
    assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
    history = _history(session_factory, faq_id)
    assert sorted(history) == list(range(1, len(history) + 1))
    for i, r in enumerate(answers):
        if r.status_code == 200:
            assert f"Answer written by editor {i}." in history.values()
            mine = r.json()
            assert r.headers["etag"] == f'"{mine["revision"]}"'
            assert history[mine["revision"]] == f"Answer written by editor {i}."
    ok = sum(r.status_code == 200 for r in answers)
    assert ok >= 1 and len(history) == 1 + ok
    # With If-Match on one version: exactly one wins, the others are told they are stale.
    version = client.get(f"/v1/faqs/{faq_id}", headers=editor_headers).headers["etag"]
    answers = _together(WRITERS, lambda i: put(100 + i, {**editor_headers, "If-Match": version}))
    codes = Counter(r.status_code for r in answers)
    assert codes[200] == 1 and codes[200] + codes[412] + codes[409] == WRITERS, codes
    stale = next(r for r in answers if r.status_code == 412)
    assert stale.json()["error"] == "precondition_failed"
    assert len(_history(session_factory, faq_id)) == 2 + ok
    # A weak or unknown tag never matches; a malformed one is a client error.
    assert put(1, {**editor_headers, "If-Match": 'W/"1"'}).status_code == 412
    assert put(1, {**editor_headers, "If-Match": "nonsense"}).status_code == 400
    fresh = client.get(f"/v1/faqs/{faq_id}", headers=editor_headers).headers["etag"]
    assert put(7, {**editor_headers, "If-Match": fresh}).status_code == 200


def test_rewrite_and_merge_take_if_match(
    client: TestClient, editor_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    a = _new_entry(session_factory, "Why was my card declined at checkout")
    b = _new_entry(session_factory, "Card declined when paying")
    body = {"question": "Why was my card declined", "answer": "Check the card's limit."}
    v1, v2, v9 = ({**editor_headers, "If-Match": f'"{n}"'} for n in (1, 2, 9))
    r = client.post(f"/v1/faqs/{a}/rewrite", json=body, headers=v9)
    assert r.status_code == 412 and r.json()["error"] == "precondition_failed"
    r = client.post(f"/v1/faqs/{a}/rewrite", json=body, headers=v1)
    assert r.status_code == 201 and r.json()["revision"] == 2
    r = client.post(f"/v1/faqs/{a}/merge", json={"into": b}, headers=v1)
    assert r.status_code == 412
    r = client.post(f"/v1/faqs/{a}/merge", json={"into": b}, headers=v2)
    assert r.status_code == 200


def _revise_in_process(url: str, faq_id: int, worker: int, barrier: Any) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    barrier.wait()
    done = 0
    for n in range(3):
        with session_scope(factory) as s:
            faqs.revise_entry(
                s,
                faq_id,
                question="Pausing a subscription",
                answer=f"process {worker} edit {n}",
                category="plans",
                language="en",
            )
        done += 1
    engine.dispose()
    raise SystemExit(done)


def test_concurrent_revisions_from_processes_are_all_kept(
    db_url: str, session_factory: sessionmaker[Session]
) -> None:
    faq_id = _new_entry(session_factory, "Pausing a subscription")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [
        ctx.Process(target=_revise_in_process, args=(db_url, faq_id, w, barrier)) for w in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [3, 3, 3]
    history = _history(session_factory, faq_id)
    assert sorted(history) == list(range(1, 11))
    assert {f"process {w} edit {n}" for w in range(3) for n in range(3)} <= set(history.values())


def test_same_title_creates_all_succeed_and_same_explicit_slug_has_one_winner(
    client: TestClient, editor_headers: dict[str, str]
) -> None:
    def create(i: int, slug: str | None) -> Any:
        body: dict[str, Any] = {
            "question": "Transferring a domain to another account",
            "answer": f"Version {i}.",
            "category": "plans",
            "lang": "en",
        }
        if slug:
            body["slug"] = slug
        return client.post("/v1/faqs", json=body, headers=editor_headers)

    answers = _together(WRITERS, lambda i: create(i, None))
    assert {r.status_code for r in answers} <= {201, 409}, [r.text for r in answers]
    made = [r.json()["slug"] for r in answers if r.status_code == 201]
    assert len(made) == len(set(made)) and len(made) >= WRITERS - 1
    assert all(s.startswith("transferring-a-domain-to-another-account") for s in made)
    answers = _together(20, lambda i: create(i, "domain-transfer"))
    codes = Counter(r.status_code for r in answers)
    assert codes == {201: 1, 409: 19}, [r.text for r in answers if r.status_code != 409]
    assert all(r.json()["error"] == "conflict" for r in answers if r.status_code == 409)
    # Slugs are normalised (NFKC, case, spaces) and must be the whole pattern.
    r = create(0, " Ｄomain-Transfer-2 ")
    assert r.status_code == 201 and r.json()["slug"] == "domain-transfer-2"
    assert create(0, "domain-transfer-2").status_code == 409
    r = create(0, "nl-slug\n")  # trimmed: the newline is never kept
    assert r.status_code == 201 and r.json()["slug"] == "nl-slug"
    with_newline = create(0, "nl\nslug")
    assert with_newline.status_code == 400 and with_newline.json()["error"] == "invalid_input"


def _create_in_process(url: str, worker: int, barrier: Any) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    barrier.wait()
    won = 0
    for n in range(3):
        with factory() as s:
            try:
                faqs.create_and_commit(
                    s,
                    s.commit,
                    question="Renewing a certificate",
                    answer=f"{worker}/{n}",
                    category="plans",
                    language="en",
                    slug="renew-cert" if n == 2 else None,
                )
                won += 1
            except (Conflict, PreconditionFailed):
                pass
    engine.dispose()
    raise SystemExit(won)


def test_same_title_creates_from_processes(
    db_url: str, session_factory: sessionmaker[Session]
) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_create_in_process, args=(db_url, w, barrier)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    # Each made its two generated-slug articles; one of the three got the explicit slug.
    assert sorted(p.exitcode or 0 for p in procs) == [2, 2, 3]
    with session_factory() as s:
        slugs = list(s.scalars(select(FaqEntry.slug).where(FaqEntry.slug.like("renew%"))))
    assert len(slugs) == 7 and len(set(slugs)) == 7 and "renew-cert" in slugs
