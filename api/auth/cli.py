"""CLI commands of API keys: keys create, list and revoke."""

from __future__ import annotations

from typing import Annotated

import typer

from api.commands import (
    domain_errors,
    session_factory_for,
    settings,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""
    keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @keys_app.command("create")
    def keys_create(
        role: Annotated[str, typer.Option(help="agent, editor or admin.")],
        name: Annotated[str, typer.Option(help="Who or what uses the key.")] = "",
    ) -> None:
        """Create a key and print it once, as the only line on stdout."""
        from kb.auth.keys import create_key
        from kb.db import session_scope

        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            key, secret = create_key(session, role=role, name=name)
            key_id = key.id
        typer.echo(secret)
        typer.echo(f"created key {key_id} ({role}); it is shown only this once", err=True)

    @keys_app.command("list")
    def keys_list() -> None:
        """List keys (never the secrets)."""
        from kb.auth.keys import list_keys
        from kb.db import session_scope

        s = settings()
        with session_scope(session_factory_for(s)) as session:
            for key in list_keys(session):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                typer.echo(f"{key.id}\t{key.role.value}\t{key.prefix}…\t{state}\t{key.name}")

    @keys_app.command("revoke")
    def keys_revoke(
        key_id: Annotated[int, typer.Argument(help="The key's id (see keys list).")],
    ) -> None:
        """Revoke a key; it stops working at once."""
        from kb.auth.keys import revoke_key
        from kb.db import session_scope

        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            revoke_key(session, key_id)
        typer.echo(f"revoked key {key_id}")
