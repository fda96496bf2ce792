"""Request limits: body size (413), per-key suggest rate (429 + Retry-After), timeouts (504).

All three are plain ASGI middleware, so they apply before any route code runs and answer
with the API's JSON error body `{"error", "detail"}`. `document_limits` adds the statuses
they (and the other app-wide handlers) can produce to the OpenAPI schema, so clients and
the schema-driven fuzz test see an honest contract.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from api.web.ratelimit import RateLimiter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    """Send a complete JSON response."""
    payload = json.dumps(body, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


# Paths whose POSTs count against the per-key suggest limit.
SUGGEST_PREFIX = "/v1/suggest"
BATCH_PATH = "/v1/suggest/batch"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


# ----------------------------------------------------------------------------- body size


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than `max_bytes` with 413, before the app reads them.

    A declared Content-Length over the limit is refused at once; a chunked body is read up
    to the limit and refused as soon as it passes it. Accepted bodies are handed to the app
    unchanged.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send: Send) -> None:
        await send_json(
            send,
            413,
            {
                "error": "payload_too_large",
                "detail": f"the request body is larger than {self.max_bytes} bytes",
            },
            {"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await send_json(
                    send,
                    400,
                    {"error": "invalid_request", "detail": "invalid Content-Length header"},
                    {"Connection": "close"},
                )
                return
            if length > self.max_bytes:
                await self._too_large(send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# ------------------------------------------------------------------------ rate per key


def _bearer_token(scope: Scope) -> str | None:
    value = _header(scope, b"authorization") or ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a `receive` that hands it to the app again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _batch_size(body: bytes) -> int:
    try:
        posts = json.loads(body).get("posts")
    except (ValueError, AttributeError):
        return 1  # the app answers the bad body
    return len(posts) if isinstance(posts, list) and posts else 1


class SuggestRateLimitMiddleware:
    """Limit POSTs under /v1/suggest per API key; over the limit: 429 with Retry-After.

    The bucket is keyed by the SHA-256 of the presented key (what the database stores), so
    no secret is kept in memory. Requests without a key pass through to get their 401.
    """

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).startswith(SUGGEST_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        key = hashlib.sha256(token.encode()).hexdigest()
        cost = 1
        if scope.get("path") == BATCH_PATH:
            # A batch costs one token per post, so batching is no way around the limit.
            body, receive = await _read_body(receive)
            cost = _batch_size(body)
        seconds = self.limiter.hit(key, cost)
        if seconds:
            await send_json(
                send,
                429,
                {
                    "error": "rate_limited",
                    "detail": f"too many suggest requests for this API key; retry in {seconds} s",
                },
                {"Retry-After": str(seconds)},
            )
            return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------ timeout


class TimeoutMiddleware:
    """Answer 504 when a request has not started its response within `seconds`.

    The handler is not killed (a thread cannot be): its eventual response is discarded and
    it finishes in the background, so a write it was making may still complete. A response
    that has started streaming is never cut.
    """

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds
        self._abandoned: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.seconds)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done or started:
            await task
            return
        timed_out = True
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)
        await send_json(
            send,
            504,
            {
                "error": "timeout",
                "detail": f"the request took longer than {self.seconds:g} s and was abandoned; "
                "a write it made may still complete",
            },
            {},
        )

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn about it


# ---------------------------------------------------------------------------- OpenAPI

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_ERROR_BODY_SCHEMA = {
    "title": "ErrorBody",
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {}},
    "required": ["error"],
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}


_VALIDATION_ERROR = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}


def document_limits(app: FastAPI) -> None:
    """Declare the app-wide error answers in the OpenAPI schema of every operation.

    Added where they can happen: 400 on operations with parameters or a body (a value out
    of range, invalid JSON), 413 on operations with a body, 401/403 on operations that need
    a key, 429 on suggest, 422 (unknown query parameter), 503 (database unavailable) and
    504 (timeout) on every JSON API operation.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ErrorBody", _ERROR_BODY_SCHEMA)
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                responses: dict[str, Any] = op["responses"]
                add = responses.setdefault
                if "requestBody" in op or op.get("parameters"):
                    add("400", _error("Invalid input (a value out of range, invalid JSON)."))
                if "requestBody" in op:
                    add("413", _error("The request body is too large."))
                if op.get("security"):
                    add("401", _error("Missing, invalid or revoked API key."))
                    add("403", _error("The key's role is too low for this operation."))
                if method == "post" and path.startswith(SUGGEST_PREFIX):
                    add("429", _error("Too many suggest requests for this key.", _RETRY_AFTER))
                if path.startswith("/v1") and "HTTPValidationError" in components:
                    add("422", _VALIDATION_ERROR)
                if path.startswith("/v1") or path in ("/healthz", "/metrics"):
                    add("503", _error("The database or the index is unavailable.", _RETRY_AFTER))
                    add("504", _error("The request timed out."))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# ---------------------------------------------------------------- unknown query params

_CACHE_ATTR = "_faqloop_query_names"


def _collect_query_names(dependant: Any) -> set[str] | None:
    names: set[str] = set()
    stack, seen = [dependant], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for field in current.query_params:
            annotation = getattr(field, "type_", None) or getattr(
                field.field_info, "annotation", None
            )
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                return None  # a query-parameter model: its fields are not listed here
            names.add(field.alias)
        stack.extend(current.dependencies)
    return names


def _query_names(route: Any) -> frozenset[str] | None:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    cached = getattr(route, _CACHE_ATTR, None)
    if cached is None:
        collected = _collect_query_names(dependant)
        cached = (frozenset(collected) if collected is not None else None,)
        setattr(route, _CACHE_ATTR, cached)  # routes are not hashable; keep it on the route
    names: frozenset[str] | None = cached[0]
    return names


async def reject_unknown_query_parameters(request: Request) -> None:
    """422 for query parameters a JSON API operation does not define (typos fail loudly).

    The public site's pages are exempt: links carry tracking parameters (utm_*) there.
    `async` though it never awaits: it runs for every request, and FastAPI runs a plain
    `def` dependency in the thread pool, one more trip there and back (a profile of the
    server at 32 clients put that trip at ~7 % of the GIL's time; docs/scale.md).
    """
    if not request.url.path.startswith("/v1"):
        return
    allowed = _query_names(request.scope.get("route"))
    if allowed is None:
        return
    unknown = sorted({k for k in request.query_params if k not in allowed})
    if unknown:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": "unknown query parameter",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )
