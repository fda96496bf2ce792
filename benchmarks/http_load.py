"""faqloop's suggest in-process and over HTTP at 1, 8 and 32 concurrent clients.

    .venv/bin/python benchmarks/http_load.py [--requests 300] [--concurrency 1 8 32]
        [--database-url postgresql+psycopg://...] [--skip-in-process]

Builds the benchmark knowledge base (1,000 entries, see benchlib.py) through faqloop's
services in a temporary data directory (SQLite, or a scratch schema with --database-url),
then:

- in-process: `kb.suggest.service.suggest` from 1, 8 and 32 threads, each call in its own
  session as POST /v1/suggest does (clean, embed, FAISS + BM25, fuse, calibrate, re-check
  in the database, record the suggestion); the micro-batcher's mean batch size is shown;
- over HTTP: `faqloop serve` on loopback, clients with keep-alive connections, each
  sending its next post as soon as the last one is answered (benchlib.KeepAliveClient,
  a lean client: the clients share the server's cores, so their CPU time per request is
  measured and printed too).

Each level starts with eight unmeasured requests per client (new worker threads, pooled
connections, the model's first call on a new thread), then sends at least 16 per client.
Prints p50/p95/p99 latency, throughput, errors and the server's peak memory per level and
writes benchmarks/results/http_load.json. Throughput is shown twice: over the whole run
(req/s), and in the steady state while every client was busy (steady req/s, see
benchlib.steady_throughput), which leaves out the tail where clients run out of work.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import (
    HttpFailure,
    KbQuery,
    KeepAliveClient,
    RssSampler,
    knowledge_base,
    latency_summary,
    machine,
    peak_rss_mb,
    populate,
    print_table,
    rss_mb,
    sample_queries,
    scratch_database,
    start_server,
    steady_throughput,
    write_result,
)


def requests_for(level: int, requests: int) -> int:
    """Enough requests that every client sends at least 16."""
    return max(requests, 16 * level)


def warmup_for(level: int) -> int:
    """Requests sent at a level before measuring it (new worker threads, pool connections,
    the model's first calls on a new thread): two per client."""
    return 2 * level


def in_process(services: Any, posts: list[str], clients: int) -> dict[str, Any]:
    """Suggest for every post from `clients` threads; latency summary and batching."""
    from kb.db import session_scope
    from kb.suggest.service import suggest

    work: queue.SimpleQueue[str] = queue.SimpleQueue()
    for post in posts:
        work.put(post)
    latencies: list[float] = []
    done: list[float] = []
    drained = [0.0]
    errors = [0]
    lock = threading.Lock()
    batcher = services.embedder
    batches0, requests0 = batcher.stats.batches, batcher.stats.requests

    def client() -> None:
        while True:
            try:
                post = work.get_nowait()
            except queue.Empty:
                return
            if work.empty():
                drained[0] = time.perf_counter()
            t0 = time.perf_counter()
            try:
                with session_scope(services.session_factory) as session:
                    suggest(
                        session, services.index, services.calibration, services.policy, text=post
                    )
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            finished = time.perf_counter()
            with lock:
                latencies.append((finished - t0) * 1000)
                done.append(finished)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = latency_summary(latencies, time.perf_counter() - wall, errors[0])
    summary["steady_per_s"] = steady_throughput(done, wall, drained[0])
    batches = batcher.stats.batches - batches0
    encoded = batcher.stats.requests - requests0
    summary["mean_batch"] = round(encoded / batches, 2) if batches else 0
    return summary


async def over_http(
    bases: list[str], key: str, posts: list[str], clients: int
) -> tuple[list[float], int, float, float]:
    """Send every post with `clients` keep-alive clients (round-robin over `bases`).

    Returns the latencies, the errors, the wall time and the steady throughput (see
    `steady_throughput`)."""
    pending: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for n, post in enumerate(posts):
        pending.put_nowait((n, post))
    latencies: list[float] = []
    done: list[float] = []
    drained = 0.0
    errors = 0

    async def client() -> None:
        nonlocal errors, drained
        # One keep-alive connection per server (benchlib.KeepAliveClient: a lean client,
        # so the load generator takes as little as it can of the cores it shares).
        headers = {"Authorization": f"Bearer {key}"}
        connections = [KeepAliveClient(base, headers) for base in bases]
        try:
            while not pending.empty():
                n, post = pending.get_nowait()
                if pending.empty():
                    drained = time.perf_counter()
                t0 = time.perf_counter()
                try:
                    status, _ = await connections[n % len(bases)].post_json(
                        "/v1/suggest", {"text": post}
                    )
                    ok = status == 200
                except HttpFailure:
                    ok = False
                finished = time.perf_counter()
                if ok:
                    latencies.append((finished - t0) * 1000)
                    done.append(finished)
                else:
                    errors += 1
        finally:
            for connection in connections:
                await connection.close()

    wall = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - wall
    return latencies, errors, elapsed, steady_throughput(done, wall, drained)


def prepare(data_dir: Path, db_url: str) -> tuple[Any, str, dict[str, Any]]:
    """Services over the knowledge base (indexed and saved in data_dir), an agent key."""
    from api.settings import Settings
    from api.state import build_services
    from kb.auth.keys import create_key
    from kb.db import session_scope

    settings = Settings(
        data_dir=data_dir,
        database_url=db_url,
        sync_interval=3600,
        _env_file=None,  # type: ignore[call-arg]
    )
    t0 = time.perf_counter()
    services = build_services(settings)
    load_s = time.perf_counter() - t0
    kb, _ = knowledge_base()
    populate(services.session_factory, kb)
    t0 = time.perf_counter()
    services.index.open(services.session_factory)
    build_s = time.perf_counter() - t0
    with session_scope(services.session_factory) as session:
        _, key = create_key(session, role="agent", name="bench")
    info = {"model_load_s": round(load_s, 2), "index_build_s": round(build_s, 2)}
    info.update(services.index.describe())
    return services, key, info


def query_batches(base: str) -> tuple[float, float] | None:
    """(model calls, texts) for queries so far, from the server's /metrics, if it has them."""
    import httpx

    try:
        text = httpx.get(f"{base}/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    found = {}
    for name in ("count", "sum"):
        match = re.search(
            rf'^faqloop_embedding_batch_size_{name}{{kind="query"}} (\S+)$', text, re.M
        )
        if not match:
            return None
        found[name] = float(match.group(1))
    return found["count"], found["sum"]


def main() -> None:
    """Measure in-process and over HTTP; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=300, help="Requests per level (at least 8 per client)."
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp dir.")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 1 <= args.requests <= 20_000:
        parser.error("--requests must be between 1 and 20000")

    before = machine()
    _, queries = knowledge_base()
    body: dict[str, Any] = {
        "benchmark": "http_load",
        "database": "postgresql" if args.database_url else "sqlite",
        "machine_before": before,
        "in_process": {},
        "http": {},
    }
    with tempfile.TemporaryDirectory(prefix="faqloop-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with scratch_database(args.database_url, data_dir) as db_url:
            services, key, info = prepare(data_dir, db_url)
            body["index"] = info
            body["torch_threads"] = _torch_threads()
            # FAQLOOP_EMBED_BACKEND's backend, as loaded (a failed check falls back to torch);
            # the server below inherits the variable (run_all.py --backends sets it).
            from indexer.embedding.encoders import backend_of

            body["backend"] = backend_of(services.embedder)
            if not args.skip_in_process:
                for post in _posts(queries, 20, seed=99):  # warm-up
                    in_process(services, [post], 1)
                for level in args.concurrency:
                    in_process(services, _posts(queries, warmup_for(level), seed=50 + level), level)
                    posts = _posts(queries, requests_for(level, args.requests), seed=level)
                    body["in_process"][str(level)] = in_process(services, posts, level)
                body["in_process_peak_rss_mb"] = round(peak_rss_mb(), 1)
            services.close()

            server = start_server(
                {
                    "FAQLOOP_DATA_DIR": str(data_dir),
                    "FAQLOOP_DATABASE_URL": db_url,
                    "FAQLOOP_SUGGEST_RATE_LIMIT": "0",  # one key sends everything
                },
                Path(tmp) / "server.log",
            )
            try:
                body["server_ready_s"] = round(server.wait_ready(), 2)
                rss_ready = rss_mb(server.pid)
                asyncio.run(over_http([server.base], key, _posts(queries, 30, seed=7), 2))
                body["server_rss_after_warmup_mb"] = round(rss_mb(server.pid), 1)
                for level in args.concurrency:
                    warm = _posts(queries, warmup_for(level), seed=150 + level)
                    asyncio.run(over_http([server.base], key, warm, level))
                    posts = _posts(queries, requests_for(level, args.requests), seed=100 + level)
                    calls0 = query_batches(server.base)
                    cpu0 = time.process_time()  # this process only runs the clients now
                    with RssSampler([server.pid]) as sampler:
                        latencies, errors, wall, steady = asyncio.run(
                            over_http([server.base], key, posts, level)
                        )
                    client_cpu = time.process_time() - cpu0
                    calls1 = query_batches(server.base)
                    summary = latency_summary(latencies, wall, errors)
                    summary["steady_per_s"] = steady
                    summary["client_cpu_ms_per_request"] = round(client_cpu / len(posts) * 1000, 2)
                    summary["server_peak_rss_mb"] = round(sampler.peak[server.pid], 1)
                    if calls0 and calls1 and calls1[0] > calls0[0]:
                        summary["mean_batch"] = round(
                            (calls1[1] - calls0[1]) / (calls1[0] - calls0[0]), 2
                        )
                    body["http"][str(level)] = summary
                    if level == 1:
                        # The single-client target is for a Japanese post: one
                        # client sending Japanese posts only ("1-ja"; the levels mix in the
                        # longer English ones), measured right after level 1, before the
                        # heavier levels leave their threads and memory behind.
                        japanese = [q for q in queries if q.language == "ja"]
                        sample = sample_queries(japanese, args.requests + 10, seed=77)
                        posts = [q.text for q in sample]
                        asyncio.run(over_http([server.base], key, posts[:10], 1))  # warm-up
                        latencies, errors, wall, steady = asyncio.run(
                            over_http([server.base], key, posts[10:], 1)
                        )
                        summary = latency_summary(latencies, wall, errors)
                        summary["steady_per_s"] = steady
                        body["http"]["1-ja"] = summary
                body["server_rss_ready_mb"] = round(rss_ready, 1)
                body["server_peak_rss_mb"] = round(peak_rss_mb(server.pid), 1)
            finally:
                server.stop()
    body["machine_after"] = machine()
    report(body)
    print(f"written to {write_result('http_load', body, args.json)}")


def _posts(queries: list[KbQuery], n: int, seed: int) -> list[str]:
    return [q.text for q in sample_queries(queries, n, seed=seed)]


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def report(body: dict[str, Any]) -> None:
    """Print the figures as a table."""
    m0, m1 = body["machine_before"], body["machine_after"]
    print(
        f"faqloop suggest, {body['index']['entries']} entries ({body['index']['texts']} texts), "
        f"{body['database']}, {m0['cpus']} CPUs, load {m0['load_1min']} -> {m1['load_1min']}"
    )
    rows = []
    for where in ("in_process", "http"):
        for level, s in body[where].items():
            rows.append(
                [
                    where.replace("_", "-"),
                    level,
                    s["requests"],
                    s["errors"],
                    s["p50_ms"],
                    s["p95_ms"],
                    s["p99_ms"],
                    s["throughput_per_s"],
                    s.get("steady_per_s", ""),
                    s.get("mean_batch", ""),
                    s.get("server_peak_rss_mb", ""),
                ]
            )
    print_table(
        [
            "path",
            "clients",
            "requests",
            "errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "req/s",
            "steady req/s",
            "mean batch",
            "peak RSS MB",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
