"""/docs (Swagger UI) and /redoc (ReDoc) from files shipped with the package (no CDN).

The assets are vendored in `api/web/static/docs/` with their licences (Swagger UI 4.15.5,
Apache-2.0; ReDoc 2.5.0, MIT) and served under `/docs-assets/`. The pages carry no inline
script and the site's Content-Security-Policy; ReDoc additionally needs inline styles and a
`blob:` worker, which its page's policy allows and nothing else.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "docs"
ASSETS_URL = "/docs-assets"
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
REDOC_CSP = DOCS_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'") + (
    "; worker-src 'self' blob:"
)
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _page(title: str, head: str, body: str, csp: str) -> HTMLResponse:
    html = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, **_HEADERS})


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc from the packaged assets (create the app with docs_url=None
    and redoc_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    title = f"{app.title} API"
    openapi_url = escape(app.openapi_url or "/openapi.json")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return _page(
            title,
            f'<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">\n',
            f'<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>\n'
            f'<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>\n'
            f'<script src="{ASSETS_URL}/swagger-init.js"></script>\n',
            DOCS_CSP,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _page(
            title,
            "",
            f'<div id="redoc" data-openapi-url="{openapi_url}"></div>\n'
            f'<script src="{ASSETS_URL}/redoc.standalone.js"></script>\n'
            f'<script src="{ASSETS_URL}/redoc-init.js"></script>\n',
            REDOC_CSP,
        )
