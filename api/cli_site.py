"""CLI commands of the public site and its feedback data."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""
