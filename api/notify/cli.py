"""CLI commands of outgoing webhooks: `faqloop webhooks list` and `webhooks deliver`."""

from __future__ import annotations

import typer

from api.commands import domain_errors, fail, session_factory_for, settings


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""
    hooks_app = typer.Typer(help="Outgoing webhooks.", no_args_is_help=True)
    app.add_typer(hooks_app, name="webhooks")

    @hooks_app.command("list")
    def hooks_list() -> None:
        """List webhooks (never their secrets): id, events, threshold, URL."""
        from kb.db import session_scope
        from kb.notify.webhooks import list_webhooks

        with session_scope(session_factory_for(settings())) as session:
            for hook in list_webhooks(session):
                state = "active" if hook.active else "inactive"
                events = ",".join(hook.events)
                typer.echo(f"{hook.id}\t{state}\t{events}\t{hook.min_demand}\t{hook.url}")

    @hooks_app.command("deliver")
    def hooks_deliver() -> None:
        """Send every due delivery once (what the worker of `faqloop serve` does on each
        pass); failures are retried on a later pass after their backoff. Exits 1 when a
        delivery failed for good in this pass."""
        from sqlalchemy.exc import SQLAlchemyError

        from api.notify.worker import policy_of
        from kb.notify.delivery import deliver_due

        s = settings()
        try:
            with domain_errors():
                report = deliver_due(session_factory_for(s), policy_of(s))
        except SQLAlchemyError as exc:
            raise fail(f"database: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        typer.echo(
            f"delivered {report.delivered}, to retry {report.retrying}, failed {report.failed}",
            err=True,
        )
        if report.failed:
            raise typer.Exit(1)
