"""Request ids, structured JSON logs without secrets or personal data, Prometheus /metrics."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from api.app import create_app
from api.settings import Settings
from api.web.observability import JsonFormatter, RequestIdFilter, redact
from indexer.embedding.encoders import CachedEmbedder
from indexer.embedding.telemetry import observe_batch_size
from tests.support.serve import serve_env, serving

POST_TEXT = "電話番号は090-1234-5678です。eSIMが開通しない 😭"
SEARCH_TEXT = "hanako@example.com 解約したい"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _formatted(records: list[logging.LogRecord]) -> list[dict[str, object]]:
    fmt = JsonFormatter()
    return [json.loads(fmt.format(r)) for r in records]


def test_request_ids_are_accepted_returned_and_generated(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1"})
    assert r.headers["x-request-id"] == "lb-7f3a.1"
    generated = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", g) for g in generated)
    # Not a sane token (spaces, too long): replaced, so it cannot forge log lines.
    for bad in ("a b", "x" * 200, '"},{"level"'):
        got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)
    # Error answers carry it too.
    assert client.get("/v1/faqs").headers["x-request-id"]
    assert client.get("/faq/no-such-article").headers["x-request-id"]


def test_access_log_has_the_request_and_no_secrets_or_personal_data(
    client: TestClient,
    agent_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = agent_headers["Authorization"].removeprefix("Bearer ")
    r = client.post(
        "/v1/suggest",
        json={"text": POST_TEXT},
        headers={**agent_headers, "X-Request-ID": "req-42"},
    )
    assert r.status_code == 200
    article = client.get("/v1/public/faqs/esim-iphone-activate")
    cookie = article.cookies.get("fql_v") or client.cookies.get("fql_v")
    assert cookie
    client.get("/search", params={"q": SEARCH_TEXT})
    client.get(f"/v1/faqs/{r.json()['candidates'][0]['faq_id']}", headers=agent_headers)
    client.get("/v1/faqs", headers={"Authorization": f"Bearer {key}x"})  # a wrong key: 401
    client.get("/v1/public/faqs/電話090-1234-5678")  # personal data typed into a URL

    # The server's records (the test's HTTP client logs its own requests, URLs included).
    records = _formatted([r for r in caplog.records if not r.name.startswith("httpx")])
    access = [r for r in records if r["logger"] == "faqloop.access"]
    suggest = next(r for r in access if r.get("request_id") == "req-42")
    assert suggest["method"] == "POST" and suggest["route"] == "/v1/suggest"
    assert suggest["status"] == 200 and isinstance(suggest["duration_ms"], float)
    by_route = {r["route"]: r for r in access}
    assert by_route["/v1/faqs/{faq_id}"]["status"] == 200
    assert by_route["/search"]["path"] == "/search"  # never the query string
    assert by_route["/v1/public/faqs/{slug}"]["status"] in (200, 404)
    assert any(r["path"] == "[redacted]" for r in access)  # the URL with the phone number
    assert any(r["status"] == 401 for r in access)
    everything = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    for secret in (key, cookie, "090-1234-5678", "eSIMが開通しない", "hanako@example.com"):
        assert secret not in everything


def test_redact_masks_keys_tokens_cookies_and_url_passwords() -> None:
    line = (
        "Authorization: Bearer fql_abcdefghijklmnop cookie=fql_v=Zm9vYmFy "
        "postgresql+psycopg://app:s3cr3t@db/faq token=abc123 key fql_XYZ123456"
    )
    out = redact(line)
    for secret in ("fql_abcdefghijklmnop", "Zm9vYmFy", "s3cr3t", "abc123", "fql_XYZ123456"):
        assert secret not in out
    assert "postgresql+psycopg://app:[redacted]@db/faq" in out
    assert redact("GET /v1/faqs 200") == "GET /v1/faqs 200"  # ordinary text is untouched


def test_json_formatter_writes_one_object_per_record_with_the_request_id() -> None:
    logger = logging.getLogger("faqloop.test")
    record = logger.makeRecord(
        "faqloop.test", logging.ERROR, __file__, 1, "failed with Bearer %s", ("fql_secret1",), None
    )
    record.request_id = "abc"
    RequestIdFilter().filter(record)
    body = json.loads(JsonFormatter().format(record))
    assert body["level"] == "ERROR" and body["request_id"] == "abc"
    assert body["message"] == "failed with Bearer [redacted]"
    assert body["ts"].endswith("+00:00")


def test_metrics_count_requests_by_route_template_and_status(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    for faq_id in (1, 2, 3):
        assert client.get(f"/v1/faqs/{faq_id}", headers=agent_headers).status_code == 200
    assert client.get("/v1/faqs/99999", headers=agent_headers).status_code == 404
    client.post("/v1/suggest", json={"text": "forgot my password"}, headers=agent_headers)
    client.get("/no/such/page")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = _samples(r.text)
    route = "/v1/faqs/{faq_id}"
    assert (
        _value(samples, "faqloop_http_requests_total", method="GET", route=route, status="200") == 3
    )
    assert (
        _value(samples, "faqloop_http_requests_total", method="GET", route=route, status="404") == 1
    )
    count = _value(
        samples,
        "faqloop_http_request_duration_seconds_count",
        method="GET",
        route=route,
        status="200",
    )
    assert count == 3
    inf = _value(
        samples,
        "faqloop_http_request_duration_seconds_bucket",
        method="GET",
        route=route,
        status="200",
        le="+Inf",
    )
    assert inf == 3
    # Unknown paths share one label instead of one series per path.
    assert (
        _value(
            samples, "faqloop_http_requests_total", method="GET", route="<unmatched>", status="404"
        )
        == 1
    )
    health = client.get("/healthz").json()["index"]
    assert _value(samples, "faqloop_index_generation") == health["generation"] >= 1
    assert _value(samples, "faqloop_index_entries") == health["entries"]
    assert _value(samples, "faqloop_index_ready") == 1
    assert _value(samples, "faqloop_db_up") == 1
    assert _value(samples, "faqloop_db_last_change_id") >= _value(
        samples, "faqloop_index_last_change_id"
    )


def test_embedding_batch_sizes_reach_the_histogram(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    def query_batches() -> tuple[float, float]:
        s = _samples(client.get("/metrics").text)
        return (
            _value(s, "faqloop_embedding_batch_size_count", kind="query"),
            _value(s, "faqloop_embedding_batch_size_sum", kind="query"),
        )

    before_n, before_sum = query_batches()
    r = client.post("/v1/suggest", json={"text": "forgot my password"}, headers=agent_headers)
    assert r.status_code == 200
    n, total = query_batches()
    assert n == before_n + 1 and total == before_sum + 1  # one post, one model call
    observe_batch_size(16, "query")  # the hook a batching embedder reports through
    n2, total2 = query_batches()
    assert n2 == n + 1 and total2 == total + 16
    s = _samples(client.get("/metrics").text)
    assert _value(s, "faqloop_embedding_batch_size_bucket", kind="query", le="16.0") >= 1


def test_metrics_stop_listening_when_the_app_stops(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    app = create_app(settings, embedder=embedder)
    with TestClient(app):
        pass
    registry = app.state.metrics.registry

    def total() -> float:
        value = registry.get_sample_value("faqloop_embedding_batch_size_sum", {"kind": "query"})
        return value or 0.0

    before = total()
    observe_batch_size(7, "query")
    assert total() == before


def test_unexpected_errors_are_json_with_the_request_id_and_a_logged_traceback(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(settings, embedder=embedder)

    @app.get("/v1/test-crash")
    def crash() -> None:
        raise RuntimeError("boom")

    @app.get("/v1/test-db-down")
    def db_down() -> None:
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))

    caplog.set_level(logging.ERROR)
    with TestClient(app) as client:
        r = client.get("/v1/test-crash", headers={"X-Request-ID": "crash-1"})
        assert r.status_code == 500
        assert r.json()["error"] == "internal_error" and "crash-1" in r.json()["detail"]
        assert r.headers["x-request-id"] == "crash-1"
        r = client.get("/v1/test-db-down")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["error"] == "database_unavailable"
    logged = _formatted(caplog.records)
    crash_log = next(r for r in logged if r.get("request_id") == "crash-1" and "exc" in r)
    assert "RuntimeError: boom" in str(crash_log["exc"])


@pytest.mark.slow
def test_faqloop_serve_writes_json_lines_without_secrets(
    tmp_path: Path, db_url: str, models_dir: Path, seeded: None, agent_headers: dict[str, str]
) -> None:
    env = serve_env(tmp_path / "data", db_url, models_dir, FAQLOOP_LOG_FORMAT="json")
    log_path = tmp_path / "serve.log"
    with serving(env, log_path) as (base, _):
        key = agent_headers["Authorization"].removeprefix("Bearer ")
        r = httpx.post(
            f"{base}/v1/suggest",
            json={"text": POST_TEXT},
            headers={**agent_headers, "X-Request-ID": "serve-req-1"},
            timeout=60,
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == "serve-req-1"
        httpx.get(f"{base}/search", params={"q": SEARCH_TEXT}, timeout=60)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [p for p in parsed if p["logger"] == "faqloop.access"]
    assert any(p.get("request_id") == "serve-req-1" and p["status"] == 200 for p in access)
    assert not any(p["logger"] == "uvicorn.access" for p in parsed)
    text = log_path.read_text()
    for secret in (key, "090-1234-5678", "eSIMが開通しない", "hanako@example.com"):
        assert secret not in text
