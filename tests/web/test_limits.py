"""Request limits through the real app: body size 413, per-key suggest rate 429 with
Retry-After, timeouts 504, the batch size limit, unknown query parameters, out-of-range
numbers; none of them loses or half-writes data."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from limits.storage import MemoryStorage
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from api.site.state import site_state_of
from api.web.ratelimit import RateLimiter
from indexer.embedding.encoders import CachedEmbedder
from kb.models import FaqEntry, PageView, Suggestion


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _app(settings: Settings, embedder: CachedEmbedder, **changes: object) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes), embedder=embedder))


def _faq(question: str, answer: str) -> dict[str, object]:
    return {"question": question, "answer": answer, "category": "plans", "lang": "en"}


def test_oversized_bodies_get_413_and_write_nothing(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    editor_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    before = _count(session_factory, FaqEntry)
    with _app(settings, embedder, max_body_bytes=4096) as client:
        big = _faq("Can I pause my line?", "x" * 5000)
        r = client.post("/v1/faqs", json=big, headers=editor_headers)
        assert r.status_code == 413
        assert r.json() == {
            "error": "payload_too_large",
            "detail": "the request body is larger than 4096 bytes",
        }
        assert r.headers["x-request-id"]

        # No Content-Length (chunked upload): refused once the stream passes the limit.
        def chunks() -> Iterator[bytes]:
            yield b'{"question": "Can I pause my line?", "answer": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'", "category": "plans", "lang": "en"}'

        r = client.post(
            "/v1/faqs",
            content=chunks(),
            headers={**editor_headers, "Content-Type": "application/json"},
        )
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        assert _count(session_factory, FaqEntry) == before

        # Just under the limit (multi-byte Japanese counts in bytes) the request is served.
        small = _faq("回線を一時停止できますか？", "はい、できます。" * 100)
        r = client.post("/v1/faqs", json=small, headers=editor_headers)
        assert r.status_code == 201, r.text
        assert _count(session_factory, FaqEntry) == before + 1


def test_suggest_is_rate_limited_per_key_with_retry_after(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with _app(settings, embedder, suggest_rate_limit=3, suggest_rate_window=3600) as client:
        post = {"text": "eSIMが開通しない"}
        for _ in range(3):
            assert client.post("/v1/suggest", json=post, headers=agent_headers).status_code == 200
        recorded = _count(session_factory, Suggestion)
        r = client.post("/v1/suggest", json=post, headers=agent_headers)
        assert r.status_code == 429
        assert r.json()["error"] == "rate_limited"
        # 3 in any hour: the next one is allowed when the first leaves the window.
        assert 3500 <= int(r.headers["Retry-After"]) <= 3600
        assert _count(session_factory, Suggestion) == recorded  # refused before any work
        # The batch endpoint shares the key's bucket ...
        batch = {"posts": [{"text": "my esim wont activate"}]}
        assert (
            client.post("/v1/suggest/batch", json=batch, headers=agent_headers).status_code == 429
        )
        # ... while another key has its own, and other endpoints are not limited.
        assert client.post("/v1/suggest", json=post, headers=editor_headers).status_code == 200
        assert client.get("/v1/faqs", headers=agent_headers).status_code == 200
        # No key: the request goes through to its 401, not to the limiter.
        assert client.post("/v1/suggest", json=post).status_code == 401


def test_a_batch_costs_one_token_per_post(
    settings: Settings, embedder: CachedEmbedder, seeded: None, agent_headers: dict[str, str]
) -> None:
    with _app(settings, embedder, suggest_rate_limit=4, suggest_rate_window=3600) as client:
        posts = [{"text": t} for t in ("eSIMが開通しない", "forgot my password", "圏外になる")]
        r = client.post("/v1/suggest/batch", json={"posts": posts}, headers=agent_headers)
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == 3
        # 1 token left: a second batch of 3 is refused, a single suggest still passes.
        r = client.post("/v1/suggest/batch", json={"posts": posts}, headers=agent_headers)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        one = {"text": "forgot my password"}
        assert client.post("/v1/suggest", json=one, headers=agent_headers).status_code == 200


def test_rate_limiter_frees_up_after_the_window() -> None:
    limiter = RateLimiter("test", 2, 0.5)
    assert limiter.window == 1  # whole seconds, rounded up
    started = time.monotonic()
    assert limiter.hit("a") == 0 and limiter.hit("a") == 0
    assert limiter.hit("a") == 1  # refused: the wait in whole seconds, never 0
    assert limiter.hit("b") == 0  # keys are independent
    time.sleep(max(0.0, started + 1.1 - time.monotonic()))
    assert limiter.hit("a") == 0 and limiter.hit("a") == 0  # the window has passed
    assert limiter.hit("a") == 1


def test_rate_limiter_counts_costs_and_waits_for_the_oldest_hit() -> None:
    limiter = RateLimiter("test", 3, 60.0)
    assert limiter.hit("a", cost=2) == 0
    assert 59 <= limiter.hit("a", cost=2) <= 60  # one left: refused, and nothing counted
    assert limiter.hit("a") == 0
    assert 59 <= limiter.hit("a") <= 60
    assert limiter.hit("big", cost=10) == 0  # more than the limit counts as the limit
    assert limiter.hit("big") > 0


def test_rate_limiters_share_a_storage_by_name() -> None:
    storage = MemoryStorage()
    one, other = (RateLimiter("suggest", 2, 60.0, storage=storage) for _ in range(2))
    votes = RateLimiter("votes", 2, 60.0, storage=storage)
    assert one.hit("k") == 0 and other.hit("k") == 0  # replicas counting together
    assert one.hit("k") > 0 and other.hit("k") > 0
    assert votes.hit("k") == 0  # another limit's keys are apart


def test_rate_limiter_allows_exactly_the_limit_under_concurrency() -> None:
    limiter = RateLimiter("test", 50, 60.0)
    waits: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [limiter.hit("shared") for _ in range(20)]
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert waits.count(0) == 50 and all(w >= 1 for w in waits if w)


def test_batch_size_limit_is_enforced(
    settings: Settings, embedder: CachedEmbedder, seeded: None, agent_headers: dict[str, str]
) -> None:
    with _app(settings, embedder, batch_max=3) as client:
        posts = [{"text": f"forgot my password {i}"} for i in range(4)]
        r = client.post("/v1/suggest/batch", json={"posts": posts}, headers=agent_headers)
        assert r.status_code == 413 and r.json()["error"] != "payload_too_large"
        r = client.post("/v1/suggest/batch", json={"posts": posts[:3]}, headers=agent_headers)
        assert r.status_code == 200


def test_slow_requests_get_504_and_fast_ones_are_untouched(
    settings: Settings, embedder: CachedEmbedder, seeded: None, agent_headers: dict[str, str]
) -> None:
    # 8 s: on a loaded machine (two test passes on two cores) a shorter limit can run out
    # before the handler has even started in the thread pool, or cut the fast request after.
    app = create_app(settings.model_copy(update={"request_timeout": 8.0}), embedder=embedder)
    release = threading.Event()
    finished = threading.Event()

    @app.get("/v1/test-slow")
    def slow() -> dict[str, str]:
        release.wait(30)  # held until the test has seen the 504
        finished.set()
        return {"status": "late"}

    with TestClient(app) as client:
        r = client.get("/v1/test-slow", headers={"X-Request-ID": "slow-1"})
        assert r.status_code == 504
        assert r.json()["error"] == "timeout" and "8 s" in r.json()["detail"]
        assert r.headers["x-request-id"] == "slow-1"
        release.set()
        assert finished.wait(30)  # the abandoned handler ran to its end in the background
        assert client.get("/v1/faqs", headers=agent_headers).status_code == 200
        metrics = client.get("/metrics").text
        assert 'route="/v1/test-slow",status="504"' in metrics


def test_unknown_query_parameters_are_refused_on_the_api_only(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    r = client.get("/v1/faqs?lang=ja&categroy=billing", headers=agent_headers)
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"loc": ["query", "categroy"], "msg": "unknown query parameter", "type": "extra_forbidden"}
    ]
    assert client.get("/v1/faqs?lang=ja&category=billing", headers=agent_headers).status_code == 200
    # Links into the public site carry campaign parameters; pages ignore them.
    assert client.get("/?utm_source=x&lang=ja").status_code == 200


def test_numbers_beyond_the_database_range_are_a_400(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    huge = 10**30
    for path in (f"/v1/faqs/{huge}", f"/v1/threads?faq_id={huge}", f"/v1/faqs?offset={huge}"):
        r = client.get(path, headers=agent_headers)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"] == "invalid_input"
    r = client.post("/v1/public/faqs/esim-iphone-activate/views", json={"revision_id": huge})
    assert r.status_code == 400
    r = client.get("/v1/faqs/1", headers=agent_headers)
    assert r.status_code == 200  # the app is fine afterwards


def test_json_integers_are_integers(client: TestClient, agent_headers: dict[str, str]) -> None:
    # JSON Schema's integer: 3 and 3.0 are; true and "3" are not (as the OpenAPI schema says).
    for k, status in ((3, 200), (3.0, 200), (True, 422), ("3", 422), (2.5, 422)):
        r = client.post(
            "/v1/suggest", json={"text": "forgot my password", "k": k}, headers=agent_headers
        )
        assert r.status_code == status, (k, r.text)


def test_limits_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    suggest = paths["/v1/suggest"]["post"]["responses"]
    assert {"400", "401", "403", "413", "422", "429", "503", "504"} <= set(suggest)
    assert "Retry-After" in suggest["429"]["headers"]
    faq = paths["/v1/faqs/{faq_id}"]["get"]["responses"]
    assert {"400", "401", "403", "504"} <= set(faq) and "413" not in faq
    assert "security" not in paths["/v1/public/search"]["get"]  # the site's API needs no key
    assert paths["/v1/faqs"]["get"]["security"] == [{"HTTPBearer": []}]


# ------------------------------------------------------------- limits across replicas

REDIS_URL = os.environ.get("FAQLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis; only the keys a test made (named by its unique marks) are removed."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"no Redis answers at {REDIS_URL} ({exc}); set FAQLOOP_TEST_REDIS_URL")
    yield REDIS_URL
    for mark in _REDIS_MARKS:
        for key in client.scan_iter(match=f"faqloop:*{mark}*"):
            client.delete(key)
    _REDIS_MARKS.clear()
    client.close()


_REDIS_MARKS: list[str] = []


def _address() -> str:
    """A client address no other test (or earlier run) has used."""
    address = str(ipaddress.IPv6Address(int(uuid.uuid4().hex, 16)))
    _REDIS_MARKS.append(address)
    return address


def test_two_replicas_share_one_suggest_budget_in_redis(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    agent_headers: dict[str, str],
    redis_url: str,
) -> None:
    _REDIS_MARKS.append(hashlib.sha256(agent_headers["Authorization"][7:].encode()).hexdigest())
    shared = settings.model_copy(
        update={"redis_url": redis_url, "suggest_rate_limit": 4, "suggest_rate_window": 3600}
    )
    one = TestClient(create_app(shared, embedder=embedder))
    two = TestClient(
        create_app(
            shared.model_copy(update={"data_dir": settings.data_dir / "r2"}), embedder=embedder
        )
    )
    post = {"text": "eSIMが開通しない"}
    with one, two:
        codes = [
            replica.post("/v1/suggest", json=post, headers=agent_headers).status_code
            for replica in (one, two, one, two, one, two)
        ]
        assert codes == [200, 200, 200, 200, 429, 429]  # 4 in all, not 4 per replica
        r = two.post("/v1/suggest", json=post, headers=agent_headers)
        assert 3500 <= int(r.headers["Retry-After"]) <= 3600


def test_two_replicas_share_vote_and_search_budgets_per_address(
    settings: Settings, embedder: CachedEmbedder, seeded: None, redis_url: str
) -> None:
    shared = settings.model_copy(
        update={"redis_url": redis_url, "search_rate_limit": 3, "vote_rate_limit_ip": 2}
    )
    address = _address()
    apps = [
        create_app(shared, embedder=embedder),
        create_app(
            shared.model_copy(update={"data_dir": settings.data_dir / "r2"}), embedder=embedder
        ),
    ]
    one, two = (TestClient(app, client=(address, 1)) for app in apps)
    with one, two:
        codes = [c.get("/v1/public/search", params={"q": "eSIM"}).status_code for c in (one, two)]
        codes += [one.get("/search", params={"q": "eSIM"}).status_code]
        codes += [c.get("/v1/public/search", params={"q": "eSIM"}).status_code for c in (two, one)]
        assert codes == [200, 200, 200, 429, 429]
        voted = []
        for c in (one, two, one):
            token = c.get("/v1/public/faqs/esim-iphone-activate").json()["csrf_token"]
            r = c.post(
                "/v1/public/faqs/esim-iphone-activate/vote",
                json={"helpful": True},
                headers={"X-CSRF-Token": token},
            )
            voted.append(r.status_code)
            c.cookies.clear()
        assert voted == [200, 200, 429]


def test_an_unreachable_redis_does_not_take_the_service_down(
    settings: Settings, embedder: CachedEmbedder, seeded: None, agent_headers: dict[str, str]
) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(down, embedder=embedder)) as client:
        r = client.post("/v1/suggest", json={"text": "eSIMが開通しない"}, headers=agent_headers)
        assert r.status_code == 200
        assert client.get("/v1/public/search", params={"q": "eSIM"}).status_code == 200


# -------------------------------------------------------------- public search and views


def test_public_search_has_its_own_budget_per_address(
    settings: Settings, embedder: CachedEmbedder, seeded: None, agent_headers: dict[str, str]
) -> None:
    limited = settings.model_copy(update={"search_rate_limit": 2, "search_rate_window": 600})
    app = create_app(limited, embedder=embedder)
    with (
        TestClient(app, client=("192.0.2.20", 1)) as flood,
        TestClient(app, client=("192.0.2.21", 1)) as other,
    ):
        assert [flood.get("/v1/public/search", params={"q": "esim"}).status_code for _ in "ab"] == [
            200,
            200,
        ]
        r = flood.get("/v1/public/search", params={"q": "esim"})
        assert r.status_code == 429 and r.json()["error"] == "rate_limited"
        assert 590 <= int(r.headers["Retry-After"]) <= 600
        page = flood.get("/search", params={"q": "esim"})  # the page shares the budget
        assert page.status_code == 429 and int(page.headers["Retry-After"]) >= 1
        assert "text/html" in page.headers["content-type"]
        assert flood.get("/search").status_code == 200  # the empty search form is free
        # Another address, and agents' suggest, are untouched.
        assert other.get("/v1/public/search", params={"q": "esim"}).status_code == 200
        r = flood.post("/v1/suggest", json={"text": "esim"}, headers=agent_headers)
        assert r.status_code == 200


def test_public_searches_beyond_the_replicas_slots_are_refused_at_once(
    settings: Settings, embedder: CachedEmbedder, seeded: None, agent_headers: dict[str, str]
) -> None:
    # One slot (the default): while one public search runs, another is 503 at once, from any
    # address, so a flood spread over many addresses cannot hold every core.
    app = create_app(
        settings.model_copy(update={"public_search_concurrency": 1}), embedder=embedder
    )
    with TestClient(app, client=("192.0.2.30", 1)) as web:
        assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200
        gate = site_state_of(app).search_gate
        with gate.slot():  # a search under way in another thread
            r = web.get("/v1/public/search", params={"q": "esim"})
            assert r.status_code == 503 and r.json()["error"] == "busy"
            assert r.headers["Retry-After"] == "1"
            page = web.get("/search", params={"q": "esim"}, headers={"Accept-Language": "ja"})
            assert page.status_code == 503 and page.headers["Retry-After"] == "1"
            assert "ただいま混み合っています" in page.text
            # Agents' suggest does not share the public slots.
            r = web.post("/v1/suggest", json={"text": "esim"}, headers=agent_headers)
            assert r.status_code == 200
        assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200
    unlimited = create_app(
        settings.model_copy(update={"public_search_concurrency": 0}), embedder=embedder
    )
    with TestClient(unlimited) as web:
        assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200
        with site_state_of(unlimited).search_gate.slot():
            assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200


def test_request_threads_cap_the_handlers_running_at_once(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    """FAQLOOP_REQUEST_THREADS sizes the thread pool of the app's event loop (AnyIO's limiter,
    read on the running loop), handlers still answer through it, and 0 is refused."""
    import anyio.to_thread

    def pool() -> tuple[float, int]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        return limiter.total_tokens, limiter.borrowed_tokens

    app = create_app(settings.model_copy(update={"request_threads": 2}), embedder=embedder)
    with TestClient(app) as web:
        assert web.portal is not None
        assert web.portal.call(pool) == (2, 0)
        assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200
    with pytest.raises(ValidationError):
        Settings(request_threads=0, _env_file=None)  # type: ignore[call-arg]


def test_gil_switch_interval_is_set_while_the_app_runs_and_restored_after(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    """FAQLOOP_GIL_SWITCH_MS sets Python's switch interval for the app's lifetime only;
    values out of range are refused."""
    import sys

    before = sys.getswitchinterval()
    app = create_app(settings.model_copy(update={"gil_switch_ms": 0.5}), embedder=embedder)
    with TestClient(app) as web:
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200
    assert sys.getswitchinterval() == pytest.approx(before)
    for bad in (0, 1000):
        with pytest.raises(ValidationError):
            Settings(gil_switch_ms=bad, _env_file=None)  # type: ignore[call-arg]


def test_startup_objects_are_frozen_while_the_app_runs_and_released_after(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    """FAQLOOP_GC_FREEZE (default on): once the index is open, what start-up built is out of
    the cyclic collector's reach (gc.freeze); the app's stop gives it back. Off: nothing is
    frozen. A freeze asked for after the stop does nothing."""
    import gc

    from api.app import StartupFreeze

    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings, embedder=embedder)) as web:
        assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200
        assert gc.get_freeze_count() > 1000  # the app, the index, the tokenizers
        assert web.app.state.startup_freeze.frozen  # type: ignore[attr-defined]
    assert gc.get_freeze_count() == 0
    off = create_app(settings.model_copy(update={"gc_freeze": False}), embedder=embedder)
    with TestClient(off) as web:
        assert web.get("/v1/public/search", params={"q": "esim"}).status_code == 200
        assert gc.get_freeze_count() == 0
    late = StartupFreeze(True)
    late.release()
    late.freeze()  # an index that finished loading after the app stopped
    assert gc.get_freeze_count() == 0 and not late.frozen


def _views(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.scalar(select(func.coalesce(func.sum(PageView.count), 0))) or 0)


def test_cookieless_floods_do_not_inflate_views_but_reply_visitors_count(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    limited = settings.model_copy(update={"view_count_limit_ip": 5})
    browser = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537"}
    before = _views(session_factory)
    with TestClient(
        create_app(limited, embedder=embedder), client=("198.51.100.7", 1), headers=browser
    ) as c:
        for _ in range(60):  # a flood of cookieless page loads: every page renders
            c.cookies.clear()
            assert c.get("/faq/esim-iphone-activate").status_code == 200
        assert _views(session_factory) - before == 5
        # A customer behind the same address arriving from an agent's reply link counts.
        c.cookies.clear()
        assert c.get("/faq/esim-iphone-activate?src=reply").status_code == 200
        assert _views(session_factory) - before == 6
        # The JSON view endpoint says why a flooded view was not counted.
        c.cookies.clear()
        r = c.post("/v1/public/faqs/esim-iphone-activate/views", json={"src": "direct"})
        assert r.status_code == 200 and r.json() == {"counted": False, "reason": "limited"}
