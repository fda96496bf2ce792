"""Run every scale-and-speed benchmark in one go and check the targets of issue 8.

    make bench                                # = .venv/bin/python benchmarks/run_all.py
    .venv/bin/python benchmarks/run_all.py --quick    # small sizes, for a try-out
    .venv/bin/python benchmarks/run_all.py --only ceiling http_load
    .venv/bin/python benchmarks/run_all.py --quick --backends torch,onnx,onnx-int8 \
        --only ceiling http_load index_build      # the embedding backends side by side

Runs, one after another, each in its own process, on the same data (the 1,000-entry
benchmark knowledge base) and model: ceiling.py, http_load.py, peer_txtai.py (skipped with
a note when txtai is not installed: `make bench-peer`), index_build.py, load_test.py and
search_flood.py (agent suggest beside a public search flood; figures only, no target).
Each writes benchmarks/results/<name>.json; this script then prints one summary table,
checks the targets and writes benchmarks/results/summary.json:

- single-client p50 over HTTP within 1.5x the bare encode + search (ceiling, single);
- 32-client throughput over HTTP at least 70 % of the batched ceiling (the best of
  batches of 8, 16 and 32);
- zero errors everywhere;
- faqloop ahead of txtai on latency at equal or better recall (dense vs dense: same
  model, texts and exact search);
- the load test: every request answered, memory flat after warm-up (no upward trend).

With `--backends` (default: torch only), ceiling.py measures every backend's ceiling in
one process, and http_load.py and index_build.py run once per backend
(FAQLOOP_EMBED_BACKEND set for each; results <name>@<backend>.json); the targets are
checked on the first backend's figures and a table per backend follows. With onnx-int8 and
torch both run, issue 19's targets are checked too: the int8 server's single-client p50 for
Japanese posts (<= 10 ms and <= 0.6x SentenceTransformer.encode of a Japanese post), its
32-client throughput (>= 2x torch's and >= 180 req/s), peak RSS below torch's, and index
build texts/s (>= 3x torch's) at every size.

Full run on the 2-CPU VM: roughly 30-60 minutes, most of it embedding 100k texts for the
index-build figure and the 10,000-request load test. Quick run: about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import RESULTS, machine, print_table, write_result

HERE = Path(__file__).resolve().parent
ORDER = ("ceiling", "http_load", "peer_txtai", "index_build", "load_test", "search_flood")
# Arguments per benchmark: full run, quick run.
ARGS: dict[str, tuple[list[str], list[str]]] = {
    "ceiling": ([], ["--queries", "100"]),
    "http_load": ([], ["--requests", "100"]),
    "peer_txtai": ([], ["--queries", "200", "--no-hybrid"]),
    "index_build": ([], ["--sizes", "1000", "10000"]),
    "load_test": ([], ["--requests", "1000", "--warmup", "200"]),
    "search_flood": ([], ["--requests", "100"]),
}
# The HTTP latency may be at most this multiple of the bare encode + search.
SINGLE_RATIO = 1.5
# The 32-client throughput must reach this share of the batched ceiling.
THROUGHPUT_SHARE = 0.7
# Private memory counts as flat when its trend after warm-up stays under this (a leak of
# this size would add 50 MB over the 10,000 requests).
FLAT_MB_PER_1000 = 5.0


# Benchmarks run once per embedding backend (the others measure one backend, or all at once).
PER_BACKEND = ("http_load", "index_build")


def run(name: str, extra: list[str], backend: str | None = None) -> dict[str, Any] | None:
    """Run one benchmark; its JSON result, or None when it failed."""
    target = RESULTS / (f"{name}@{backend}.json" if backend else f"{name}.json")
    target.unlink(missing_ok=True)
    print(f"\n=== {name} {' '.join(extra)}{f' (backend {backend})' if backend else ''}", flush=True)
    env = {**os.environ, "FAQLOOP_EMBED_BACKEND": backend} if backend else None
    started = time.monotonic()
    code = subprocess.run(  # noqa: S603 (our own scripts, fixed arguments)
        [sys.executable, str(HERE / f"{name}.py"), *extra, "--json", str(target)],
        check=False,
        env=env,
    ).returncode
    print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    if not target.exists():
        return None
    result: dict[str, Any] = json.loads(target.read_text(encoding="utf-8"))
    result["exit_code"] = code
    return result


def checks(results: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """The targets, each with the measured figures and whether it was met."""
    out: list[dict[str, Any]] = []
    ceiling = results.get("ceiling") or {}
    http = (results.get("http_load") or {}).get("http", {})
    if ceiling and "1" in http:
        bare = ceiling["single"]["p50_ms"]
        ours = http["1"]["p50_ms"]
        out.append(
            {
                "target": f"1-client p50 over HTTP <= {SINGLE_RATIO}x bare encode + search",
                "measured": f"{ours:.1f} ms vs {bare:.1f} ms = {ours / bare:.2f}x",
                "met": ours <= SINGLE_RATIO * bare,
            }
        )
    if ceiling and "32" in http and ceiling.get("batched"):
        # The batched ceiling: the best throughput over the batch sizes measured, in one
        # call at a time or in lanes.
        lanes = ceiling.get("lanes", 1)
        candidates = [(f"batches of {b}", s["posts_per_s"]) for b, s in ceiling["batched"].items()]
        candidates += [
            (f"batches of {b} in {lanes} lanes", s["posts_per_s"])
            for b, s in ceiling.get("batched_lanes", {}).items()
        ]
        size, best = max(candidates, key=lambda x: x[1])
        # Steady state, every client busy (http_load.py); older results have only the total.
        ours = http["32"].get("steady_per_s", http["32"]["throughput_per_s"])
        out.append(
            {
                "target": f"32-client throughput >= {THROUGHPUT_SHARE:.0%} of batched ceiling",
                "measured": f"{ours:.1f} vs {best:.1f} posts/s ({size}) = {ours / best:.0%}",
                "met": ours >= THROUGHPUT_SHARE * best,
            }
        )
    errors = 0
    for name in ("http_load", "load_test"):
        r = results.get(name) or {}
        errors += sum(level.get("errors", 0) for level in r.get("http", {}).values())
        errors += sum(level.get("errors", 0) for level in r.get("in_process", {}).values())
        errors += r.get("errors", 0)
    # The agent's errors beside the public search flood (the flood's 429s are the point).
    flood = (results.get("search_flood") or {}).get("scenarios", {})
    errors += sum(s["agent"]["errors"] for s in flood.values())
    out.append({"target": "zero errors", "measured": f"{errors} errors", "met": errors == 0})
    peer = (results.get("peer_txtai") or {}).get("results", {})
    if "faqloop dense" in peer and "txtai dense" in peer:
        a, b = peer["faqloop dense"], peer["txtai dense"]
        # At least txtai's recall: the same texts, but faqloop discounts answer chunks
        # (docs/retrieval.md, "Long answers"), which txtai cannot, so faqloop may rank better.
        equal = a["mrr@10"] >= b["mrr@10"] - 0.005 and a["hit@1"] >= b["hit@1"] - 0.005
        out.append(
            {
                "target": "ahead of txtai on latency at equal or better recall (dense vs dense)",
                "measured": f"p50 {a['p50_ms']:.1f} vs {b['p50_ms']:.1f} ms; MRR@10 "
                f"{a['mrr@10']:.3f} vs {b['mrr@10']:.3f}",
                "met": equal and a["p50_ms"] < b["p50_ms"],
            }
        )
    load = results.get("load_test") or {}
    if load.get("memory"):
        slopes = load["private_memory_trend"]["slope_mb_per_1000"]
        halves = load["private_memory_trend"]["half_means_mb"]
        answered = load["sent"] - load["errors"]
        out.append(
            {
                "target": f"load test: all answered, private memory flat (slope < "
                f"{FLAT_MB_PER_1000:.0f} MB per 1,000 requests after warm-up)",
                "measured": f"{answered:,}/{load['sent']:,} answered at "
                f"{load['throughput_per_s']:.1f} req/s; slope "
                f"{', '.join(f'{g:+.1f}' for g in slopes)} MB per 1,000; half means "
                f"{'; '.join(f'{a:.0f} -> {b:.0f}' for a, b in halves)} MB",
                "met": answered == load["sent"] and max(slopes) < FLAT_MB_PER_1000,
            }
        )
    return out


def backend_checks(
    ceiling: dict[str, Any] | None, per_backend: dict[str, dict[str, dict[str, Any] | None]]
) -> list[dict[str, Any]]:
    """Issue 19's targets for the int8 backend against torch, all from this run's figures."""
    out: list[dict[str, Any]] = []
    http = {b: (r or {}).get("http", {}) for b, r in (per_backend.get("http_load") or {}).items()}
    int8, torch = http.get("onnx-int8", {}), http.get("torch", {})
    library = (ceiling or {}).get("single_library_encode_ja", {}).get("p50_ms")
    if "1-ja" in int8 and library:
        ours = int8["1-ja"]["p50_ms"]
        out.append(
            {
                "target": "int8: 1-client HTTP p50, Japanese post, <= 10 ms and <= 0.6x "
                "SentenceTransformer.encode (fp32)",
                "measured": f"{ours:.2f} ms; encode {library:.2f} ms = {ours / library:.2f}x",
                "met": ours <= 10 and ours <= 0.6 * library,
            }
        )
    if "32" in int8 and "32" in torch:
        ours = int8["32"].get("steady_per_s", int8["32"]["throughput_per_s"])
        base = torch["32"].get("steady_per_s", torch["32"]["throughput_per_s"])
        out.append(
            {
                "target": "int8: 32-client throughput >= 2x torch's and >= 180 req/s",
                "measured": f"{ours:.1f} vs {base:.1f} req/s = {ours / base:.2f}x",
                "met": ours >= 2 * base and ours >= 180,
            }
        )
        peak = {b: max(m.get("server_peak_rss_mb", 0) for m in h.values()) for b, h in http.items()}
        out.append(
            {
                "target": "int8: server peak RSS below torch's",
                "measured": f"{peak['onnx-int8']:.0f} vs {peak['torch']:.0f} MB",
                "met": peak["onnx-int8"] < peak["torch"],
            }
        )
    builds = per_backend.get("index_build") or {}
    rates = {
        b: {run["texts"]: run["texts_per_s"] for run in (r or {}).get("runs", [])}
        for b, r in builds.items()
    }
    for size in sorted(set(rates.get("onnx-int8", {})) & set(rates.get("torch", {}))):
        ours, base = rates["onnx-int8"][size], rates["torch"][size]
        out.append(
            {
                "target": f"int8: index build of {size:,} texts >= 3x torch's texts/s",
                "measured": f"{ours:.0f} vs {base:.0f} texts/s = {ours / base:.2f}x",
                "met": ours >= 3 * base,
            }
        )
    return out


def backend_rows(
    ceiling: dict[str, Any] | None, per_backend: dict[str, dict[str, dict[str, Any] | None]]
) -> list[list[Any]]:
    """One row per figure and backend: ceilings, CPU per post, suggest, index build, RSS."""
    rows: list[list[Any]] = []
    ceiling = ceiling or {}
    for b, cpu in (ceiling.get("cpu_ms_per_post") or {}).items():
        rows.append([b, "encoder CPU ms per post, 1 thread (single / batch 32)", f"{cpu}"])
    if ceiling.get("single"):
        rows.append(["torch", "ceiling single p50 ms", ceiling["single"]["p50_ms"]])
        rates = [s["posts_per_s"] for s in ceiling.get("batched", {}).values()]
        rates += [s["posts_per_s"] for s in ceiling.get("batched_lanes", {}).values()]
        if rates:
            rows.append(["torch", "batched ceiling posts/s (best)", max(rates)])
    for b, res in (ceiling.get("backends") or {}).items():
        rows.append([b, "ceiling single p50 ms", res["single"]["p50_ms"]])
        best = max(
            [s["posts_per_s"] for s in res["batched"].values()]
            + [s["posts_per_s"] for s in res["batched_lanes"].values()]
        )
        rows.append([b, "batched ceiling posts/s (best)", best])
    for b, r in (per_backend.get("http_load") or {}).items():
        for level, m in (r or {}).get("http", {}).items():
            rows.append(
                [
                    b,
                    f"HTTP {level} clients: p50 ms / steady req/s / errors / peak RSS MB",
                    f"{m.get('p50_ms')} / {m.get('steady_per_s', m.get('throughput_per_s'))} / "
                    f"{m.get('errors')} / {m.get('server_peak_rss_mb', '')}",
                ]
            )
        for level, m in (r or {}).get("in_process", {}).items():
            rows.append(
                [
                    b,
                    f"in-process {level} clients: p50 ms / req/s",
                    f"{m.get('p50_ms')} / {m.get('throughput_per_s')}",
                ]
            )
    for b, r in (per_backend.get("index_build") or {}).items():
        for size in (r or {}).get("runs", []):
            rows.append(
                [b, f"index build {size.get('texts')} texts: texts/s", size.get("texts_per_s")]
            )
    return rows


def main() -> None:
    """Run the benchmarks, print the summary and check the targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes (about 10 minutes).")
    parser.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER))
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="Run nothing: check the targets on the results already in benchmarks/results.",
    )
    parser.add_argument(
        "--backends",
        default="torch",
        help="Embedding backends, comma-separated (torch, onnx, onnx-int8); the first is "
        "the one the targets are checked on.",
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    allowed = ("torch", "onnx", "onnx-int8")
    if not backends or any(b not in allowed for b in backends):
        parser.error(f"--backends takes {', '.join(allowed)}, got {args.backends!r}")
    per_backend: dict[str, dict[str, dict[str, Any] | None]] = {}
    before = machine()
    results: dict[str, dict[str, Any] | None] = {}
    for name in ORDER:
        if name not in args.only:
            continue
        if args.from_results:
            path = RESULTS / f"{name}.json"
            results[name] = json.loads(path.read_text("utf-8")) if path.exists() else None
            continue
        full, quick = ARGS[name]
        extra = quick if args.quick else full
        if name == "ceiling":
            results[name] = run(name, [*extra, "--backends", ",".join(backends)])
        elif name in PER_BACKEND:
            per_backend[name] = {b: run(name, extra, b) for b in backends}
            results[name] = per_backend[name][backends[0]]
        else:
            results[name] = run(name, extra)
    after = machine()
    table = checks(results) + backend_checks(results.get("ceiling"), per_backend)
    print(
        f"\n=== summary ({'quick' if args.quick else 'full'} run): {before['cpus']} CPUs, load "
        f"average {before['load_1min']} before, {after['load_1min']} after "
        "(above ~1 the machine was busy with other work)"
    )
    print_table(
        ["target", "measured", "met"],
        [[c["target"], c["measured"], "yes" if c["met"] else "NO"] for c in table],
    )
    if len(backends) > 1 or backends != ["torch"]:
        print_table(
            ["backend", "what", "figure"], backend_rows(results.get("ceiling"), per_backend)
        )
    failed = [n for n, r in results.items() if r is None or r.get("exit_code")]
    failed += [
        f"{n}@{b}"
        for n, runs in per_backend.items()
        for b, r in runs.items()
        if not r or r.get("exit_code")
    ]
    if failed:
        print(f"benchmarks that did not finish cleanly: {', '.join(failed)}")
    summary = {
        "quick": args.quick,
        "machine_before": before,
        "machine_after": after,
        "targets": table,
        "failed": failed,
    }
    print(f"written to {write_result('summary', summary)}")


if __name__ == "__main__":
    main()
