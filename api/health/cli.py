"""CLI commands of content health: `faqloop health` and `faqloop import-feedback`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from api.commands import (
    domain_errors,
    fail,
    load_services,
    session_factory_for,
    settings,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""

    @app.command("health")
    def health_cmd(
        top: Annotated[int, typer.Option(min=0, max=500, help="How many open flags to list.")] = 20,
        gaps: Annotated[
            bool,
            typer.Option(
                "--gaps/--no-gaps",
                help="Check content gaps (loads the search index to see what is covered).",
            ),
        ] = True,
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the summary as JSON here.")
        ] = None,
    ) -> None:
        """Recompute health scores and flags now (the server also does it periodically)."""
        from api.health.deps import build_health_kit
        from kb.errors import IndexNotReady
        from kb.health import flags

        s = settings()
        services = load_services(s)
        try:
            if gaps:
                try:
                    services.index.open(services.session_factory)
                except IndexNotReady as exc:
                    raise fail(exc.message) from exc
            kit = build_health_kit(services)
            with domain_errors():
                report = kit.recompute()
            with services.session_factory() as session:
                rows, total = flags.list_flags(session, limit=top)
                listed = [
                    {
                        "id": f.id,
                        "kind": f.kind.value,
                        "faq_id": f.entry_id,
                        "score": f.score,
                        "lang": f.language,
                        "rule": (f.evidence or {}).get("rule", ""),
                    }
                    for f in rows
                ]
        finally:
            services.close()
        summary: dict[str, Any] = report.as_dict()
        baseline = summary.get("baseline") or {}
        typer.echo(
            f"site: typical helpful ratio {baseline.get('helpful_typical', 0):.3f} "
            f"({baseline.get('helpful_articles', 0)} articles judged), typical acceptance "
            f"{baseline.get('acceptance_typical', 0):.3f}"
        )
        for what in ("created", "updated", "resolved", "quiet"):
            counts = summary[what]
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
            typer.echo(f"{what}: {detail}")
        if summary["skipped"]:
            typer.echo(f"not checked: {', '.join(summary['skipped'])}")
        typer.echo(f"{total} open flags by impact:")
        for f in listed:
            where = f"FAQ {f['faq_id']}" if f["faq_id"] else f"({f['lang']})"
            typer.echo(f"  #{f['id']:<5} {f['score']:>9.1f}  {f['kind']:<16} {where}  {f['rule']}")
        if json_out is not None:
            summary["flags"] = listed
            summary["open_total"] = total
            json_out.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")

    @app.command("import-feedback")
    def import_feedback(
        file: Annotated[
            Path,
            typer.Argument(
                help="CSV (header: slug,date,views,helpful,not_helpful) or JSONL, one row per "
                "article and day."
            ),
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="auto (by extension), csv or jsonl.")
        ] = "auto",
        report_path: Annotated[
            Path | None, typer.Option("--report", help="Also write the summary as JSON here.")
        ] = None,
    ) -> None:
        """Import daily views and votes from another help center into the current revisions.

        Idempotent per slug and date (a day imported again is replaced, not added). Bad rows
        are listed with their line numbers and skipped; good rows still land (exit code 2 if
        any row was rejected).
        """
        from zoneinfo import ZoneInfo

        from kb.db import session_scope
        from kb.health.feedback_import import import_feedback as run_import
        from kb.health.feedback_import import read_feedback
        from kb.models import utcnow

        if fmt not in ("auto", "csv", "jsonl"):
            raise fail("--format must be auto, csv or jsonl")
        s = settings()
        today = utcnow().astimezone(ZoneInfo(s.stats_timezone)).date()
        with domain_errors():
            items = read_feedback(file, fmt, today=today)  # type: ignore[arg-type]
            with session_scope(session_factory_for(s)) as session:
                report = run_import(session, items)
        typer.echo(
            f"{report.imported} days imported ({report.created} new, {report.updated} "
            f"replaced, {report.unchanged} unchanged); {len(report.rejected)} rows rejected"
        )
        for error in report.rejected:
            typer.echo(f"line {error.line}: {error.message}", err=True)
        if report_path is not None:
            body = {
                "file": str(file),
                "imported": report.imported,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "rejected": [{"line": e.line, "error": e.message} for e in report.rejected],
            }
            report_path.write_text(json.dumps(body, ensure_ascii=False, indent=2) + "\n")
        if report.rejected:
            raise fail(
                f"{len(report.rejected)} rows rejected (listed above); the other rows were imported"
            )
