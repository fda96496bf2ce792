"""Micro-batching of query embeddings (indexer/batching.py): same vectors as unbatched
encodes, each caller gets its own, errors reach only their caller, clean shutdown."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.state import build_services
from indexer.embedding.encoders import CachedEmbedder, Vectors
from indexer.embedding.microbatch import BatchingEmbedder, EmbedderClosed

DIM = 8


class FakeEmbedder:
    """A deterministic stand-in model: a vector per text from its hash; records its calls.

    `gate` makes calls for the text "blocker" wait until released, so a test can hold the
    model busy while other requests queue up behind it. Texts containing "poison" fail.
    `delay` seconds of sleep per call stand for the model's compute time.
    With `real`, other texts are encoded by that model instead.
    """

    name = "fake"
    dim = DIM

    def __init__(self, real: CachedEmbedder | None = None) -> None:
        self.real = real
        if real is not None:
            self.name, self.dim = real.name, real.dim
        self.calls: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.delay = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def vector(text: str) -> Vectors:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_queries(self, texts: list[str]) -> Vectors:
        with self._lock:
            self.calls.append(list(texts))
        if "blocker" in texts:
            self.entered.set()
            assert self.gate.wait(30), "the test never released the blocker"
        if self.delay:
            time.sleep(self.delay)
        if any("poison" in t for t in texts):
            raise ValueError("poisoned text")
        if self.real is not None:
            return self.real.encode_queries(texts)
        return np.stack([self.vector(t) for t in texts])

    def encode_passages(self, texts: list[str]) -> Vectors:
        return np.stack([self.vector("passage: " + t) for t in texts])


def run_threads(targets: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a caller hung"


def wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(3000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def hold_model(batcher: BatchingEmbedder, fake: FakeEmbedder) -> threading.Thread:
    """Start a call that keeps the model busy until `fake.gate` is set."""
    thread = threading.Thread(target=batcher.encode_queries, args=(["blocker"],))
    thread.start()
    assert fake.entered.wait(30)
    return thread


# -- with the real model ------------------------------------------------------------------
POSTS = [
    "eSIMが開通しない…QRコード読んだのに",
    "パスワードを忘れました",
    "請求額が先月より高いのはなぜ？",
    "海外でデータ通信を使うと料金はいくら？",
    "機種変更したらデータを移したい",
    "SIMカードを認識しません",
    "解約の手数料について教えてください",
    "荷物が届かない、追跡番号はどこ？",
    "my esim wont activate after scanning the qr code",
    "I forgot my password and cannot log in",
    "why is my bill higher than last month",
    "how much does roaming cost in Europe",
    "can I keep my number if I switch carriers",
    "the card payment was declined",
    "no signal since this morning, is there an outage?",
    "how do I set up voicemail",
]


def test_batched_vectors_equal_unbatched_ones(embedder: CachedEmbedder) -> None:
    """Sixteen queued callers, encoded by the real model in one call, get the vectors each
    would get alone (to float precision: a batch is padded to its longest post and masked,
    so sums run in another order)."""
    alone = {text: embedder.encode_queries([text])[0] for text in POSTS}
    model = FakeEmbedder(real=embedder)  # the real model, plus a way to hold it busy
    batcher = BatchingEmbedder(model, max_wait_ms=0, max_batch=32)
    blocker = hold_model(batcher, model)
    got: dict[str, Vectors] = {}

    def caller(text: str) -> Callable[[], None]:
        def run() -> None:
            got[text] = batcher.encode_queries([text])[0]

        return run

    threads = [threading.Thread(target=caller(t)) for t in POSTS]
    for t in threads:
        t.start()
    wait_until(lambda: batcher.pending == len(POSTS))
    model.gate.set()
    for t in [*threads, blocker]:
        t.join(60)
    assert sorted(model.calls[1]) == sorted(POSTS)  # one model call for all sixteen
    assert set(got) == set(POSTS)
    for text in POSTS:
        assert got[text].shape == (embedder.dim,)
        np.testing.assert_allclose(got[text], alone[text], atol=2e-5)
        assert float(got[text] @ alone[text]) > 0.99999


def test_one_call_with_several_texts_matches_the_model(embedder: CachedEmbedder) -> None:
    batcher = BatchingEmbedder(embedder)
    vecs = batcher.encode_queries(POSTS[:3])
    np.testing.assert_allclose(vecs, embedder.encode_queries(POSTS[:3]), atol=1e-6)
    assert batcher.encode_queries([]).shape == (0, embedder.dim)
    assert batcher.name == embedder.name and batcher.dim == embedder.dim


# -- behaviour, with a deterministic stand-in model ----------------------------------------
def test_concurrent_callers_get_their_own_vectors() -> None:
    fake = FakeEmbedder()
    batcher = BatchingEmbedder(fake, max_wait_ms=5, max_batch=8)
    blocker = hold_model(batcher, fake)
    requests = {n: [f"post {n} text {i}" for i in range(1 + n % 3)] for n in range(40)}
    got: dict[int, Vectors] = {}

    def caller(n: int) -> Callable[[], None]:
        def run() -> None:
            got[n] = batcher.encode_queries(requests[n])

        return run

    threads = [threading.Thread(target=caller(n)) for n in requests]
    for t in threads:
        t.start()
    wait_until(lambda: batcher.pending == len(requests))
    fake.gate.set()
    for t in threads:
        t.join(60)
    blocker.join(60)
    for n, texts in requests.items():
        expected = np.stack([fake.vector(t) for t in texts])
        np.testing.assert_array_equal(got[n], expected)
    calls = fake.calls[1:]
    # Every text was encoded exactly once, in calls of at most max_batch texts, and the
    # forty queued requests shared calls instead of taking one each.
    assert sorted(t for c in calls for t in c) == sorted(t for ts in requests.values() for t in ts)
    assert all(len(c) <= 8 for c in calls)
    assert len(calls) < len(requests)
    assert batcher.stats.largest > 1


def test_a_request_larger_than_max_batch_goes_alone() -> None:
    fake = FakeEmbedder()
    batcher = BatchingEmbedder(fake, max_batch=2)
    texts = [f"t{i}" for i in range(5)]
    np.testing.assert_array_equal(
        batcher.encode_queries(texts), np.stack([fake.vector(t) for t in texts])
    )
    assert fake.calls == [texts]


def test_a_lone_client_never_waits_for_company() -> None:
    """However fast one client calls, it never finds the model busy, so it never waits."""
    fake = FakeEmbedder()
    batcher = BatchingEmbedder(fake, max_wait_ms=10_000, max_batch=32)
    for n in range(50):
        batcher.encode_queries([f"sequential {n}"])
    assert batcher.stats.waited == 0
    assert batcher.stats.batches == 50
    assert [len(c) for c in fake.calls] == [1] * 50


def test_under_contention_an_idle_leader_waits_for_company() -> None:
    fake = FakeEmbedder()
    batcher = BatchingEmbedder(fake, max_wait_ms=20_000, max_batch=2)
    # Contention: while the model is held, requests find it busy.
    blocker = hold_model(batcher, fake)
    warm = [threading.Thread(target=batcher.encode_queries, args=([f"w{n}"],)) for n in range(8)]
    for t in warm:
        t.start()
    wait_until(lambda: batcher.pending == 8)
    fake.gate.set()
    for t in [*warm, blocker]:
        t.join(60)
    calls_before = len(fake.calls)
    # The model is idle now; the next leader waits (up to 20 s) until a second request
    # makes a full batch of two, and both are encoded in one call.
    first = threading.Thread(target=batcher.encode_queries, args=(["first"],))
    first.start()
    wait_until(lambda: batcher.stats.batches >= 5 and batcher.active == 1)
    second = threading.Thread(target=batcher.encode_queries, args=(["second"],))
    second.start()
    for t in (first, second):
        t.join(60)
    assert fake.calls[calls_before:] == [["first", "second"]]
    assert batcher.stats.waited >= 1


def test_an_error_reaches_only_the_caller_that_caused_it() -> None:
    fake = FakeEmbedder()
    batcher = BatchingEmbedder(fake, max_wait_ms=0, max_batch=32)
    blocker = hold_model(batcher, fake)
    texts = ["good 1", "poison pill", "good 2", "good 3"]
    outcome: dict[str, object] = {}

    def caller(text: str) -> Callable[[], None]:
        def run() -> None:
            try:
                outcome[text] = batcher.encode_queries([text])
            except ValueError as exc:
                outcome[text] = exc

        return run

    threads = [threading.Thread(target=caller(t)) for t in texts]
    for t in threads:
        t.start()
    wait_until(lambda: batcher.pending == len(texts))
    fake.gate.set()
    for t in [*threads, blocker]:
        t.join(60)
    assert isinstance(outcome["poison pill"], ValueError)
    for text in ("good 1", "good 2", "good 3"):
        vec = outcome[text]
        assert isinstance(vec, np.ndarray)
        np.testing.assert_array_equal(vec[0], fake.vector(text))
    assert batcher.stats.split == 1
    # The failed call held all four; each was then tried alone.
    assert sorted(fake.calls[1]) == sorted(texts)
    assert sorted(fake.calls[2:]) == sorted([t] for t in texts)
    # A lone failing request gets its error directly, and the batcher keeps working.
    with pytest.raises(ValueError, match="poisoned"):
        batcher.encode_queries(["poison again"])
    assert batcher.encode_queries(["after"]).shape == (1, DIM)


def test_close_lets_queued_requests_finish_and_refuses_new_ones() -> None:
    fake = FakeEmbedder()
    batcher = BatchingEmbedder(fake, max_wait_ms=0)
    blocker = hold_model(batcher, fake)
    got: dict[str, Vectors] = {}
    queued = [
        threading.Thread(target=lambda t=t: got.__setitem__(t, batcher.encode_queries([t])))
        for t in ("q1", "q2", "q3")
    ]
    for t in queued:
        t.start()
    wait_until(lambda: batcher.pending == 3)
    assert batcher.close(timeout=0.05) is False  # still busy: not idle yet
    with pytest.raises(EmbedderClosed):
        batcher.encode_queries(["too late"])
    drained: list[bool] = []
    closer = threading.Thread(target=lambda: drained.append(batcher.close(timeout=60)))
    closer.start()
    fake.gate.set()
    for t in [*queued, blocker, closer]:
        t.join(60)
    assert drained == [True]
    assert sorted(got) == ["q1", "q2", "q3"]
    for text, vec in got.items():
        np.testing.assert_array_equal(vec[0], fake.vector(text))
    assert "too late" not in {t for c in fake.calls for t in c}
    assert batcher.closed
    # Passages (index builds) do not go through the queue.
    np.testing.assert_array_equal(batcher.encode_passages(["p"])[0], fake.vector("passage: p"))


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        BatchingEmbedder(FakeEmbedder(), max_batch=0)
    with pytest.raises(ValueError):
        BatchingEmbedder(FakeEmbedder(), max_wait_ms=-1)
    with pytest.raises(ValueError):
        BatchingEmbedder(FakeEmbedder(), lanes=0)
    with pytest.raises(ValueError):
        BatchingEmbedder(FakeEmbedder(), threads=0)


# -- lanes: several model calls at once -----------------------------------------------------
class ThreadLog:
    """Records the thread count each model call was given (the `set_threads` hook)."""

    def __init__(self) -> None:
        self.counts: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.counts.append(n)


def test_a_second_lane_serves_while_the_first_is_busy() -> None:
    fake = FakeEmbedder()
    threads = ThreadLog()
    batcher = BatchingEmbedder(fake, max_wait_ms=0, lanes=2, threads=2, set_threads=threads)
    blocker = hold_model(batcher, fake)  # lane 1 is held
    assert batcher.active == 1
    # Lane 2 encodes these one after another while lane 1 stays busy; none queues.
    for n in range(5):
        np.testing.assert_array_equal(
            batcher.encode_queries([f"meanwhile {n}"])[0], fake.vector(f"meanwhile {n}")
        )
    assert batcher.pending == 0 and batcher.active == 1
    # With both lanes taken, callers queue and go together when a lane frees up.
    lane2 = threading.Thread(target=batcher.encode_queries, args=(["blocker"],))
    lane2.start()
    wait_until(lambda: batcher.active == 2)
    queued = [threading.Thread(target=batcher.encode_queries, args=([f"q{n}"],)) for n in range(6)]
    for t in queued:
        t.start()
    wait_until(lambda: batcher.pending == 6)
    fake.gate.set()
    for t in [*queued, blocker, lane2]:
        t.join(60)
        assert not t.is_alive()
    assert batcher.active == 0 and batcher.pending == 0
    queued_calls = [c for c in fake.calls if any(t.startswith("q") for t in c)]
    assert sorted(t for c in queued_calls for t in c) == [f"q{n}" for n in range(6)]
    assert len(queued_calls) < 6  # they shared calls
    # Low load: the lone calls got both threads; while the other lane was busy, one each.
    assert threads.counts[0] == 2
    assert 1 in threads.counts


def test_a_lone_client_gets_every_thread_and_lanes_split_them_under_load() -> None:
    fake = FakeEmbedder()
    threads = ThreadLog()
    batcher = BatchingEmbedder(fake, max_wait_ms=0, lanes=2, threads=4, set_threads=threads)
    for n in range(10):
        batcher.encode_queries([f"alone {n}"])
    assert threads.counts == [4] * 10
    # Sixteen clients at once: most calls share the cores, two threads each.
    fake.delay = 0.002
    threads.counts.clear()
    barrier = threading.Barrier(16)

    def client(n: int) -> Callable[[], None]:
        def run() -> None:
            barrier.wait()
            for i in range(20):
                got = batcher.encode_queries([f"c{n} {i}"])
                np.testing.assert_array_equal(got[0], fake.vector(f"c{n} {i}"))

        return run

    run_threads([client(n) for n in range(16)])
    assert batcher.active == 0 and batcher.pending == 0
    assert batcher.stats.requests == 10 + 16 * 20
    assert threads.counts.count(2) > len(threads.counts) / 2
    assert set(threads.counts) <= {2, 4}
    # Passages (index builds) always get every thread.
    batcher.encode_passages(["p"])
    assert threads.counts[-1] == 4


def test_lanes_never_leak_under_concurrent_load() -> None:
    """Many callers through two lanes, with failures: every caller gets its own answer, and
    afterwards no lane is left taken (close() finds the model idle at once)."""
    fake = FakeEmbedder()
    fake.delay = 0.0005
    batcher = BatchingEmbedder(fake, max_wait_ms=1, max_batch=4, lanes=2, threads=2)
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(30):
                text = f"poison {n} {i}" if (n + i) % 7 == 0 else f"c{n} {i}"
                try:
                    got = batcher.encode_queries([text])
                except ValueError:
                    assert "poison" in text
                    continue
                if not np.array_equal(got[0], fake.vector(text)):
                    with lock:
                        errors.append(text)

        return run

    run_threads([client(n) for n in range(12)])
    assert errors == []
    assert batcher.active == 0 and batcher.pending == 0
    assert batcher.stats.requests == 12 * 30
    assert batcher.close(timeout=0.5) is True


def test_model_calls_run_on_lanes_model_threads_only() -> None:
    """Sixteen caller threads through two lanes: every model call (and its thread-count
    setting) happens on one of two long-lived model threads, never on a caller's thread."""
    fake = FakeEmbedder()
    fake.delay = 0.001
    model_threads: set[int] = set()
    setting_threads: set[int] = set()
    lock = threading.Lock()
    inner_encode = fake.encode_queries

    def encode(texts: list[str]) -> Vectors:
        with lock:
            model_threads.add(threading.get_ident())
        return inner_encode(texts)

    def set_threads(n: int) -> None:
        with lock:
            setting_threads.add(threading.get_ident())

    fake.encode_queries = encode  # type: ignore[method-assign]
    batcher = BatchingEmbedder(fake, max_wait_ms=1, lanes=2, threads=2, set_threads=set_threads)
    callers: set[int] = set()

    def client(n: int) -> Callable[[], None]:
        def run() -> None:
            with lock:
                callers.add(threading.get_ident())
            for i in range(15):
                got = batcher.encode_queries([f"c{n} {i}"])
                np.testing.assert_array_equal(got[0], fake.vector(f"c{n} {i}"))

        return run

    run_threads([client(n) for n in range(16)])
    assert batcher.stats.requests == 16 * 15
    assert 1 <= len(model_threads) <= 2
    assert model_threads.isdisjoint(callers)
    assert setting_threads == model_threads
    assert batcher.close(timeout=1) is True


# -- wiring ---------------------------------------------------------------------------------
def test_services_batch_queries_as_configured(
    settings: Settings, embedder: CachedEmbedder, tmp_path: Path
) -> None:
    tuned = settings.model_copy(update={"batch_wait_ms": 3.5, "embed_batch_max": 7})
    services = build_services(tuned, embedder=embedder)
    try:
        assert isinstance(services.embedder, BatchingEmbedder)
        assert services.embedder.inner is embedder
        assert services.embedder.max_wait == pytest.approx(0.0035)
        assert services.embedder.max_batch == 7
        assert services.index.embedder is services.embedder
    finally:
        services.close()
    assert services.embedder.closed


def test_concurrent_suggest_requests_get_the_answers_they_get_alone(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    agent_headers: dict[str, str],
) -> None:
    posts = POSTS[:6] + POSTS[8:14]
    with TestClient(create_app(settings, embedder=embedder)) as client:
        alone = {}
        for text in posts:
            r = client.post("/v1/suggest", json={"text": text, "k": 3}, headers=agent_headers)
            assert r.status_code == 200, r.text
            alone[text] = r.json()
        together: dict[str, dict[str, object]] = {}
        start = threading.Barrier(len(posts))

        def caller(text: str) -> Callable[[], None]:
            def run() -> None:
                start.wait()
                r = client.post("/v1/suggest", json={"text": text, "k": 3}, headers=agent_headers)
                assert r.status_code == 200, r.text
                together[text] = r.json()

            return run

        run_threads([caller(t) for t in posts])
        services = client.app.state.services  # type: ignore[attr-defined]
        stats = services.embedder.stats
    assert set(together) == set(posts)
    for text in posts:
        a, b = alone[text], together[text]
        assert [c["faq_id"] for c in a["candidates"]] == [c["faq_id"] for c in b["candidates"]]
        for ca, cb in zip(a["candidates"], b["candidates"], strict=True):
            assert ca["score"] == pytest.approx(cb["score"], abs=1e-4)
        assert a["abstained"] == b["abstained"] and a["lang"] == b["lang"]
    # Every post was embedded through the batcher.
    assert stats.requests >= 2 * len(posts)
