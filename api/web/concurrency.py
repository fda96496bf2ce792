"""Optimistic concurrency at the edge: entity tags, `If-Match`, and lost races as 409.

An article's version is its current revision number. `GET /v1/faqs/{id}` sends it as a
strong `ETag: "<version>"`; writes that accept `If-Match` compare it with the version they
find after locking the row and answer 412 when it is stale (docs/api.md).

A write that loses a race the domain could not foresee (a unique key taken between the
check and the insert, a serialization failure or deadlock on PostgreSQL) answers 409 with
a message to retry, from the handlers installed here for the whole app, never 500.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, OperationalError

from kb.errors import InvalidInput

# One entity tag: strong "3", weak W/"3", or (leniently) a bare 3.
_TAG_RE = re.compile(r'\A(W/)?"([^"]*)"\Z|\A([0-9]+)\Z')
# PostgreSQL's serialization_failure and deadlock_detected: the transaction lost a race.
_RACE_SQLSTATES = frozenset({"40001", "40P01"})

RETRY = "it conflicts with a change made at the same time; reload and try again"


def etag(version: int) -> str:
    """The `ETag` header value of a version."""
    return f'"{version}"'


def if_match_version(value: str | None) -> int | None:
    """The version an `If-Match` header asks for; None when absent or `*` (any version).

    A weak tag (`W/"3"`) or one that is not a version never matches (strong comparison, as
    HTTP prescribes for If-Match): it yields -1, which no article has, hence 412. Several
    tags, or text that is not an entity tag, are InvalidInput.
    """
    if value is None or value.strip() in ("", "*"):
        return None
    tags = [t.strip() for t in value.split(",") if t.strip()]
    if len(tags) != 1:
        raise InvalidInput('send one entity tag in If-Match, as sent in ETag (e.g. If-Match: "3")')
    found = _TAG_RE.match(tags[0])
    if found is None:
        raise InvalidInput(f'If-Match must be an entity tag such as "3", not {tags[0][:40]!r}')
    weak, quoted, bare = found.groups()
    text = bare if bare is not None else quoted
    if weak or not text.isdigit() or len(text) > 12:
        return -1
    return int(text)


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=200,
        description='The version read from `ETag` (e.g. `"3"`); 412 when it is no longer current.',
    ),
]


def _conflict(request: Request) -> Response:
    if request.url.path.startswith("/v1"):
        return JSONResponse({"error": "conflict", "detail": RETRY}, status_code=409)
    return Response(f"409 Conflict: {RETRY}", status_code=409, media_type="text/plain")


def install_conflict_handlers(app: FastAPI) -> None:
    """Answer a lost race (unique key, serialization failure, deadlock) with 409."""

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> Response:
        return _conflict(request)

    @app.exception_handler(OperationalError)
    async def operational_error(request: Request, exc: OperationalError) -> Response:
        if getattr(exc.orig, "sqlstate", None) in _RACE_SQLSTATES:
            return _conflict(request)
        raise exc  # an outage: the observability middleware answers 503
