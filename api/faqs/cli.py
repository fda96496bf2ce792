"""CLI commands of the FAQ content: load-content and reindex."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.commands import (
    domain_errors,
    load_services,
    session_factory_for,
    settings,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""

    @app.command("load-content")
    def load_content(
        directory: Annotated[
            Path | None, typer.Argument(help="Content folder (default FAQLOOP_CONTENT_DIR).")
        ] = None,
    ) -> None:
        """Load Markdown articles into the database (idempotent; all or nothing)."""
        from kb.db import session_scope
        from kb.faqs.content import read_content_dir
        from kb.faqs.entries import load_articles

        s = settings()
        with domain_errors():
            articles = read_content_dir(directory or s.content_dir)
            with session_scope(session_factory_for(s)) as session:
                summary = load_articles(session, articles, author="faq_content")
        typer.echo(
            f"{len(articles)} articles: {summary.created} created, {summary.revised} revised, "
            f"{summary.unchanged} unchanged"
        )

    @app.command()
    def reindex(
        if_needed: Annotated[
            bool,
            typer.Option(
                "--if-needed",
                help="Keep a valid saved index and only apply recent changes; rebuild otherwise.",
            ),
        ] = False,
        re_embed: Annotated[
            bool,
            typer.Option(
                "--re-embed",
                help="Embed every text again instead of taking unchanged texts' vectors "
                "from the saved index.",
            ),
        ] = False,
    ) -> None:
        """Rebuild the search index from the database and save it as a new generation.

        Texts the saved index holds (built with the same model and index recipe) keep their
        vectors, so only new or changed texts are embedded; --re-embed embeds them all."""
        s = settings()
        services = load_services(s)
        try:
            if if_needed:
                outcome = services.index.open(services.session_factory)
                info = services.index.describe()
                typer.echo(
                    f"index generation {info['generation']}: {info['entries']} entries, "
                    f"{info['texts']} texts, model {info['model']} ({outcome})"
                )
                return
            reused = 0 if re_embed else services.index.reuse_saved_vectors()
            manifest = services.index.rebuild(services.session_factory)
        finally:
            services.close()
        typer.echo(
            f"index generation {manifest.generation}: {manifest.entries} entries, "
            f"{manifest.docs} texts, model {manifest.model}"
            + (f" ({reused} vectors taken from the saved index)" if reused else "")
        )
