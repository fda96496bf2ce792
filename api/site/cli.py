"""CLI commands of the public site and its feedback data."""

from __future__ import annotations

from datetime import timedelta

import typer

from api.commands import (
    domain_errors,
    session_factory_for,
    settings,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""

    @app.command("prune-visitors")
    def prune_visitors() -> None:
        """Forget view de-duplication marks older than the view window (run daily)."""
        from kb.db import session_scope
        from kb.models import utcnow
        from kb.site.views import prune_visitors as prune

        s = settings()
        cutoff = utcnow() - timedelta(minutes=s.view_window_minutes)
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            removed = prune(session, older_than=cutoff)
        typer.echo(f"removed {removed} visitor marks older than {cutoff:%Y-%m-%d %H:%M} UTC")
