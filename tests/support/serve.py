"""`faqloop serve` (and other `faqloop` commands) as child processes, for the tests that
need a real server: its port, its signals, its log."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.support.paths import CONTENT_DIR, ROOT, TEST_MODEL

FAQLOOP = [sys.executable, "-m", "api.cli.main"]
# How long a server may take to load the model and the index (a deadline, not a measurement).
GIVE_UP_AFTER = 300.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(data_dir: Path, db_url: str, models_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `faqloop` child: this process's, the test database, model and
    content, offline, plus `extra` (FAQLOOP_... settings)."""
    return {
        **os.environ,
        "FAQLOOP_DATA_DIR": str(data_dir),
        "FAQLOOP_DATABASE_URL": db_url,
        "FAQLOOP_EMBEDDING_MODEL": TEST_MODEL,
        "FAQLOOP_MODELS_DIR": str(models_dir),
        "FAQLOOP_CONTENT_DIR": str(CONTENT_DIR),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`faqloop <args>` to the end, `stdin` as its input, its output captured (never raises
    on a failing exit)."""
    return subprocess.run(
        [*FAQLOOP, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    """`faqloop <args>` in the background, its output appended to `log`."""
    with log.open("ab") as fh:
        return subprocess.Popen(
            [*FAQLOOP, *args], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no clean-up, as a crash or an out-of-memory kill would leave things."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful shutdown), SIGKILL if it takes over a minute."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill(proc)


def wait_until(
    base: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    ready: Callable[[httpx.Response], bool],
    timeout: float = GIVE_UP_AFTER,
) -> None:
    """Poll `base`/healthz until `ready` says so; fail with the log's tail if the process
    exits first or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if ready(httpx.get(f"{base}/healthz", timeout=5)):
                return
        assert time.monotonic() < deadline, (
            "the server never became ready:\n" + log.read_text(errors="replace")[-4000:]
        )
        time.sleep(0.25)


def is_ready(response: httpx.Response) -> bool:
    """/healthz says the index is loaded."""
    return response.status_code == 200


@contextlib.contextmanager
def serving(
    env: dict[str, str],
    log: Path,
    *,
    ready: Callable[[httpx.Response], bool] = is_ready,
    timeout: float = GIVE_UP_AFTER,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`faqloop serve` on a free loopback port, yielded (base URL, process) once `ready`;
    stopped with SIGTERM on the way out (the log is complete after the block)."""
    port = free_port()
    proc = start({**env, "FAQLOOP_PORT": str(port)}, "serve", log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(base, proc, log, ready, timeout)
        yield base, proc
    finally:
        stop(proc)
