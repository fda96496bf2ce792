"""Issue 18's reproduction against the real server: `faqloop serve` on loopback (where
uvicorn would believe `X-Forwarded-For` by default) ignores forged forwarding headers, so
one client cannot dodge the per-address vote limit by naming a new address each time.

(tests/web/test_proxies.py checks the same rules in-process, through TestClient.)
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.serve import serve_env, serving

SLUG = "esim-iphone-activate"


def _listening(response: httpx.Response) -> bool:
    # Any answer will do (503 while the index loads): votes need no index.
    return response.status_code in (200, 503)


def test_serve_on_loopback_ignores_forged_forwarding_headers(
    tmp_path: Path, db_url: str, models_dir: Path, seeded: None
) -> None:
    env = serve_env(
        tmp_path / "data",
        db_url,
        models_dir,
        FAQLOOP_VOTE_RATE_LIMIT_IP="3",
        FAQLOOP_TORCH_THREADS="1",
        FAQLOOP_LOG_LEVEL="WARNING",
    )
    env.pop("FAQLOOP_TRUSTED_PROXIES", None)  # the default: no proxy is trusted
    env.pop("FAQLOOP_REDIS_URL", None)
    with serving(env, tmp_path / "serve.log", ready=_listening) as (base, _):
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
