"""The public origin of absolute links (reply drafts, canonical URLs, the sitemap)."""

from __future__ import annotations

from fastapi import Request


def public_origin(base_url: str, request: Request) -> str:
    """FAQLOOP_BASE_URL when set, else the request's own origin; its scheme and host are as
    the trusted proxies report them (api/web/proxies.py rewrites the scope before this)."""
    return base_url.strip().rstrip("/") or str(request.base_url).rstrip("/")
