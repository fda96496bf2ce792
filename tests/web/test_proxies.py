"""Trusted proxies: X-Forwarded-For / X-Forwarded-Proto / Forwarded are believed only from
the addresses in FAQLOOP_TRUSTED_PROXIES, so the per-address vote limit cannot be dodged by
a forged header, and `request.client` / `request.url.scheme` are right behind a proxy."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from api.settings import Settings
from api.web.proxies import TrustedProxies, TrustedProxyMiddleware, parse_proxies
from indexer.embedding.encoders import CachedEmbedder

SLUG = "esim-iphone-activate"


def _echo_app(trusted: str) -> FastAPI:
    app = FastAPI()

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, str | None]:
        return {
            "client": request.client.host if request.client else None,
            "scheme": request.url.scheme,
            "base": str(request.base_url),
        }

    app.add_middleware(TrustedProxyMiddleware, proxies=TrustedProxies(parse_proxies(trusted)))
    return app


def _whoami(trusted: str, peer: str, headers: dict[str, str]) -> dict[str, str]:
    with TestClient(_echo_app(trusted), client=(peer, 5555)) as client:
        body: dict[str, str] = client.get("/whoami", headers=headers).json()
        return body


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    forged = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=198.51.100.1;proto=https",
    }
    # No proxies configured (the default): even loopback is not believed.
    assert _whoami("", "127.0.0.1", forged) == {
        "client": "127.0.0.1",
        "scheme": "http",
        "base": "http://testserver/",
    }
    # A peer outside the list is not believed either.
    assert _whoami("10.0.0.0/8", "192.0.2.7", forged)["client"] == "192.0.2.7"


def test_x_forwarded_for_from_a_trusted_proxy() -> None:
    got = _whoami(
        "10.0.0.0/8",
        "10.0.0.5",
        {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
    )
    assert got == {"client": "203.0.113.9", "scheme": "https", "base": "https://testserver/"}


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    # The client forged a first entry; the trusted chain appended the real address.
    headers = {"X-Forwarded-For": "1.2.3.4, 203.0.113.9, 10.0.0.7"}
    assert _whoami("10.0.0.0/8", "10.0.0.5", headers)["client"] == "203.0.113.9"
    # Several headers are one list.
    got = _whoami(
        "10.0.0.0/8, 192.168.1.1",
        "192.168.1.1",
        {"X-Forwarded-For": "203.0.113.9, 10.1.1.1"},
    )
    assert got["client"] == "203.0.113.9"


def test_rfc7239_forwarded_header() -> None:
    headers = {
        "Forwarded": 'for=198.51.100.4;proto=https, for="[2001:db8::7]:4711";proto=http',
    }
    got = _whoami("2001:db8::/32, 10.0.0.5", "10.0.0.5", headers)
    # 2001:db8::7 is a trusted proxy too: the client is the hop before it.
    assert got["client"] == "198.51.100.4" and got["scheme"] == "https"
    got = _whoami("10.0.0.5", "10.0.0.5", {"Forwarded": 'for="[2001:db8::7]:4711";proto=https'})
    assert got["client"] == "2001:db8::7" and got["scheme"] == "https"
    # Forwarded wins over X-Forwarded-For; an obfuscated hop stops the walk at the proxy.
    got = _whoami(
        "10.0.0.5",
        "10.0.0.5",
        {"Forwarded": "for=198.51.100.4", "X-Forwarded-For": "203.0.113.9"},
    )
    assert got["client"] == "198.51.100.4"
    assert _whoami("10.0.0.5", "10.0.0.5", {"Forwarded": "for=_hidden"})["client"] == "10.0.0.5"
    assert _whoami("10.0.0.5", "10.0.0.5", {"Forwarded": "for=unknown"})["client"] == "10.0.0.5"


def test_garbage_headers_never_fail_the_request() -> None:
    for value in ("", ",,,", "not-an-ip", "999.1.1.1", "[::1", 'for="', "for=;;;proto="):
        for name in ("X-Forwarded-For", "Forwarded", "X-Forwarded-Proto"):
            got = _whoami("10.0.0.5", "10.0.0.5", {name: value})
            assert got["client"] == "10.0.0.5" and got["scheme"] == "http"


def test_the_setting_rejects_what_is_not_an_address() -> None:
    with pytest.raises(ValidationError, match="not an IP address"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.example", _env_file=None)
    ok = Settings(trusted_proxies="10.0.0.0/8 ::1", _env_file=None)
    assert [str(n) for n in parse_proxies(ok.trusted_proxies)] == ["10.0.0.0/8", "::1/128"]


def _votes(client: TestClient, forged: bool, n: int) -> list[int]:
    codes = []
    for i in range(n):
        article = client.get(f"/v1/public/faqs/{SLUG}")
        token = article.json()["csrf_token"]
        headers = {"X-CSRF-Token": token}
        if forged:
            headers["X-Forwarded-For"] = f"203.0.113.{i + 1}"
        r = client.post(f"/v1/public/faqs/{SLUG}/vote", json={"helpful": True}, headers=headers)
        codes.append(r.status_code)
        client.cookies.clear()  # the next vote comes from a "new" browser
    return codes


def test_a_forged_header_does_not_dodge_the_vote_limit_per_address(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    limited = settings.model_copy(update={"vote_rate_limit_ip": 3})
    with TestClient(create_app(limited, embedder=embedder), client=("192.0.2.10", 1)) as c:
        codes = _votes(c, forged=True, n=5)
    assert codes == [200, 200, 200, 429, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    limited = settings.model_copy(update={"vote_rate_limit_ip": 3, "trusted_proxies": "10.0.0.5"})
    with TestClient(create_app(limited, embedder=embedder), client=("10.0.0.5", 1)) as c:
        assert _votes(c, forged=True, n=5) == [200] * 5  # five clients behind the proxy
        assert _votes(c, forged=False, n=4) == [200, 200, 200, 429]  # the proxy itself
