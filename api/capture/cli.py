"""CLI commands of the capture loop (threads → phrasings, evidence and drafts)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.commands import (
    domain_errors,
    fail,
    load_services,
    settings,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from kb.capture.ingest import Capture, IngestReport
    from kb.capture.thread_files import RowError, ThreadRow


def _ingest_batch(
    factory: sessionmaker[Session],
    capture: Capture,
    batch: list[ThreadRow],
    rejected: list[RowError],
    progress: Any,
) -> IngestReport:
    """Ingest a batch in one transaction; if it fails, each thread on its own."""
    from sqlalchemy.exc import SQLAlchemyError

    from kb.capture.ingest import IngestReport, ingest_threads
    from kb.capture.thread_files import RowError
    from kb.errors import DomainError, IndexNotReady

    session = factory()
    try:
        report = ingest_threads(
            session, capture, [r.thread for r in batch], strict=False, progress=progress
        )
        session.commit()
        for position, message in report.rejected:
            rejected.extend(RowError(line, message) for line in batch[position].lines)
        return report
    except IndexNotReady:
        raise
    except (DomainError, SQLAlchemyError):
        session.rollback()
    finally:
        session.close()
    # One thread broke the batch: retry one by one so it alone is rejected.
    total = IngestReport()
    for row in batch:
        session = factory()
        try:
            one = ingest_threads(session, capture, [row.thread])
            session.commit()
        except (DomainError, SQLAlchemyError) as exc:
            session.rollback()
            message = exc.message if isinstance(exc, DomainError) else type(exc).__name__
            rejected.extend(RowError(line, message) for line in row.lines)
            continue
        finally:
            session.close()
        total.outcomes.extend(one.outcomes)
        total.touched_entries |= one.touched_entries
        total.new_drafts |= one.new_drafts
        total.touched_drafts |= one.touched_drafts
    return total


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `faqloop` app."""

    @app.command("import-threads")
    def import_threads(
        file: Annotated[
            Path,
            typer.Argument(
                help="A JSONL file (one thread a line) or a CSV export (one post a row)."
            ),
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="auto (by extension), jsonl or csv.")
        ] = "auto",
        channel: Annotated[
            str | None, typer.Option(help="Channel for CSV files without a channel column.")
        ] = None,
        batch_size: Annotated[
            int, typer.Option(min=1, max=5000, help="Threads per transaction and clustering.")
        ] = 500,
        cover_threshold: Annotated[
            float | None,
            typer.Option(
                min=0.0,
                max=1.0,
                help="Confidence to call a thread covered (default: see docs/capture.md).",
            ),
        ] = None,
        report_path: Annotated[
            Path | None, typer.Option("--report", help="Also write the summary as JSON here.")
        ] = None,
    ) -> None:
        """Import resolved threads: covered ones teach their FAQ, the rest become drafts.

        Idempotent on (channel, external id). Bad rows are reported with their line numbers
        and skipped; they never stop or roll back the good ones (exit code 2 if any).
        """
        from tqdm import tqdm

        from api.capture.deps import build_capture, capture_policy
        from kb.capture.thread_files import RowError, ThreadRow, read_threads
        from kb.errors import IndexNotReady

        if fmt not in ("auto", "jsonl", "csv"):
            raise fail("--format must be auto, jsonl or csv")
        s = settings()
        with domain_errors():
            items = read_threads(file, fmt, default_channel=channel)  # type: ignore[arg-type]
        rows = [i for i in items if isinstance(i, ThreadRow)]
        rejected: list[RowError] = [i for i in items if isinstance(i, RowError)]
        services = load_services(s)
        summary: dict[str, Any] = {"file": str(file), "threads": len(rows)}
        counts = dict.fromkeys(
            ("created", "updated", "unchanged", "covered", "drafted", "uncovered"), 0
        )
        counts["phrasings_added"] = 0
        new_drafts: set[int] = set()
        drafts: set[int] = set()
        try:
            services.index.open(services.session_factory)
            policy = capture_policy(services, cover_threshold=cover_threshold)
            capture = build_capture(services, policy=policy)
            with tqdm(total=len(rows), desc="threads", unit="thread", file=sys.stderr) as bar:
                for start in range(0, len(rows), batch_size):
                    batch = rows[start : start + batch_size]
                    report = _ingest_batch(
                        services.session_factory, capture, batch, rejected, bar.update
                    )
                    bar.n = min(len(rows), start + len(batch))
                    bar.refresh()
                    if report.touched_entries:
                        services.index.sync(services.session_factory)
                    for o in report.outcomes:
                        key = "created" if o.created else "updated" if o.changed else "unchanged"
                        counts[key] += 1
                        counts[o.status.value] += 1
                        counts["phrasings_added"] += int(o.phrasing_added)
                        if o.draft_id is not None and o.status.value == "drafted":
                            drafts.add(o.draft_id)
                    new_drafts |= report.new_drafts
        except IndexNotReady as exc:
            raise fail(exc.message) from exc
        finally:
            services.close()
        rejected.sort(key=lambda e: e.line)
        imported = counts["created"] + counts["updated"] + counts["unchanged"]
        typer.echo(
            f"{imported} threads imported ({counts['created']} new, {counts['updated']} "
            f"updated, {counts['unchanged']} unchanged): {counts['covered']} covered "
            f"({counts['phrasings_added']} new phrasings), {counts['drafted']} in "
            f"{len(drafts)} drafts ({len(new_drafts)} new), {counts['uncovered']} without "
            f"a question; {len(rejected)} rows rejected"
        )
        for error in rejected:
            typer.echo(f"line {error.line}: {error.message}", err=True)
        if report_path is not None:
            summary.update(counts, imported=imported, drafts=sorted(drafts))
            summary["new_drafts"] = sorted(new_drafts)
            summary["rejected"] = [{"line": e.line, "error": e.message} for e in rejected]
            report_path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
        if rejected:
            raise fail(
                f"{len(rejected)} rows rejected (listed above); the other rows were imported"
            )

    @app.command("capture-sim")
    def capture_sim(
        dataset: Annotated[
            Path, typer.Argument(help="The StackFAQ folder (faqs, queries, query_meta).")
        ],
        json_out: Annotated[
            Path | None, typer.Option("--json", help="Also write the figures as JSON here.")
        ] = None,
        cover_threshold: Annotated[
            float | None, typer.Option(min=0.0, max=1.0, help="Confidence to call covered.")
        ] = None,
        join_similarity: Annotated[
            float | None, typer.Option(min=0.0, max=1.0, help="Similarity to join a draft.")
        ] = None,
    ) -> None:
        """Measure the capture loop on StackFAQ: drafts vs topics, ARI, MRR@10 before/after."""
        from dataclasses import replace

        from api.capture.deps import MIN_COVER_THRESHOLD
        from indexer.embedding.encoders import ModelNotFound, load_embedder
        from indexer.lexical.tokenizer import default_tokenizer
        from indexer.retrieval.confidence import default_confidence_model
        from kb.capture.ingest import CapturePolicy
        from kb.capture.simulation import run_simulation
        from kb.suggest.evaluation import DatasetError

        s = settings()
        try:
            embedder = load_embedder(
                s.embedding_model,
                s.models_dir,
                backend=s.embed_backend,
                threads=s.torch_threads,
            )
        except ModelNotFound as exc:
            raise fail(str(exc)) from exc
        calibration = default_confidence_model(embedder.name)
        threshold = (
            s.abstain_threshold if s.abstain_threshold is not None else calibration.threshold
        )
        policy = CapturePolicy(cover_threshold=max(threshold, MIN_COVER_THRESHOLD))
        if cover_threshold is not None:
            policy = replace(policy, cover_threshold=cover_threshold)
        if join_similarity is not None:
            policy = replace(policy, join_similarity=join_similarity)
        try:
            result = run_simulation(
                dataset,
                embedder,
                default_tokenizer(),
                calibration,
                policy,
                progress=lambda msg: typer.echo(msg, err=True),
            )
        except DatasetError as exc:
            raise fail(str(exc)) from exc
        for line in result.lines():
            typer.echo(line)
        if json_out:
            json_out.write_text(json.dumps(result.figures, indent=2) + "\n")
