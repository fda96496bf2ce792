"""Load test: 10,000 suggest requests at 32 concurrency across 2 replicas, on loopback.

    .venv/bin/python benchmarks/load_test.py [--requests 10000] [--concurrency 32]
        [--replicas 2] [--database-url postgresql+psycopg://...] [--torch-threads 1]

Replicas share one database: PostgreSQL (a scratch schema, dropped afterwards) when
--database-url is given or a server answers on 127.0.0.1:5432, else one SQLite file. The
1,000-entry benchmark knowledge base (benchlib.py) is loaded and indexed once, by a helper
process, and each replica gets a copy of the index in its own data directory. Clients
round-robin over the replicas (no load balancer), each sending its next post as soon as
the last one is answered, with keep-alive connections. Bounded by --requests and
--timeout.

Reports latency percentiles, throughput, errors (any non-200 or failed connection), the
number of suggestions the database recorded, and every replica's resident memory when it
became ready, after the warm-up (the first --warmup requests) and every 500 requests
after that, to show whether memory stays flat. Writes benchmarks/results/load_test.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    PG_DEFAULT_URL,
    HttpFailure,
    KeepAliveClient,
    knowledge_base,
    latency_summary,
    machine,
    populate,
    postgres_reachable,
    print_table,
    rss_parts_mb,
    sample_queries,
    scratch_database,
    start_server,
    write_result,
)

SAMPLE_EVERY = 500


def prepare(data_dir: Path, db_url: str) -> str:
    """Load and index the knowledge base (run in a helper process); return an agent key."""
    from api.settings import Settings
    from api.state import build_services
    from kb.auth.keys import create_key
    from kb.db import session_scope

    settings = Settings(data_dir=data_dir, database_url=db_url, _env_file=None)  # type: ignore[call-arg]
    services = build_services(settings)
    try:
        kb, _ = knowledge_base()
        populate(services.session_factory, kb)
        services.index.rebuild(services.session_factory)
        with session_scope(services.session_factory) as session:
            _, key = create_key(session, role="agent", name="load test")
    finally:
        services.close()
    return key


async def load(
    bases: list[str],
    key: str,
    posts: list[str],
    concurrency: int,
    pids: list[int],
    warmup: int,
    deadline: float,
) -> dict[str, Any]:
    """Send every post; sample memory along the way."""
    pending: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(posts):
        pending.put_nowait(item)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    per_replica = [0] * len(bases)
    memory: list[dict[str, Any]] = []
    done = 0
    started = time.perf_counter()

    def sample(label: str) -> None:
        memory.append(
            {
                "after_requests": done,
                "at_s": round(time.perf_counter() - started, 1),
                "label": label,
                "memory_mb": [rss_parts_mb(pid) for pid in pids],
            }
        )

    async def client() -> None:
        nonlocal done
        headers = {"Authorization": f"Bearer {key}"}
        # One keep-alive connection per replica (benchlib.KeepAliveClient: the lean client,
        # so the load generator takes as little as it can of the cores it shares).
        connections = [KeepAliveClient(base, headers, timeout=120) for base in bases]
        try:
            while not pending.empty() and time.monotonic() < deadline:
                n, post = pending.get_nowait()
                replica = n % len(bases)
                t0 = time.perf_counter()
                try:
                    code, _ = await connections[replica].post_json("/v1/suggest", {"text": post})
                    status = str(code)
                except HttpFailure as exc:
                    status = str(exc).split(":")[0]
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    latencies.append((time.perf_counter() - t0) * 1000)
                    per_replica[replica] += 1
                done += 1
                if done == warmup:
                    sample("after warm-up")
                elif done > warmup and done % SAMPLE_EVERY == 0:
                    sample("")
        finally:
            for connection in connections:
                await connection.close()

    # One request per replica first, alone: lazily built per-process state (the learnt
    # threshold, the first model call) is then in place before the crowd arrives.
    for base in bases:
        first = KeepAliveClient(base, {"Authorization": f"Bearer {key}"})
        code, body = await first.post_json("/v1/suggest", {"text": posts[0]})
        await first.close()
        if code != 200:
            raise RuntimeError(f"{base} answered {code}: {body[:200]!r}")
    sample("ready")
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    sample("end")
    errors = sum(c for s, c in statuses.items() if s != "200")
    summary = latency_summary(latencies, wall, errors)
    summary.update(
        {
            "sent": done,
            "not_sent": len(posts) - done,
            "statuses": statuses,
            "per_replica": per_replica,
            "memory": memory,
        }
    )
    return summary


def count_suggestions(db_url: str) -> int:
    """Suggestions the database recorded."""
    from sqlalchemy import func, select

    from kb.db import make_engine
    from kb.models import Suggestion

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Suggestion)).scalar() or 0)
    finally:
        engine.dispose()


def main() -> None:
    """Prepare, start the replicas, send the load, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2000, help="Requests before memory counts.")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--sqlite", action="store_true", help="Use SQLite even if PG is up.")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="FAQLOOP_TORCH_THREADS of each replica (default 1: two replicas on two CPUs).",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="Stop sending after this.")
    parser.add_argument(
        "--prepare", nargs=2, metavar=("DATA_DIR", "DB_URL"), help=argparse.SUPPRESS
    )
    parser.add_argument("--keep-logs", type=Path, default=None, help="Copy replica logs here.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.prepare:
        print(prepare(Path(args.prepare[0]), args.prepare[1]))
        return
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 512:
        parser.error("--requests must be 1..100000 and --concurrency 1..512")
    if args.warmup >= args.requests:
        args.warmup = args.requests // 10

    url = args.database_url
    if not url and not args.sqlite and postgres_reachable(PG_DEFAULT_URL):
        url = PG_DEFAULT_URL
    before = machine()
    _, queries = knowledge_base()
    posts = [q.text for q in sample_queries(queries, args.requests, seed=11)]
    with tempfile.TemporaryDirectory(prefix="faqloop-load-") as tmp:
        root = Path(tmp)
        with scratch_database(url, root / "shared") as db_url:
            prep = root / "prep"
            out = subprocess.run(  # noqa: S603 (this script, fixed arguments)
                [sys.executable, __file__, "--prepare", str(prep), db_url],
                check=True,
                capture_output=True,
                text=True,
            )
            key = out.stdout.strip().splitlines()[-1]
            servers = []
            try:
                for n in range(args.replicas):
                    data = root / f"replica-{n}"
                    shutil.copytree(prep / "index", data / "index")
                    env = {
                        "FAQLOOP_DATA_DIR": str(data),
                        "FAQLOOP_DATABASE_URL": db_url,
                        "FAQLOOP_TORCH_THREADS": str(args.torch_threads),
                        # One API key sends everything: the per-key rate limit is not what
                        # is measured here.
                        "FAQLOOP_SUGGEST_RATE_LIMIT": "0",
                    }
                    servers.append(start_server(env, root / f"replica-{n}.log"))
                ready_s = [round(s.wait_ready(), 1) for s in servers]
                deadline = time.monotonic() + args.timeout
                result = asyncio.run(
                    load(
                        [s.base for s in servers],
                        key,
                        posts,
                        args.concurrency,
                        [s.pid for s in servers],
                        args.warmup,
                        deadline,
                    )
                )
            finally:
                for s in servers:
                    s.stop()
                if args.keep_logs:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for s in servers:
                        shutil.copy(s.log, args.keep_logs / s.log.name)
            recorded = count_suggestions(db_url)
    after = machine()
    memory = result["memory"]
    warm = next(m for m in memory if m["label"] == "after warm-up")
    end = memory[-1]
    growth = {
        part: [
            round(e[part] - w[part], 1)
            for e, w in zip(end["memory_mb"], warm["memory_mb"], strict=True)
        ]
        for part in ("rss", "anon", "file")
    }
    # Flat means no upward trend: the least-squares slope of private memory over the samples
    # after warm-up (MB per 1,000 requests), and the mean of the later half of those samples
    # against the earlier half. Single samples swing by tens of MB with the moment freed
    # memory is handed back (every few seconds), so the end-minus-start figure above is
    # printed but not what "flat" is judged on.
    later = [m for m in memory if m["after_requests"] >= warm["after_requests"]]
    later = [m for n, m in enumerate(later) if n == 0 or m["label"] != "end"]
    trend = {"slope_mb_per_1000": [], "half_means_mb": []}
    for replica in range(args.replicas):
        xs = [m["after_requests"] / 1000 for m in later]
        ys = [m["memory_mb"][replica]["anon"] for m in later]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
        half = len(ys) // 2
        trend["slope_mb_per_1000"].append(round(slope, 2))
        first, second = ys[:half] or ys, ys[half:] or ys
        trend["half_means_mb"].append(
            [round(sum(first) / len(first), 1), round(sum(second) / len(second), 1)]
        )
    body = {
        "benchmark": "load_test",
        "database": "postgresql" if url else "sqlite",
        "replicas": args.replicas,
        "concurrency": args.concurrency,
        "torch_threads": args.torch_threads,
        "replica_ready_s": ready_s,
        "suggestions_recorded": recorded,
        "rss_growth_after_warmup_mb": growth,
        "private_memory_trend": trend,
        "machine_before": before,
        "machine_after": after,
        **result,
    }
    print(
        f"load test: {result['sent']:,} suggest requests, {args.concurrency} clients, "
        f"{args.replicas} replicas ({body['database']}, {args.torch_threads} torch thread "
        f"each), {before['cpus']} CPUs, load {before['load_1min']} -> {after['load_1min']}"
    )
    print_table(
        ["requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "per replica", "recorded"],
        [
            [
                result["sent"],
                result["errors"],
                result["p50_ms"],
                result["p95_ms"],
                result["p99_ms"],
                result["throughput_per_s"],
                " / ".join(map(str, result["per_replica"])),
                recorded,
            ]
        ],
    )
    print("resident memory per replica, MB: total (private + file-backed model pages)")
    print_table(
        ["after requests", "at s", "", *[f"replica {n}" for n in range(args.replicas)]],
        [
            [
                m["after_requests"],
                m["at_s"],
                m["label"],
                *(f"{p['rss']:.0f} ({p['anon']:.0f} + {p['file']:.0f})" for p in m["memory_mb"]),
            ]
            for m in memory
        ],
    )
    print(f"growth after warm-up (end minus warm-up sample), MB: {json.dumps(growth)}")
    print(
        "private memory after warm-up: slope per 1,000 requests "
        f"{trend['slope_mb_per_1000']} MB; mean of earlier vs later half of the samples "
        f"{trend['half_means_mb']} MB"
    )
    print(f"written to {write_result('load_test', body, args.json)}")


if __name__ == "__main__":
    main()
