"""Issue 18's reproduction against the real server: `faqloop serve` on loopback (where
uvicorn would believe `X-Forwarded-For` by default) ignores forged forwarding headers, so
one client cannot dodge the per-address vote limit by naming a new address each time.

(tests/web/test_proxies.py checks the same rules in-process, through TestClient.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.paths import CONTENT_DIR, ROOT, TEST_MODEL

SLUG = "esim-iphone-activate"
# How long the server may take to start listening (a deadline, not a measurement).
GIVE_UP_AFTER = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_on_loopback_ignores_forged_forwarding_headers(
    tmp_path: Path, db_url: str, models_dir: Path, seeded: None
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "FAQLOOP_DATA_DIR": str(tmp_path / "data"),
        "FAQLOOP_DATABASE_URL": db_url,
        "FAQLOOP_EMBEDDING_MODEL": TEST_MODEL,
        "FAQLOOP_MODELS_DIR": str(models_dir),
        "FAQLOOP_CONTENT_DIR": str(CONTENT_DIR),
        "FAQLOOP_PORT": str(port),
        "FAQLOOP_VOTE_RATE_LIMIT_IP": "3",
        "FAQLOOP_TORCH_THREADS": "1",
        "FAQLOOP_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("FAQLOOP_TRUSTED_PROXIES", None)  # the default: no proxy is trusted
    env.pop("FAQLOOP_REDIS_URL", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli.main", "serve"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + GIVE_UP_AFTER
        listening = False
        while not listening:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            with contextlib.suppress(httpx.HTTPError):
                # Any answer will do (503 while the index loads): votes need no index.
                listening = httpx.get(f"{base}/healthz", timeout=5).status_code in (200, 503)
            if not listening:
                time.sleep(0.5)
        codes = []
        for i in range(5):
            # A new browser each time (no cookie), claiming a new address each time.
            forged = {
                "X-Forwarded-For": f"203.0.113.{i + 1}",
                "Forwarded": f"for=198.51.100.{i + 1}",
                "X-Real-IP": f"192.0.2.{i + 1}",
            }
            with httpx.Client(base_url=base, timeout=60, headers=forged) as browser:
                article = browser.get(f"/v1/public/faqs/{SLUG}")
                assert article.status_code == 200, article.text
                r = browser.post(
                    f"/v1/public/faqs/{SLUG}/vote",
                    json={"helpful": True},
                    headers={"X-CSRF-Token": article.json()["csrf_token"]},
                )
            codes.append(r.status_code)
        # All five come from 127.0.0.1, whatever they claim: its budget of 3, then 429.
        assert codes == [200, 200, 200, 429, 429], codes
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
