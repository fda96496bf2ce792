"""Typed dependencies: services, one session per request, API-key roles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.state import Services
from kb.keys import authenticate
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


def require(role: Role) -> Callable[..., ApiKey]:
    """A dependency that admits keys of `role` or higher."""

    def dependency(
        session: SessionDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
    ) -> ApiKey:
        token = credentials.credentials.strip() if credentials else None
        key = authenticate(session, token or None, needs=role)
        # End the read-only transaction of the lookup, so the request does not hold a pooled
        # connection while it waits for the model (micro-batched suggest requests would
        # otherwise be capped by the pool size, and a second session opened by the handler
        # could wait on a pool its own request helped exhaust). Loaded attributes are kept.
        session.commit()
        return key

    return dependency


AgentKey = Annotated[ApiKey, Depends(require(Role.agent))]
EditorKey = Annotated[ApiKey, Depends(require(Role.editor))]
