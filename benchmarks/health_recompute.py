"""How long a content-health recompute and an article's health take on a busy knowledge base.

    .venv/bin/python benchmarks/health_recompute.py [--days 90] [--database-url URL]

Builds a temporary SQLite database (or a scratch schema on the PostgreSQL server given)
with the seed content plus the StackFAQ articles (825 published articles), then 90 days
of synthetic traffic per article: page views from three sources every day, a vote from
one visitor in ten, suggestions with agents' outcomes, and abstained posts and failed
searches. Times `kb.health.flags.recompute` cold (question vectors not cached yet) and warm
(as in the server's periodic loop), and `kb.health.scores.article_health` for single articles.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from indexer.embedding.encoders import load_embedder  # noqa: E402
from indexer.lexical.tokenizer import default_tokenizer  # noqa: E402
from kb.capture.ingest import QuestionVectors  # noqa: E402
from kb.db import make_engine, make_session_factory, migrate, session_scope  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.faqs.entries import create_entry, load_articles  # noqa: E402
from kb.health import flags, scores  # noqa: E402
from kb.models import (  # noqa: E402
    FaqEntry,
    FaqRevision,
    PageView,
    SearchLog,
    Suggestion,
    SuggestionOutcome,
    ViewSource,
    Vote,
    utcnow,
)


def scratch(url: str) -> tuple[str, str]:
    """A fresh schema on the server and a URL whose search_path points at it."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--stackfaq", type=Path, default=ROOT.parent / "shared/eval/stackfaq")
    args = parser.parse_args()
    settings = Settings()
    tmp = tempfile.TemporaryDirectory(prefix="faqloop-health-bench-")
    schema = None
    if args.database_url:
        url, schema = scratch(args.database_url)
    else:
        url = f"sqlite:///{tmp.name}/bench.db"
    migrate(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    with session_scope(factory) as s:
        load_articles(s, read_content_dir(settings.content_dir), author="bench")
        for line in (args.stackfaq / "faqs.jsonl").open(encoding="utf-8"):
            f = json.loads(line)
            create_entry(
                s,
                question=f["question"],
                answer=f["answer"] or "(no answer)",
                category="stackfaq",
                language="en",
                slug=f"stackfaq-{f['id'].lower()}",
            )
        start_at = utcnow() - timedelta(days=args.days + 5)
        s.execute(
            FaqRevision.__table__.update().values(created_at=start_at)  # type: ignore[attr-defined]
        )
    with factory() as s:
        entries = [(e.id, e.current_revision_id) for e in s.scalars(select(FaqEntry))]
    today = utcnow().date()
    views, votes, suggestions = [], [], []
    n_visitor = 0
    for entry_id, revision_id in entries:
        rate = 0.3 if rng.random() < 0.05 else 0.8
        for d in range(args.days):
            day = today - timedelta(days=d)
            at = utcnow() - timedelta(days=d, hours=1)
            for source in ViewSource:
                n = int(rng.poisson(4))
                if n:
                    views.append(
                        {
                            "entry_id": entry_id,
                            "revision_id": revision_id,
                            "day": day,
                            "source": source,
                            "count": n,
                        }
                    )
            for _ in range(int(rng.poisson(1.2))):
                n_visitor += 1
                votes.append(
                    {
                        "entry_id": entry_id,
                        "revision_id": revision_id,
                        "visitor_hash": f"{n_visitor:064d}",
                        "helpful": bool(rng.random() < rate),
                        "created_at": at,
                        "updated_at": at,
                    }
                )
            if rng.random() < 0.5:
                suggestions.append(
                    {
                        "text": "post",
                        "language": "en",
                        "candidates": [],
                        "best_faq_id": entry_id,
                        "confidence": 0.9,
                        "abstained": False,
                        "latency_ms": 10.0,
                        "outcome": SuggestionOutcome.sent
                        if rng.random() < 0.85
                        else SuggestionOutcome.rejected,
                        "created_at": at,
                    }
                )
    gaps = [
        {
            "text": f"question {i % 400} about something new",
            "language": "en",
            "candidates": [],
            "best_faq_id": None,
            "confidence": 0.1,
            "abstained": True,
            "latency_ms": 10.0,
            "created_at": utcnow() - timedelta(days=i % 20),
        }
        for i in range(2000)
    ]
    searches = [
        {
            "query": f"search {i % 300}",
            "language": "ja" if i % 2 else "en",
            "result_count": 3,
            "top_score": 0.1,
            "good_result": False,
            "created_at": utcnow() - timedelta(days=i % 20),
        }
        for i in range(2000)
    ]
    with session_scope(factory) as s:
        for table, rows in (
            (PageView, views),
            (Vote, votes),
            (Suggestion, suggestions + gaps),
            (SearchLog, searches),
        ):
            for i in range(0, len(rows), 5000):
                s.execute(insert(table), rows[i : i + 5000])
    print(
        f"{len(entries)} articles, {args.days} days: {len(views)} view rows "
        f"({sum(v['count'] for v in views)} views), {len(votes)} votes, "
        f"{len(suggestions)} outcomes, 2000 abstained posts, 2000 failed searches "
        f"(built in {time.perf_counter() - started:.0f} s, {make_url(url).get_backend_name()})"
    )
    embedder = load_embedder(settings.embedding_model, settings.models_dir)
    vectors = QuestionVectors(embedder)
    tokenizer = default_tokenizer()
    policy = scores.HealthPolicy()
    for label in ("cold (vectors computed)", "warm (vectors cached)"):
        t0 = time.perf_counter()
        with session_scope(factory) as s:
            report = flags.recompute(s, policy, encoder=vectors, tokenizer=tokenizer)
        elapsed = time.perf_counter() - t0
        print(f"recompute {label}: {elapsed:.2f} s, {report.open} open flags {report.created}")
    t0 = time.perf_counter()
    with session_scope(factory) as s:
        flags.recompute(s, policy)
    print(f"recompute without duplicates and gaps: {time.perf_counter() - t0:.2f} s")
    times = []
    baseline = None
    with factory() as s:
        baseline = scores.compute_baseline(s, policy)
        for entry_id, _ in entries[:200]:
            t0 = time.perf_counter()
            scores.article_health(s, entry_id, policy, baseline=baseline)
            times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    print(
        f"article_health (one article, 90 daily points): p50 {statistics.median(times):.1f} ms, "
        f"p95 {times[int(len(times) * 0.95)]:.1f} ms"
    )
    engine.dispose()
    if schema and args.database_url:
        admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
