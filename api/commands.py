"""What every `faqloop` command shares: settings, error exits, the database, the services."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from pydantic import ValidationError

from api.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from api.state import Services
from kb import errors


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings() -> Settings:
    """Settings from the environment, or a clear error."""
    try:
        s = Settings()
    except ValidationError as exc:
        raise fail(f"invalid configuration: {exc}") from exc
    logging.basicConfig(level=s.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # Libraries' own INFO chatter (FAISS loader, model loading, alembic plugins) is noise here.
    for name in ("faiss", "sentence_transformers", "alembic.runtime.plugins", "bm25s", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return s


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn domain errors into a message and exit code 2."""
    try:
        yield
    except errors.DomainError as exc:
        raise fail(exc.message) from exc


def session_factory_for(s: Settings) -> sessionmaker[Session]:
    """A session factory for the configured database (its data folder created)."""
    from kb.db import make_engine, make_session_factory

    s.data_dir.mkdir(parents=True, exist_ok=True)
    return make_session_factory(make_engine(s.db_url))


def load_services(s: Settings) -> Services:
    """Every service (database, model, index), or a clear error when the model is missing."""
    from api.state import build_services
    from indexer.embedding.encoders import ModelNotFound

    try:
        return build_services(s)
    except ModelNotFound as exc:
        raise fail(str(exc)) from exc


def redact_url(url: str) -> str:
    """The database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
