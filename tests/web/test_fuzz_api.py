"""Schemathesis against the app's own OpenAPI schema: no 5xx, every answer as documented.

Every operation of the schema (the ones other features add included, since the list comes
from the running app) gets schema-valid and schema-violating requests with a valid editor
key, through the real app on a seeded database. All schemathesis checks run: no server
error, status codes, content types, headers and bodies as the schema declares them, bad
input rejected. The number of examples per operation is bounded to keep the run short.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder

# Per operation and generation mode (about 30 operations × 2 modes); raise it for a deeper
# run, e.g. FAQLOOP_FUZZ_EXAMPLES=200.
EXAMPLES = int(os.environ.get("FAQLOOP_FUZZ_EXAMPLES", "12"))
CLIENT_TIMEOUT = 120
# Schema-valid requests must be accepted, except for the rules JSON Schema cannot state and
# the API documents as 400 (`k` above the configured maximum, a post that is empty once
# cleaned), and for answers about state (unknown id 404, conflict 409). A 422 here would
# mean the schema and the validation disagree, so it stays a failure.
#
# NUL characters are refused by the API's text rules (422, api/web/text.py, docs/api.md),
# which JSON Schema cannot state: schema-valid data leaves them out.
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"allow-x00": False},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]
            }
        },
    }
)


@pytest.fixture
def api_schema(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(settings, embedder=embedder)
    # from_asgi starts the app's lifespan once (services, index) and keeps it for the test.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    try:
        yield schema
    finally:
        asgi.shutdown_lifespans()


def _run_operation(
    operation: Any, mode: GenerationMode, headers: dict[str, str]
) -> tuple[int, list[str]]:
    calls = 0
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        try:
            # The app answers 504 itself after FAQLOOP_REQUEST_TIMEOUT (30 s); the client
            # waits longer than that so a slow operation is judged by the app's answer.
            case.call_and_validate(headers=dict(headers), timeout=CLIENT_TIMEOUT)
        except (AssertionError, FailureGroup) as exc:
            failures.append(str(exc)[:4000])

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request"
    return calls, failures


def test_every_operation_answers_as_documented(
    api_schema: schemathesis.BaseSchema, editor_headers: dict[str, str]
) -> None:
    operations = [r.ok() for r in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    # The schema is the app's: the core operations are in it (new features add more).
    assert {"POST /v1/suggest", "GET /v1/faqs", "POST /v1/threads", "GET /metrics"} <= labels
    report: dict[str, tuple[int, int]] = {}
    problems: list[str] = []
    started = time.perf_counter()
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            calls, failures = _run_operation(op, mode, editor_headers)
            report[f"{op.label} [{mode.value}]"] = (calls, len(failures))
            problems += [f"{op.label} [{mode.value}]: {f}" for f in failures]
    elapsed = time.perf_counter() - started
    total = sum(c for c, _ in report.values())
    print(f"\nfuzzed {len(operations)} operations with {total} requests in {elapsed:.1f} s")
    for label, (calls, failed) in sorted(report.items()):
        print(f"  {label}: {calls} requests, {failed} failing")
    assert not problems, "\n\n".join(problems[:10])
