"""Request ids, structured JSON logs without secrets, and Prometheus metrics.

Every HTTP request gets an id (the client's `X-Request-ID` when it is a sane token, else a
new one), returned in the `X-Request-ID` header and attached to every log record written
while the request runs. One access-log record per request carries the method, the route
template, the status and the duration; never the query string, headers, cookies, bodies or
client addresses, which is where API keys, visitor cookies, post texts and search words
would be. Messages of every logger pass through `redact` as a second line of defence.

Metrics live in a registry per app (so tests can build many apps) and are served as the
Prometheus text format at `/metrics`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.settings import Settings
from api.web.limits import ASGIApp, Message, Receive, Scope, Send, send_json
from indexer.embedding.telemetry import add_batch_observer

REQUEST_ID_HEADER = "X-Request-ID"
ACCESS_LOGGER = "faqloop.access"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Paths are logged only when they look like ours (slugs, ids); anything else a client typed
# into a URL (Japanese text, an e-mail address) is not written down.
_LOGGABLE_PATH_RE = re.compile(r"^[A-Za-z0-9/_.~-]{0,200}$")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)

_request_id: ContextVar[str | None] = ContextVar("faqloop_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served by this task or thread, if any."""
    return _request_id.get()


# ---------------------------------------------------------------------------- redaction

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;\"']+"), r"\1 [redacted]"),
    (re.compile(r"\bfql_[A-Za-z0-9_-]{4,}"), "fql_[redacted]"),
    # user:password@ in database URLs
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@"), r"\1[redacted]@"),
    (
        re.compile(
            r"(?i)\b(authorization|cookie|set-cookie|fql_v|x-csrf-token|csrf_token|api[_-]?key"
            r"|password|secret|token)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,]+)"
        ),
        r"\1\2[redacted]",
    ),
)


# What database errors add to their messages: the statement, its parameters (post and answer
# texts) and PostgreSQL's DETAIL line, which quotes the conflicting values.
_SQL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\[parameters: .*?\](?=\s*(?:\(Background on this error|$))", re.DOTALL),
        "[parameters: hidden]",
    ),
    (
        re.compile(
            r"\[SQL: .*?\](?=\s*(?:\[parameters|\[SQL parameters|\(Background on this error|$))",
            re.DOTALL,
        ),
        "[SQL: hidden]",
    ),
    (re.compile(r"(?m)^(\s*)(DETAIL|HINT|CONTEXT|WHERE):[^\n]*"), r"\1\2: [hidden]"),
)


def redact(text: str) -> str:
    """`text` with API keys, bearer tokens, cookies, URL passwords and the SQL, parameters
    and value-quoting details of database errors masked."""
    for pattern, replacement in _SQL_PATTERNS:
        text = pattern.sub(replacement, text)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_base_record_factory = logging.getLogRecordFactory()


def _redacting_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Make a record whose message and traceback text are already redacted, so every
    handler (ours, pytest's, a library's) writes only the redacted form."""
    record = _base_record_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it for logging to report
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
    return record


def install_log_redaction() -> None:
    """Redact every log record of the process at creation (idempotent)."""
    if logging.getLogRecordFactory() is not _redacting_record_factory:
        logging.setLogRecordFactory(_redacting_record_factory)


# ------------------------------------------------------------------------------ logging

_ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms", "error")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record written while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            body["request_id"] = request_id
        for name in _ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                body[name] = value
        if record.exc_info:
            body["exc"] = redact(record.exc_text or self.formatException(record.exc_info))
        return json.dumps(body, ensure_ascii=False, default=str)


class RedactingTextFormatter(logging.Formatter):
    """The plain text format, with the same redaction as the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str, fmt: str) -> None:
    """Send every logger's records to stderr as JSON lines (`fmt` "json") or as text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            RedactingTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    install_log_redaction()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own access log writes the client address and the full URL with its query
    # string (search words); ours replaces it.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


# ------------------------------------------------------------------------------ metrics


class _IndexCollector(Collector):
    """Index generation and counts, read from the app's services at scrape time."""

    def __init__(self, services: Callable[[], Any]) -> None:
        self._services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        services = self._services()
        if services is None:
            return
        info = services.index.describe()
        for name, key, help_text in (
            ("faqloop_index_generation", "generation", "Generation of the live search index."),
            ("faqloop_index_entries", "entries", "Entries in the live search index."),
            ("faqloop_index_texts", "texts", "Indexed texts (titles, phrasings, passages)."),
            (
                "faqloop_index_last_change_id",
                "last_change_id",
                "Last entry_change id applied to the live index.",
            ),
        ):
            yield GaugeMetricFamily(name, help_text, value=float(info.get(key) or 0))
        yield GaugeMetricFamily(
            "faqloop_index_ready",
            "1 when the search index is loaded and serving.",
            value=1.0 if info.get("ready") else 0.0,
        )
        # The database's newest change: the index lags by the difference.
        up, last = 1.0, 0.0
        try:
            from kb.models import EntryChange

            with services.session_factory() as session:
                last = float(session.scalar(select(func.max(EntryChange.id))) or 0)
        except Exception:
            up = 0.0
        yield GaugeMetricFamily(
            "faqloop_db_up", "1 when the database answered the last scrape.", value=up
        )
        yield GaugeMetricFamily(
            "faqloop_db_last_change_id", "Newest entry_change id in the database.", value=last
        )


class Metrics:
    """The Prometheus metrics of one app."""

    def __init__(self, services: Callable[[], Any]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "faqloop_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "faqloop_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "faqloop_embedding_batch_size",
            "Texts per embedding model call (query: posts, batched under load; "
            "passage: indexed texts).",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_IndexCollector(services))
        self._remove_observer: Callable[[], None] | None = None

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_batch_size(self, size: int, kind: str = "query") -> None:
        """Record one embedding model call of `size` texts."""
        self.batch_size.labels(kind).observe(size)

    def start(self) -> None:
        """Listen to embedding batch sizes (called by the app's lifespan)."""
        if self._remove_observer is None:
            self._remove_observer = add_batch_observer(self.observe_batch_size)

    def stop(self) -> None:
        """Stop listening to embedding batch sizes."""
        if self._remove_observer is not None:
            self._remove_observer()
            self._remove_observer = None

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


# ---------------------------------------------------------------------------- middleware


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/v1/faqs/{faq_id}`), or "<unmatched>"."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "<unmatched>"


def _access_level(status: int) -> int:
    # 503/504 are expected answers (index loading, database busy, timeout): a warning.
    if status >= 500:
        return logging.WARNING if status in (503, 504) else logging.ERROR
    return logging.INFO


def _loggable_path(path: str) -> str:
    return path if _LOGGABLE_PATH_RE.match(path) else "[redacted]"


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def looks_like_secret(text: str) -> bool:
    """Whether a token could be an API key or another random secret (not to be echoed or
    logged): an `fql_` key, a long mixed-case token, or a long run of hex or base64."""
    if "fql_" in text.lower():
        return True
    if _UUID_RE.match(text):
        return False
    core = re.sub(r"[._:-]", "", text)
    mixed = re.search(r"[A-Z]", core) and re.search(r"[a-z]", core) and re.search(r"[0-9]", core)
    return bool(mixed and len(core) >= 20) or re.search(r"[A-Za-z0-9]{40,}", text) is not None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if not _REQUEST_ID_RE.match(text) or looks_like_secret(text):
                return None
            return text
    return None


def _is_database_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class ObservabilityMiddleware:
    """Request id, access log, request metrics, and JSON answers for unexpected errors.

    An error nobody handled becomes a logged traceback and a JSON 500 (or a 503 with
    `Retry-After` when the database is unreachable or locked for too long), with the
    request id in the header so a report can be matched to the log.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)
        status = 500
        started = False
        error: str | None = None
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        begin = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            error = type(exc).__name__
            outage = _is_database_outage(exc)
            log.error(
                "unhandled %s while serving the request",
                error,
                exc_info=True,
                extra={"request_id": request_id},
            )
            if not started:
                status = 503 if outage else 500
                body = (
                    {
                        "error": "database_unavailable",
                        "detail": "the database is unavailable; retry shortly",
                    }
                    if outage
                    else {
                        "error": "internal_error",
                        "detail": "an unexpected error occurred; "
                        f"quote request id {request_id} when reporting it",
                    }
                )
                extra = {"Retry-After": "5"} if outage else {}
                await send_json(send, status, body, {REQUEST_ID_HEADER: request_id, **extra})
        finally:
            seconds = time.perf_counter() - begin
            route = route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe_request(method, route, status, seconds)
            access_log.log(
                _access_level(status),
                "request",
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": _loggable_path(str(scope.get("path", ""))),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "error": error,
                },
            )
            _request_id.reset(token)


# ------------------------------------------------------------------------------ wiring


def install(app: FastAPI, settings: Settings) -> Metrics:
    """Add the limits, the observability middleware and `/metrics` to `app`.

    Order, outermost first: trusted proxies (client address and scheme), request id +
    access log + metrics (so every answer, the limits' own included, is counted and
    logged), timeout, body size, per-key suggest rate.
    """
    from api.web.apidocs import install_api_docs
    from api.web.limits import (
        BodySizeLimitMiddleware,
        SuggestRateLimitMiddleware,
        TimeoutMiddleware,
        document_limits,
    )
    from api.web.proxies import TrustedProxies, TrustedProxyMiddleware, parse_proxies
    from api.web.ratelimit import RateLimiter, limit_storage

    install_log_redaction()
    metrics = Metrics(lambda: getattr(app.state, "services", None))
    app.state.metrics = metrics
    if settings.suggest_rate_limit > 0:
        limiter = RateLimiter(
            "suggest",
            settings.suggest_rate_limit,
            settings.suggest_rate_window,
            storage=limit_storage(settings),
        )
        app.add_middleware(SuggestRateLimitMiddleware, limiter=limiter)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(TimeoutMiddleware, seconds=settings.request_timeout)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    # Outermost: the client's address and scheme as trusted proxies report them.
    proxies = TrustedProxies(parse_proxies(settings.trusted_proxies))
    app.add_middleware(TrustedProxyMiddleware, proxies=proxies)

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    def prometheus_metrics() -> Response:
        """Request counts and latencies by route and status, index generation, batch sizes."""
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    document_limits(app)
    install_api_docs(app)
    return metrics


MIN_SECRET_BYTES = 32


def secret_settings() -> list[str]:
    """Names of every secret setting (every field named *_secret)."""
    return [name for name in Settings.model_fields if name.endswith("_secret")]


def weak_secrets(settings: Settings) -> list[str]:
    """Secrets at their development default or shorter than MIN_SECRET_BYTES (UTF-8)."""
    return [
        name
        for name in secret_settings()
        if getattr(settings, name) == Settings.model_fields[name].default
        or len(str(getattr(settings, name)).encode()) < MIN_SECRET_BYTES
    ]


def is_loopback(host: str) -> bool:
    """True for an address (or `localhost`) that only this machine can reach."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_insecure_secrets(settings: Settings, host: str) -> str | None:
    """Why serving on `host` with these secrets is refused, or None when it may go ahead.

    Binding beyond loopback needs every secret set, at least MIN_SECRET_BYTES long, unless
    FAQLOOP_ALLOW_INSECURE_SECRETS is true (demos).
    """
    weak = weak_secrets(settings)
    if not weak or is_loopback(host) or settings.allow_insecure_secrets:
        return None
    names = ", ".join(f"FAQLOOP_{name.upper()}" for name in weak)
    return (
        f"refusing to serve on {host}: {names} is a development default or shorter than "
        f'{MIN_SECRET_BYTES} bytes. Set a long random value (e.g. `python -c "import secrets; '
        f'print(secrets.token_urlsafe(48))"`), or FAQLOOP_ALLOW_INSECURE_SECRETS=true for a demo'
    )


def warn_about_default_secrets(settings: Settings) -> list[str]:
    """Log a warning for each secret still at its development default; returns their names."""
    defaults = [
        name
        for name in secret_settings()
        if getattr(settings, name) == Settings.model_fields[name].default
    ]
    for name in defaults:
        log.warning(
            "FAQLOOP_%s is the development default: set a long random value in production",
            name.upper(),
        )
    return defaults
