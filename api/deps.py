"""Typed dependencies: services, one session per request, API-key roles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from api.state import Services
from kb.keys import authenticate
from kb.models import ApiKey, Role


def get_services(request: Request) -> Services:
    """The process's services, created by the lifespan."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One session per request; handlers that write commit explicitly, the rest roll back."""
    session = services.session_factory()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(role: Role) -> Callable[..., ApiKey]:
    """A dependency that admits keys of `role` or higher."""

    def dependency(
        session: SessionDep,
        authorization: Annotated[str | None, Header()] = None,
    ) -> ApiKey:
        return authenticate(session, _bearer(authorization), needs=role)

    return dependency


AgentKey = Annotated[ApiKey, Depends(require(Role.agent))]
EditorKey = Annotated[ApiKey, Depends(require(Role.editor))]
