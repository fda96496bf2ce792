"""Time and size of `faqloop backup` and `faqloop restore` on a filled database.

    .venv/bin/python benchmarks/backup_restore.py [--votes 50000] [--database-url URL]

Builds a database with the seed content plus synthetic feedback (votes with comments,
visitor marks, daily view counters, suggestions), then times, in process through
`kb.ops.backup`: the SQLite online snapshot and the logical export, and restoring each into an
empty database (SQLite; and PostgreSQL when --database-url is given, in a schema of its
own that is dropped afterwards). Index rebuilds are not included (see `faqloop reindex`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb.db import make_engine, make_session_factory, migrate, session_scope  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.faqs.entries import load_articles  # noqa: E402
from kb.models import FaqEntry, PageView, Suggestion, VisitorSeen, Vote  # noqa: E402
from kb.ops.backup import backup_database, count_rows, restore_database  # noqa: E402


def fill(url: str, votes: int) -> None:
    """Seed content plus `votes` votes, as many visitor marks, views and suggestions."""
    migrate(url)
    factory = make_session_factory(make_engine(url))
    with session_scope(factory) as s:
        load_articles(s, read_content_dir(ROOT / "faq_content"), author="bench")
    with session_scope(factory) as s:
        entries = [(e.id, e.current_revision_id) for e in s.scalars(select(FaqEntry))]
    now = datetime.now(UTC)
    chunk = 5000
    with session_scope(factory) as s:
        for start in range(0, votes, chunk):
            rows = []
            marks = []
            for i in range(start, min(votes, start + chunk)):
                entry_id, revision_id = entries[i % len(entries)]
                rows.append(
                    {
                        "entry_id": entry_id,
                        "revision_id": revision_id,
                        "visitor_hash": f"{i:064x}",
                        "helpful": i % 4 != 0,
                        "comment": None if i % 4 else "手順が古いです / steps are outdated",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                marks.append(
                    {
                        "revision_id": revision_id,
                        "visitor_hash": f"{i:064x}",
                        "last_counted_at": now,
                    }
                )
            s.execute(insert(Vote), rows)
            s.execute(insert(VisitorSeen), marks)
        views = [
            {
                "entry_id": e,
                "revision_id": r,
                "day": date(2026, 11, 1) + timedelta(days=d),
                "source": src,
                "count": 10 + d,
            }
            for e, r in entries
            for d in range(30)
            for src in ("reply", "search", "direct")
        ]
        s.execute(insert(PageView), views)
        suggestions = [
            {
                "text": f"eSIMが開通しない {i}",
                "language": "ja",
                "candidates": [{"faq_id": entries[i % len(entries)][0], "score": 0.9}],
                "best_faq_id": entries[i % len(entries)][0],
                "confidence": 0.8,
                "abstained": False,
                "latency_ms": 20.0,
                "created_at": now,
            }
            for i in range(votes // 5)
        ]
        s.execute(insert(Suggestion), suggestions)


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn()
    return label, time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=50_000)
    parser.add_argument("--database-url", help="Also restore into this PostgreSQL server.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faqloop-bench-") as tmp:
        work = Path(tmp)
        source = f"sqlite:///{work / 'source.db'}"
        fill(source, args.votes)
        rows = sum(count_rows(make_engine(source)).values())
        print(f"source: SQLite, {rows} rows ({args.votes} votes)")
        results = []
        snapshot = work / "backup.db"
        export = work / "backup.ndjson.gz"
        results.append(
            timed("backup, SQLite online snapshot", lambda: backup_database(source, snapshot))
        )
        results.append(
            timed("backup, logical export", lambda: backup_database(source, export, fmt="logical"))
        )
        results.append(
            timed(
                "restore snapshot into SQLite (file copy)",
                lambda: restore_database(f"sqlite:///{work / 'r1.db'}", snapshot),
            )
        )
        results.append(
            timed(
                "restore logical export into SQLite",
                lambda: restore_database(f"sqlite:///{work / 'r2.db'}", export),
            )
        )
        schemas: list[str] = []
        if args.database_url:
            admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
            for label, path in (("logical export", export), ("SQLite snapshot", snapshot)):
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                schemas.append(schema)
                url = (
                    make_url(args.database_url)
                    .update_query_dict({"options": f"-csearch_path={schema}"})
                    .render_as_string(hide_password=False)
                )
                results.append(
                    timed(
                        f"restore {label} into PostgreSQL",
                        lambda u=url, p=path: restore_database(u, p),
                    )
                )
                if label == "logical export":
                    pg_export = work / "pg.ndjson.gz"
                    results.append(
                        timed(
                            "backup PostgreSQL, logical export",
                            lambda u=url, p=pg_export: backup_database(u, p),
                        )
                    )
            with admin.connect() as conn:
                for schema in schemas:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
        print(f"{'step':<45}{'seconds':>9}{'size':>12}")
        for label, seconds, summary in results:
            size = f"{summary.size / 1024 / 1024:.1f} MiB" if summary.size else ""
            print(f"{label:<45}{seconds:>9.2f}{size:>12}")


if __name__ == "__main__":
    main()
