"""Typed dependencies: services, one session per request, API-key roles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.state import Services
from kb.auth.keys import authenticate
from kb.errors import Unauthorized
from kb.models import ApiKey, Role

# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, one hop (and a GIL hand-over) each, which under load cost more than the work.


def services_of(request: Request) -> Services:
    """The process's services, created by the lifespan."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """The process's services (a dependency)."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    """One session per request; handlers that write commit explicitly, the rest roll back.

    Creating a session opens no connection (the handler's first query does, in the handler's
    thread); closing one whose handler committed only hands its connection back."""
    session = services.session_factory()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


# Declares the bearer scheme in the OpenAPI schema (the docs' "Authorize" button); missing or
# malformed headers reach `authenticate`, which answers 401 in the API's error format.
_BEARER = HTTPBearer(auto_error=False, description="An API key from `faqloop keys create`.")


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> str:
    """The bearer token as sent; 401 when there is none (no I/O: the key itself is checked
    by `authenticate_request`). Dependencies run before the body is validated, so a request
    without a key is refused as such, whatever its body."""
    token = credentials.credentials.strip() if credentials else ""
    if not token:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return token


BearerToken = Annotated[str, Depends(bearer_token)]


def authenticate_request(session: Session, token: str, role: Role) -> ApiKey:
    """Check the request's key in the handler's own thread (see `require`)."""
    key = authenticate(session, token, needs=role)
    # End the read-only transaction of the lookup, so the request does not hold a pooled
    # connection while it waits for the model (micro-batched suggest requests would
    # otherwise be capped by the pool size, and a second session opened by the handler
    # could wait on a pool its own request helped exhaust). Loaded attributes are kept.
    session.commit()
    return key


def require(role: Role) -> Callable[..., ApiKey]:
    """A dependency that admits keys of `role` or higher."""

    def dependency(session: SessionDep, token: BearerToken) -> ApiKey:
        return authenticate_request(session, token, role)

    return dependency


AgentKey = Annotated[ApiKey, Depends(require(Role.agent))]
EditorKey = Annotated[ApiKey, Depends(require(Role.editor))]
