"""Latency of the public site's article and search pages under concurrent requests.

    .venv/bin/python benchmarks/site_latency.py [--requests 200] [--concurrency 1 8 32]

Starts `faqloop serve` on a free 127.0.0.1 port over a temporary data directory (SQLite,
the seed content, the configured embedding model), waits until the index is ready, then
for each concurrency level sends a bounded number of requests to article pages and to
search pages and prints p50/p95 latency and throughput. Only loopback traffic.

Every article is visited once before measuring (related articles and rendered answers are
cached per revision, as on a site that has been up for a while). Every measured article
request comes from a new visitor with a browser User-Agent, so each one writes a view (the
worst case); every search runs the embedding model and is logged. Pass --database-url to
measure against PostgreSQL instead of the temporary SQLite file: the run then works in a
schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb.faqs.content import read_content_dir  # noqa: E402

BROWSER_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def scratch_schema(url: str, schema: str) -> str:
    """Create a schema for this run and return a URL whose search_path points at it."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False)


def drop_schema(url: str, schema: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> None:
    # Our own interpreter and CLI with fixed arguments.
    subprocess.run([sys.executable, "-m", "api.cli.main", *args], env=env, check=True, cwd=ROOT)  # noqa: S603


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).json().get("status") == "ready":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become ready")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_level(base: str, urls: list[str], concurrency: int) -> tuple[list[float], float]:
    """Send every url with `concurrency` workers; return latencies (ms) and wall time (s)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    latencies: list[float] = []

    async def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        headers = {"User-Agent": BROWSER_UA, "Accept-Language": "ja,en;q=0.8"}
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
            while not queue.empty():
                url = queue.get_nowait()
                client.cookies.clear()  # a new visitor each time: every view is written
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="Requests per page and level.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp dir.")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.requests < 1 or args.requests > 10_000:
        parser.error("--requests must be between 1 and 10000")

    articles = read_content_dir(ROOT / "faq_content")
    rng = random.Random(args.seed)
    queries = [q for a in articles for q in a.questions] or [a.question for a in articles]

    with tempfile.TemporaryDirectory(prefix="faqloop-bench-") as tmp:
        env = dict(os.environ, FAQLOOP_DATA_DIR=tmp, FAQLOOP_CONTENT_DIR=str(ROOT / "faq_content"))
        # Every simulated visitor is 127.0.0.1: lift the per-address search and view budgets.
        env.setdefault("FAQLOOP_SEARCH_RATE_LIMIT", "0")
        env.setdefault("FAQLOOP_VIEW_COUNT_LIMIT_IP", "0")
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        schema = None
        if args.database_url:
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            env["FAQLOOP_DATABASE_URL"] = scratch_schema(args.database_url, schema)
        else:
            env.pop("FAQLOOP_DATABASE_URL", None)
        for step in (("migrate",), ("load-content",), ("reindex",)):
            cli(env, *step)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
            [
                sys.executable,
                "-m",
                "api.cli.main",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(base, server)
            # Steady state: each article seen once, so its related articles and rendered
            # answer are cached (per revision) as on a site that has been up for a while.
            asyncio.run(run_level(base, [f"/faq/{a.slug}" for a in articles], 4))
            db = "PostgreSQL" if args.database_url else "SQLite"
            print(f"faqloop site latency: {os.cpu_count()} CPUs, {db}, {args.requests} req/cell")
            print(f"{'page':<8} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}")
            n = args.requests
            for concurrency in args.concurrency:
                for kind in ("article", "search"):
                    if kind == "article":
                        urls = [f"/faq/{rng.choice(articles).slug}?src=reply" for _ in range(n)]
                    else:
                        urls = [
                            str(httpx.URL("/search", params={"q": rng.choice(queries)}))
                            for _ in range(n)
                        ]
                    asyncio.run(run_level(base, urls[: min(10, len(urls))], 2))  # warm up
                    latencies, wall = asyncio.run(run_level(base, urls, concurrency))
                    print(
                        f"{kind:<8} {concurrency:>7} {statistics.median(latencies):>8.1f} "
                        f"{percentile(latencies, 0.95):>8.1f} {len(latencies) / wall:>7.1f}"
                    )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            if schema:
                drop_schema(args.database_url, schema)


if __name__ == "__main__":
    main()
