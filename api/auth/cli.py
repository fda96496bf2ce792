"""CLI commands of API keys (keys create, list, revoke) and editor accounts (users create,
list, disable, enable, password)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from api.commands import (
    domain_errors,
    fail,
    session_factory_for,
    settings,
)
from kb.audit import Actor


def cli_actor() -> Actor:
    """Who the audit trail names for a change made from the command line."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Actor(f"faqloop CLI ({who})", "system")


def read_password_stdin() -> str:
    """The password on stdin: its first line, without the line break."""
    if sys.stdin is None:
        raise fail("--password-stdin: nothing on standard input")
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise fail("--password-stdin: standard input holds no password")
    return password


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
        from kb.audit import record_action
        from kb.auth.keys import create_key
        from kb.db import session_scope

        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            key, secret = create_key(session, role=role, name=name)
            key_id = key.id
            record_action(
                session,
                actor=cli_actor(),
                action="key.create",
                target=f"key:{key.id}",
                after={"name": key.name, "role": key.role.value, "prefix": key.prefix},
            )
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
        from kb.audit import record_action
        from kb.auth.keys import revoke_key
        from kb.db import session_scope

        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            key = revoke_key(session, key_id)
            record_action(
                session,
                actor=cli_actor(),
                action="key.revoke",
                target=f"key:{key.id}",
                after={"name": key.name, "role": key.role.value, "prefix": key.prefix},
            )
        typer.echo(f"revoked key {key_id}")

    register_users(app)


def register_users(app: typer.Typer) -> None:
    """Add the `users` commands to the `faqloop` app."""
    users_app = typer.Typer(help="Manage editor accounts.", no_args_is_help=True)
    app.add_typer(users_app, name="users")

    @users_app.command("create")
    def users_create(
        email: Annotated[str, typer.Option(help="Sign-in address (unique, any case).")],
        name: Annotated[str, typer.Option(help="Display name recorded with changes.")],
        role: Annotated[str, typer.Option(help="editor or admin.")] = "editor",
        password_stdin: Annotated[
            bool,
            typer.Option(
                "--password-stdin",
                help="Read the password from the first line of standard input (required: "
                "a password is never given as an argument).",
            ),
        ] = False,
    ) -> None:
        """Create an account that signs in to /review with email and password."""
        from kb.auth.users import create_user
        from kb.db import session_scope

        if not password_stdin:
            raise fail("give the password on standard input with --password-stdin")
        password = read_password_stdin()
        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            user = create_user(
                session, email=email, name=name, role=role, password=password, actor=cli_actor()
            )
            summary = f"created {user.role.value} {user.email} ({user.name})"
        typer.echo(summary)

    @users_app.command("list")
    def users_list() -> None:
        """List accounts: email, role, state, last sign-in, name (tab-separated)."""
        from kb.auth.users import list_users
        from kb.db import session_scope

        s = settings()
        with session_scope(session_factory_for(s)) as session:
            for user in list_users(session):
                state = "active" if user.active else "disabled"
                last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
                typer.echo(f"{user.email}\t{user.role.value}\t{state}\t{last}\t{user.name}")

    @users_app.command("disable")
    def users_disable(
        email: Annotated[str, typer.Argument(help="The account's email.")],
    ) -> None:
        """Disable an account: its sessions end at once and it can no longer sign in."""
        from kb.auth.users import set_active
        from kb.db import session_scope

        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            user = set_active(session, email, False, actor=cli_actor())
            address = user.email
        typer.echo(f"disabled {address}")

    @users_app.command("enable")
    def users_enable(
        email: Annotated[str, typer.Argument(help="The account's email.")],
    ) -> None:
        """Enable a disabled account again."""
        from kb.auth.users import set_active
        from kb.db import session_scope

        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            user = set_active(session, email, True, actor=cli_actor())
            address = user.email
        typer.echo(f"enabled {address}")

    @users_app.command("password")
    def users_password(
        email: Annotated[str, typer.Argument(help="The account's email.")],
        password_stdin: Annotated[
            bool,
            typer.Option("--password-stdin", help="Read the new password from standard input."),
        ] = False,
    ) -> None:
        """Set a new password; the account's sessions end."""
        from kb.auth.users import set_password
        from kb.db import session_scope

        if not password_stdin:
            raise fail("give the password on standard input with --password-stdin")
        password = read_password_stdin()
        s = settings()
        with domain_errors(), session_scope(session_factory_for(s)) as session:
            user = set_password(session, email, password, actor=cli_actor())
            address = user.email
        typer.echo(f"new password set for {address}; its sessions ended")
