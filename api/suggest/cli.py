"""CLI commands of the agent reply drafts: suggestions for a whole file of posts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""

    @app.command("suggest-file")
    def suggest_file(
        file: Annotated[
            Path,
            typer.Argument(help="Posts as JSONL (one object a line) or CSV with a header."),
        ],
        output: Annotated[
            Path,
            typer.Option(
                "--output", "-o", help="JSONL results; ids already in it are skipped (resume)."
            ),
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="auto (by extension), jsonl or csv.")
        ] = "auto",
        channel: Annotated[
            str | None,
            typer.Option(help="Channel for posts without one (x, instagram, email, ...)."),
        ] = None,
    ) -> None:
        """Suggest a FAQ, triage and draft a reply for every post of a file.

        Fields: id (default: the line number), text, and optional lang, channel, k. Each
        result is one line of the output, written at once; re-running with the same output
        skips the posts already done, so an interrupted run resumes without repeating work.
        Posts that cannot be suggested get an error line (exit code 2 at the end).
        """
        from tqdm import tqdm

        from api.cli.main import _services, domain_errors, fail, settings
        from api.replies.deps import build_reply_kit
        from kb.db import session_scope
        from kb.errors import IndexNotReady
        from kb.replies.compose import suggest_with_reply
        from kb.suggest.file_batch import (
            PostRow,
            ResultWriter,
            assisted_record,
            done_ids,
            read_posts,
            run_batch,
        )

        if fmt not in ("auto", "jsonl", "csv"):
            raise fail("--format must be auto, jsonl or csv")
        s = settings()
        with domain_errors():
            rows = read_posts(file, fmt)  # type: ignore[arg-type]
        if output.resolve() == file.resolve():
            raise fail("the output must not be the input file")
        try:
            already = done_ids(output)
        except OSError as exc:
            raise fail(f"cannot read {output}: {exc}") from exc
        services = _services(s)
        try:
            services.index.open(services.session_factory)
            kit = build_reply_kit(services)
            policy = kit.suggest_policy()

            def process(row: PostRow) -> dict[str, Any]:
                with session_scope(services.session_factory) as session:
                    assisted = suggest_with_reply(
                        session,
                        services.index,
                        services.calibration,
                        policy,
                        kit.policy,
                        text=row.text,
                        lang=row.lang,
                        k=row.k,
                        channel=row.channel or channel,
                    )
                # Written only after the commit: a line in the output is a stored suggestion.
                return assisted_record(assisted)

            with (
                ResultWriter(output) as writer,
                tqdm(total=len(rows), desc="posts", unit="post", file=sys.stderr) as bar,
            ):
                summary = run_batch(
                    rows, already=already, process=process, writer=writer, progress=bar.update
                )
        except IndexNotReady as exc:
            raise fail(exc.message) from exc
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc}") from exc
        finally:
            services.close()
        typer.echo(
            f"{summary.total} posts: {summary.done} suggested, {summary.skipped} already in "
            f"{output.name}, {summary.failed} failed, {summary.duplicates} duplicate ids skipped"
        )
        for line, ident, message in summary.errors:
            typer.echo(f"line {line} (id {ident}): {message}", err=True)
        if summary.failed:
            raise fail(f"{summary.failed} posts failed (error lines written to {output})")
