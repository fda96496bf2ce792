"""Agent suggest latency with and without a flood of anonymous public searches.

    .venv/bin/python benchmarks/search_flood.py [--requests 300] [--flood-clients 32]
        [--database-url postgresql+psycopg://...] [--json PATH]

Issue 18 measured 32 anonymous clients searching the public site at ~54 req/s pushing an
agent's suggest p50 from 26 to 470 ms. Public search now has its own budget per client
address (FAQLOOP_SEARCH_RATE_LIMIT searches per FAQLOOP_SEARCH_RATE_WINDOW seconds, 30 per
60 s by default; beyond it 429 before any search work). This benchmark builds the
1,000-entry benchmark knowledge base (benchlib.py), starts `faqloop serve` on loopback and
has one agent client (an agent key, keep-alive, the next post as soon as the last is
answered) send `--requests` posts to POST /v1/suggest in each scenario:

1. quiet: the agent alone;
2. flood from one address: `--flood-clients` clients GET /search?q=... as fast as the
   server answers (they ignore Retry-After, as an attacker would), all from 127.0.0.1:
   one budget for all of them;
3. flood from as many addresses as clients: the server trusts 127.0.0.1 as a reverse
   proxy (FAQLOOP_TRUSTED_PROXIES) and each client sends its own X-Forwarded-For, so each
   has a budget of its own (the most a proxy in front lets through);
4. on a second server with the budget off (FAQLOOP_SEARCH_RATE_LIMIT=0): quiet, then the
   flood from one address: what the budget protects against.

The flood runs in a process of its own (so its clients do not delay the agent's in the
same event loop) and starts a second before the agent. Prints the agent's p50/p95/p99 and
errors, and the flood's requests, answers (200), refusals (429), other answers and
failures and its rate, per scenario; writes benchmarks/results/search_flood.json. Client
and server share the machine's cores: on a busy machine the figures move a lot between
runs, compare scenarios of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchlib import (
    HttpFailure,
    KbQuery,
    KeepAliveClient,
    knowledge_base,
    latency_summary,
    machine,
    print_table,
    sample_queries,
    scratch_database,
    start_server,
    write_result,
)
from http_load import prepare

# A browser's User-Agent: the flood looks like visitors, not like a robot the site filters.
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
# Seconds the flood runs before the agent starts (every flood client connected and busy).
FLOOD_LEAD_S = 1.0


# -- the flood (in its own process) ----------------------------------------------------------
def _flood_process(
    base: str,
    clients: int,
    spread: bool,
    terms: list[str],
    stop: Any,
    ready: Any,
    results: Any,
) -> None:
    """Run the flood until `stop` is set; put its counts on `results`."""
    results.put(asyncio.run(_flood(base, clients, spread, terms, stop, ready)))


async def _flood(
    base: str, clients: int, spread: bool, terms: list[str], stop: Any, ready: Any
) -> dict[str, Any]:
    counts = {"requests": 0, "ok": 0, "refused": 0, "other": 0, "failed": 0}

    async def client(n: int) -> None:
        connection = KeepAliveClient(base, {"User-Agent": BROWSER})
        # Behind a trusted proxy, each client is its own address (10.0.x.y).
        extra = {"X-Forwarded-For": f"10.0.{n // 250}.{n % 250 + 1}"} if spread else None
        i = n
        try:
            while not stop.is_set():
                term = terms[i % len(terms)]
                i += clients
                try:
                    status, _ = await connection.get(f"/search?q={quote(term, safe='')}", extra)
                except HttpFailure:
                    counts["failed"] += 1
                    continue
                finally:
                    counts["requests"] += 1
                if status == 200:
                    counts["ok"] += 1
                elif status == 429:
                    counts["refused"] += 1
                else:
                    counts["other"] += 1
        finally:
            await connection.close()

    started = time.perf_counter()
    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    ready.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    counts["wall_s"] = round(wall, 2)
    counts["per_s"] = round(counts["requests"] / wall, 1) if wall > 0 else 0.0
    counts["ok_per_s"] = round(counts["ok"] / wall, 1) if wall > 0 else 0.0
    return counts


class Flood:
    """The flood's process: started by `with`, stopped (and its counts read) on exit."""

    def __init__(self, base: str, clients: int, *, spread: bool, terms: list[str]) -> None:
        ctx = multiprocessing.get_context("spawn")  # the parent holds the model's threads
        self._stop, self._ready, self._results = ctx.Event(), ctx.Event(), ctx.Queue()
        self._process = ctx.Process(
            target=_flood_process,
            args=(base, clients, spread, terms, self._stop, self._ready, self._results),
            daemon=True,
        )
        self.counts: dict[str, Any] = {}

    def __enter__(self) -> Flood:
        self._process.start()
        if not self._ready.wait(120):
            raise SystemExit("the flood process did not start")
        time.sleep(FLOOD_LEAD_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.counts = self._results.get(timeout=300)
        self._process.join(60)


# -- the agent ---------------------------------------------------------------------------------
async def _agent(base: str, key: str, posts: list[str]) -> dict[str, Any]:
    connection = KeepAliveClient(base, {"Authorization": f"Bearer {key}"})
    latencies: list[float] = []
    errors = 0
    statuses: dict[str, int] = {}
    wall = time.perf_counter()
    try:
        for post in posts:
            t0 = time.perf_counter()
            try:
                status, _ = await connection.post_json("/v1/suggest", {"text": post})
            except HttpFailure:
                status = 0
            if status == 200:
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                errors += 1
                statuses[str(status)] = statuses.get(str(status), 0) + 1
    finally:
        await connection.close()
    summary = latency_summary(latencies, time.perf_counter() - wall, errors)
    if statuses:
        summary["error_statuses"] = statuses
    return summary


def agent(base: str, key: str, posts: list[str]) -> dict[str, Any]:
    """The agent's posts, one after another; its latency summary."""
    return asyncio.run(_agent(base, key, posts))


def scenario(
    base: str,
    key: str,
    posts: list[str],
    *,
    flood_clients: int = 0,
    spread: bool = False,
    terms: list[str] | None = None,
) -> dict[str, Any]:
    """The agent's figures, alone or beside a flood, and the flood's counts."""
    if not flood_clients:
        return {"agent": agent(base, key, posts)}
    with Flood(base, flood_clients, spread=spread, terms=terms or []) as flood:
        measured = agent(base, key, posts)
    return {"agent": measured, "flood": flood.counts}


def _posts(queries: list[KbQuery], n: int, seed: int) -> list[str]:
    return [q.text for q in sample_queries(queries, n, seed=seed)]


def _terms(queries: list[KbQuery]) -> list[str]:
    """Short search words from the eval queries (visitors type a few words, not posts)."""
    out = []
    for q in sample_queries(queries, 400, seed=3):
        words = q.text.split()
        out.append(" ".join(words[:4]) if len(words) > 1 else q.text[:12])
    return out


def main() -> None:
    """Run the scenarios; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="Agent posts per scenario.")
    parser.add_argument("--flood-clients", type=int, default=32)
    parser.add_argument("--database-url", default=None, help="Default: SQLite in a temp dir.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not 10 <= args.requests <= 20_000:
        parser.error("--requests must be between 10 and 20000")
    if not 1 <= args.flood_clients <= 1000:
        parser.error("--flood-clients must be between 1 and 1000")

    _, queries = knowledge_base()
    terms = _terms(queries)
    body: dict[str, Any] = {
        "benchmark": "search_flood",
        "database": "postgresql" if args.database_url else "sqlite",
        "requests": args.requests,
        "flood_clients": args.flood_clients,
        "machine_before": machine(),
        "scenarios": {},
    }
    scenarios: dict[str, Any] = body["scenarios"]
    with tempfile.TemporaryDirectory(prefix="faqloop-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with scratch_database(args.database_url, data_dir) as db_url:
            services, key, info = prepare(data_dir, db_url)
            services.close()
            body["index"] = info
            common = {
                "FAQLOOP_DATA_DIR": str(data_dir),
                "FAQLOOP_DATABASE_URL": db_url,
                "FAQLOOP_SUGGEST_RATE_LIMIT": "0",  # the agent's own limit is not measured
            }
            budgeted = {**common, "FAQLOOP_TRUSTED_PROXIES": "127.0.0.1"}
            server = start_server(budgeted, Path(tmp) / "server-budget.log")
            try:
                server.wait_ready()
                agent(server.base, key, _posts(queries, 30, seed=7))  # warm-up
                body["search_budget"] = "30 per 60 s per address (the default)"
                scenarios["quiet"] = scenario(server.base, key, _posts(queries, args.requests, 1))
                scenarios["flood, one address, budget on"] = scenario(
                    server.base,
                    key,
                    _posts(queries, args.requests, 2),
                    flood_clients=args.flood_clients,
                    terms=terms,
                )
                scenarios[f"flood, {args.flood_clients} addresses, budget on"] = scenario(
                    server.base,
                    key,
                    _posts(queries, args.requests, 3),
                    flood_clients=args.flood_clients,
                    spread=True,
                    terms=terms,
                )
            finally:
                server.stop()
            unlimited = {**common, "FAQLOOP_SEARCH_RATE_LIMIT": "0"}
            server = start_server(unlimited, Path(tmp) / "server-unlimited.log")
            try:
                server.wait_ready()
                agent(server.base, key, _posts(queries, 30, seed=8))  # warm-up
                scenarios["quiet (second server)"] = scenario(
                    server.base, key, _posts(queries, args.requests, 4)
                )
                scenarios["flood, one address, budget off"] = scenario(
                    server.base,
                    key,
                    _posts(queries, args.requests, 5),
                    flood_clients=args.flood_clients,
                    terms=terms,
                )
            finally:
                server.stop()
    body["machine_after"] = machine()
    report(body)
    print(f"written to {write_result('search_flood', body, args.json)}")


def report(body: dict[str, Any]) -> None:
    """Print the figures as a table."""
    m0, m1 = body["machine_before"], body["machine_after"]
    print(
        f"agent suggest beside a public search flood: {body['index']['entries']} entries, "
        f"{body['database']}, {m0['cpus']} CPUs, load {m0['load_1min']} -> {m1['load_1min']}"
    )
    rows = []
    for name, s in body["scenarios"].items():
        a, f = s["agent"], s.get("flood") or {}
        rows.append(
            [
                name,
                a["requests"],
                a["errors"],
                a["p50_ms"],
                a["p95_ms"],
                a["p99_ms"],
                f.get("requests", ""),
                f.get("per_s", ""),
                f.get("ok", ""),
                f.get("refused", ""),
                (f.get("other", 0) + f.get("failed", 0)) if f else "",
            ]
        )
    print_table(
        [
            "scenario",
            "agent posts",
            "agent errors",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "flood requests",
            "flood req/s",
            "flood 200",
            "flood 429",
            "flood other/failed",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
