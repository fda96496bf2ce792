"""What the benchmarks share: the knowledge base, percentiles, memory, servers, results.

Every benchmark measures on the same 1,000-entry knowledge base built from the shared eval
sets (../shared/eval): all 719 StackFAQ answers (English) plus 281 JSTS sentences
(Japanese) -- the 168 that JSTS queries ask for and the first others as distractors -- so
every one of the 1,417 queries has its answers in the knowledge base and recall can be
measured beside latency.
"""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# As `faqloop` itself does (api/cli.py): OpenMP threads sleep instead of spinning while
# they wait, which matters on a shared machine. Set before torch or FAISS loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
RESULTS = Path(__file__).resolve().parent / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# -- data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class KbEntry:
    key: str  # the eval set's FAQ id
    question: str
    answer: str
    language: str


@dataclass(frozen=True)
class KbQuery:
    text: str
    relevant: frozenset[str]
    language: str


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def knowledge_base(
    entries: int = 1000, eval_dir: Path = EVAL
) -> tuple[list[KbEntry], list[KbQuery]]:
    """The benchmark knowledge base and the queries whose answers are all in it."""
    en_faqs = read_jsonl(eval_dir / "stackfaq" / "faqs.jsonl")
    ja_faqs = read_jsonl(eval_dir / "jsts_ja" / "faqs.jsonl")
    en_queries = read_jsonl(eval_dir / "stackfaq" / "queries.jsonl")
    ja_queries = read_jsonl(eval_dir / "jsts_ja" / "queries.jsonl")
    wanted = {r for q in ja_queries for r in q["relevant"]}
    ja_first = [f for f in ja_faqs if f["id"] in wanted] + [
        f for f in ja_faqs if f["id"] not in wanted
    ]
    picked = ([(f, "en") for f in en_faqs] + [(f, "ja") for f in ja_first])[:entries]
    kb = [
        KbEntry(str(f["id"]), str(f["question"]), str(f.get("answer") or ""), lang)
        for f, lang in picked
    ]
    keys = {e.key for e in kb}
    queries = [
        KbQuery(str(q["text"]), frozenset(map(str, q["relevant"])), lang)
        for rows, lang in ((en_queries, "en"), (ja_queries, "ja"))
        for q in rows
        if set(map(str, q["relevant"])) <= keys
    ]
    return kb, queries


def sample_queries(queries: list[KbQuery], n: int, seed: int = 0) -> list[KbQuery]:
    """`n` queries in a fixed random order (repeating the set when n is larger)."""
    rng = random.Random(seed)
    out: list[KbQuery] = []
    while len(out) < n:
        batch = list(queries)
        rng.shuffle(batch)
        out.extend(batch)
    return out[:n]


def populate(session_factory: Any, kb: list[KbEntry]) -> dict[int, str]:
    """Write the knowledge base through faqloop's services; return entry id -> eval key."""
    from kb.db import session_scope
    from kb.faqs.entries import create_entry

    ids: dict[int, str] = {}
    with session_scope(session_factory) as session:
        for n, e in enumerate(kb):
            entry = create_entry(
                session,
                question=e.question,
                answer=e.answer or e.question,
                category="bench",
                language=e.language,
                slug=f"bench-{n}",
            )
            ids[entry.id] = e.key
    return ids


# -- statistics ---------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(latencies_ms: list[float], wall_s: float, errors: int = 0) -> dict[str, Any]:
    """p50/p95/p99/mean in ms, throughput per second, counts."""
    n = len(latencies_ms)
    return {
        "requests": n,
        "errors": errors,
        "p50_ms": round(percentile(latencies_ms, 0.50), 2),
        "p95_ms": round(percentile(latencies_ms, 0.95), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "mean_ms": round(sum(latencies_ms) / n, 2) if n else float("nan"),
        "throughput_per_s": round(n / wall_s, 2) if wall_s > 0 else float("nan"),
        "wall_s": round(wall_s, 2),
    }


def steady_throughput(done: list[float], started: float, drained: float) -> float:
    """Requests per second while every client was busy (closed-loop load, steady state).

    `done` are the completion times, `started` when the clients started and `drained` when
    the last request was handed out: from then on clients finish one by one and the load
    tails off (at 32 clients and ~0.4 s per request, a 300-request run spent a tenth of its
    time draining), so only requests completed before it count.
    """
    window = drained - started
    if window <= 0:
        return float("nan")
    return round(sum(1 for t in done if t <= drained) / window, 2)


# -- a lean HTTP client --------------------------------------------------------------------
class HttpFailure(Exception):
    """The connection failed or the response was not HTTP/1.1 as expected."""


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection for JSON POSTs and GETs: what a load generator
    needs, no more.

    The clients run on the same two cores as the server they measure, so what they cost
    is taken from the server: this client costs a fraction of what httpx does (both are in
    docs/scale.md), as wrk would. It sends one request at
    a time and reads the response by its Content-Length (or chunks); a failed request is
    reported, never retried (a POST might have been processed). A connection idle for more
    than `keepalive_expiry` seconds is replaced before use: the server closes idle ones
    (uvicorn after 5 s), and one it is closing just then would fail the request.
    """

    def __init__(
        self,
        base: str,
        headers: dict[str, str],
        *,
        timeout: float = 300,
        keepalive_expiry: float = 2.0,
    ) -> None:
        scheme, _, rest = base.partition("://")
        if scheme != "http":
            raise ValueError(f"only http:// is supported, not {base!r}")
        host, _, port = rest.rstrip("/").partition(":")
        self.host, self.port = host, int(port or 80)
        self.timeout = timeout
        self._head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.keepalive_expiry = keepalive_expiry
        self._reader: Any = None
        self._writer: Any = None
        self._last_used = 0.0

    async def post_json(self, path: str, payload: Any) -> tuple[int, bytes]:
        """(status, body) of one POST."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        return await self._exchange(request)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of one GET (`path` with its query string, already encoded);
        `headers` are added to the client's own for this request only."""
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._head}{extra}\r\n"
        ).encode()
        return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        import asyncio

        if self._writer is not None and time.monotonic() - self._last_used > self.keepalive_expiry:
            await self.close()
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.timeout
                )
            self._writer.write(request)
            answer = await asyncio.wait_for(self._response(), self.timeout)
            self._last_used = time.monotonic()
            return answer
        except (
            TimeoutError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as exc:
            await self.close()
            raise HttpFailure(f"{type(exc).__name__}: {exc}") from exc

    async def _response(self) -> tuple[int, bytes]:
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 "):
            raise ValueError(f"not an HTTP/1.1 response: {lines[0]!r}")
        status = int(lines[0][9:12])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self._reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        else:
            body = await self._reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()


# -- memory -------------------------------------------------------------------------------
def _status_kb(pid: int | str, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process now, MB (Linux /proc)."""
    return _status_kb(pid, "VmRSS") / 1024


def rss_parts_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory split into private (anonymous) and file-backed pages, MB.

    The model's weights are memory-mapped from its file: their pages count as resident
    once touched (rows of the 250k-token embedding matrix as new words arrive), are shared
    by every process mapping the file, and the kernel can drop them. Private memory is
    what a leak would grow.
    """
    return {
        "rss": round(_status_kb(pid, "VmRSS") / 1024, 1),
        "anon": round(_status_kb(pid, "RssAnon") / 1024, 1),
        "file": round(_status_kb(pid, "RssFile") / 1024, 1),
    }


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident memory of a process so far, MB (Linux /proc)."""
    return _status_kb(pid, "VmHWM") / 1024


class RssSampler:
    """Samples the resident memory of some processes in the background."""

    def __init__(self, pids: list[int], every: float = 0.25) -> None:
        self.pids = pids
        self.every = every
        self.peak: dict[int, float] = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                with suppress(OSError):
                    self.peak[pid] = max(self.peak[pid], rss_mb(pid))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the machine and results --------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU count and load, so every figure says under which conditions it was taken."""
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_1min": round(load1, 2),
        "load_5min": round(load5, 2),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_result(name: str, data: dict[str, Any], path: Path | None = None) -> Path:
    """Write `data` as benchmarks/results/<name>.json (or `path`)."""
    target = path or RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


# -- databases and servers ----------------------------------------------------------------
def postgres_reachable(url: str = PG_DEFAULT_URL) -> bool:
    """True when a PostgreSQL server answers at `url`."""
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def scratch_database(url: str | None, data_dir: Path) -> Iterator[str]:
    """A migrated, empty database: a fresh schema on PostgreSQL (dropped afterwards), or a
    SQLite file in `data_dir`."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from kb.db import migrate

    if not url:
        data_dir.mkdir(parents=True, exist_ok=True)
        sqlite = f"sqlite:///{(data_dir / 'faqloop.db').resolve()}"
        migrate(sqlite)
        yield sqlite
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    scoped_url = scoped.render_as_string(hide_password=False)
    try:
        migrate(scoped_url)
        yield scoped_url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A `faqloop serve` process on loopback."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 600) -> float:
        """Wait until /healthz says ready; return the seconds it took."""
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"faqloop serve exited ({self.process.returncode}):\n{tail}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=5).json().get("status") == "ready":
                    return time.monotonic() - started
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.25)
        raise SystemExit(f"{self.base} did not become ready in {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def start_server(env: dict[str, str], log: Path) -> Server:
    """Start `faqloop serve` with `env` on a free loopback port (does not wait)."""
    port = free_port()
    full = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "FAQLOOP_LOG_LEVEL": "WARNING",
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
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
            cwd=ROOT,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(f"http://127.0.0.1:{port}", process, log)
