"""Security headers of every editor page (/review/...), error pages and redirects included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No script but the app's own files, nothing framed or framing, forms only to this site.
# Styles may be inline (the pages carry their style blocks); scripts may not.
REVIEW_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
REVIEW_HEADERS = {
    "content-security-policy": REVIEW_CSP,
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
PREFIXES = ("/review", "/v1/audit")


class ReviewHeadersMiddleware:
    """Adds REVIEW_HEADERS (replacing any of the same name) to responses under /review and
    /v1/audit: a strict CSP with frame-ancestors 'none', X-Frame-Options DENY and
    Cache-Control no-store, so signed-in pages are neither framed nor cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not any(path == p or path.startswith(p + "/") for p in PREFIXES):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.encode() for name in REVIEW_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                headers += [(k.encode(), v.encode()) for k, v in REVIEW_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
