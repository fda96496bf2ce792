"""CLI commands of the capture loop (threads → phrasings, evidence and drafts)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""
