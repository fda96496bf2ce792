"""The `faqloop` command line: one root app; each feature registers its own commands.

The CLI calls the same services as the API, built from the same settings.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from typer.models import CommandInfo

from api.auth import cli as auth_cli
from api.capture import cli as capture_cli
from api.commands import fail, settings
from api.faqs import cli as faqs_cli
from api.health import cli as health_cli
from api.notify import cli as notify_cli
from api.ops import cli as ops_cli
from api.site import cli as site_cli
from api.suggest import cli as suggest_cli

app = typer.Typer(
    help="faqloop: FAQ suggestions for support replies, and the loop that improves the FAQ.",
    no_args_is_help=True,
    add_completion=False,
)
for feature in (
    auth_cli, ops_cli, faqs_cli, suggest_cli, capture_cli, site_cli, health_cli, notify_cli,
):  # fmt: skip
    feature.register(app)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default FAQLOOP_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default FAQLOOP_PORT.")] = None,
) -> None:
    """Serve the API and the FAQ site."""
    import uvicorn

    from api.app import create_app
    from api.web.observability import (
        configure_logging,
        refuse_insecure_secrets,
        warn_about_default_secrets,
    )
    from indexer.embedding.encoders import ModelNotFound, resolve_model_path

    s = settings()
    bind = host or s.host
    refusal = refuse_insecure_secrets(s, bind)
    if refusal:
        raise fail(refusal)
    try:
        resolve_model_path(s.embedding_model, s.models_dir)
    except ModelNotFound as exc:
        raise fail(str(exc)) from exc
    # JSON lines with request ids (FAQLOOP_LOG_FORMAT); uvicorn's access log is replaced
    # by ours, which leaves out client addresses, query strings and headers.
    configure_logging(s.log_level, s.log_format)
    warn_about_default_secrets(s)
    application = create_app(s, load_in_background=True, deliver_webhooks=True)
    uvicorn.run(
        application,
        host=bind,
        port=port or s.port,
        log_config=None,
        access_log=False,
        log_level=s.log_level.lower(),
        # Proxy headers are read by the app, from FAQLOOP_TRUSTED_PROXIES only
        # (api/web/proxies.py); uvicorn would believe them from loopback.
        proxy_headers=False,
        forwarded_allow_ips="",
    )


# `faqloop --help` lists commands in the order a new install uses them, whichever feature
# registers them; commands not named here follow in registration order.
HELP_ORDER = (
    "migrate", "load-content", "reindex", "suggest", "serve", "eval", "calibrate",
    "import-threads", "capture-sim", "prune-visitors", "suggest-file", "backup", "restore",
    "export-content", "health", "import-feedback",
)  # fmt: skip


def _help_rank(command: CommandInfo) -> int:
    name = command.name or (command.callback.__name__ if command.callback else "")
    return HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)


app.registered_commands.sort(key=_help_rank)


def main() -> None:
    """Entry point of the console script."""
    # OpenMP threads (torch, FAISS) spin while they wait for work by default; on shared CPUs
    # (replicas, other jobs) spinning threads starve the ones with work (docs/scale.md).
    # Must be set before torch or FAISS loads; OMP_WAIT_POLICY=ACTIVE in the environment wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app(prog_name="faqloop")


if __name__ == "__main__":
    main()
