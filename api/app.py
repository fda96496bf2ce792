"""create_app(settings): the FastAPI application, built from arguments (no globals)."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.audit import pages as audit_pages
from api.audit import routes as audit
from api.auth import admin as admin_pages
from api.auth import pages as sign_in
from api.auth.headers import ReviewHeadersMiddleware
from api.capture import drafts, threads
from api.capture import pages as review
from api.faqs import pages as article_pages
from api.faqs import routes as faqs
from api.health import pages as editor
from api.health import routes as flags
from api.health.deps import start_health_loop
from api.notify import pages as webhook_pages
from api.notify import routes as webhooks
from api.notify.worker import start_delivery_worker
from api.ops import healthz as health
from api.ops.maintenance import start_prune_loop
from api.replies import metrics as agent_metrics
from api.replies import outcomes
from api.settings import Settings
from api.site import pages as site
from api.site import routes as public
from api.state import Services, build_services
from api.suggest import routes as suggest
from api.web import observability
from api.web.concurrency import install_conflict_handlers
from api.web.limits import reject_unknown_query_parameters
from api.web.text import TextHygieneMiddleware
from indexer.embedding.encoders import Embedder
from kb import errors
from kb.faqs.content import load_categories

log = logging.getLogger(__name__)

STATUS = {
    errors.Unprocessable: 422,
    errors.InvalidInput: 400,
    errors.ContentError: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.PreconditionFailed: 412,
    errors.Conflict: 409,
    errors.InvalidTransition: 409,
    errors.TooLarge: 413,
    errors.Busy: 503,
    errors.RateLimited: 429,
    errors.IndexNotReady: 503,
}


def _status_of(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _error_headers(exc: errors.DomainError, status: int) -> dict[str, str] | None:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, errors.RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if status == 503:
        return {"Retry-After": "5"}
    return None


class StartupFreeze:
    """Keeps what the process built at start-up out of the cyclic GC's collections while the
    app runs (`gc.freeze`; FAQLOOP_GC_FREEZE).

    The model, the index, the tokenizers and the app are ~200,000 tracked objects that live
    as long as the process. Every full collection walked all of them: ~140 ms with the GIL
    held, once per ~1,000 requests at 32 clients, 0.13-0.16 ms per request in all. Frozen,
    a full collection walks only what was made since (docs/scale.md, "Start-up objects frozen").
    Frozen objects are still freed when their last reference goes; only a reference cycle
    among them would wait for `release`, which the app calls when it stops. Freezing and
    releasing are constant-time.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.frozen = False
        self._stopped = False
        self._lock = threading.Lock()

    def freeze(self) -> None:
        """Freeze the heap as it is now (not after `release`: the app has stopped)."""
        with self._lock:
            if self.enabled and not self._stopped and not self.frozen:
                gc.freeze()
                self.frozen = True

    def release(self) -> None:
        """Give the frozen objects back to the collector; no freeze after this."""
        with self._lock:
            self._stopped = True
            if self.frozen:
                gc.unfreeze()
                self.frozen = False


def _open_index(services: Services, startup: StartupFreeze | None = None) -> None:
    try:
        outcome = services.index.open(services.session_factory)
        # The first encode pays for lazy initialisation in torch; do it before traffic does.
        services.embedder.encode_queries(["warm-up"])
        log.info("index ready: %s", outcome)
    except Exception as exc:
        services.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("could not open the index")
    if startup is not None:
        startup.freeze()  # the model and the index are loaded: start-up is over


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    load_in_background: bool = False,
    deliver_webhooks: bool = False,
) -> FastAPI:
    """Build the app; the lifespan loads the model and the index.

    With `load_in_background` the server starts answering at once and /healthz reports
    "loading" until the index is ready (what `faqloop serve` uses). With
    `deliver_webhooks` the process runs a webhook delivery worker (`faqloop serve` does,
    unless FAQLOOP_WEBHOOK_POLL_INTERVAL is 0).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync handlers run in AnyIO's thread pool, on this event loop's limiter.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        services = build_services(settings, embedder=embedder)
        app.state.services = services
        if not settings.base_url.strip():
            log.warning(
                "FAQLOOP_BASE_URL is not set: reply drafts and article links use each "
                "request's own origin; set it to the public site's address"
            )
        app.state.metrics.start()  # embedding batch sizes, the index build's included
        startup = StartupFreeze(settings.gc_freeze)
        app.state.startup_freeze = startup
        if load_in_background:
            threading.Thread(target=_open_index, args=(services, startup), daemon=True).start()
        else:
            _open_index(services, startup)
        services.start_sync_loop(settings.sync_interval)
        # Content health in the background (FAQLOOP_HEALTH_INTERVAL; never blocks requests).
        health_loop = start_health_loop(app.state, services)
        # Both run once per cluster, whatever the number of replicas (kb/ops/jobs.py).
        prune_loop = start_prune_loop(app.state, services)
        # Webhook deliveries, claimed in the database: safe on every replica (kb/notify/).
        webhook_worker = (
            start_delivery_worker(settings, services.session_factory) if deliver_webhooks else None
        )
        app.state.webhook_worker = webhook_worker
        # One GIL for the handlers, the loop and the model threads (FAQLOOP_GIL_SWITCH_MS).
        switch_before = sys.getswitchinterval()
        sys.setswitchinterval(settings.gil_switch_ms / 1000)
        try:
            yield
        finally:
            if webhook_worker is not None:
                webhook_worker.stop()
            prune_loop.stop()
            health_loop.stop()
            app.state.metrics.stop()
            services.close()
            sys.setswitchinterval(switch_before)
            startup.release()

    app = FastAPI(
        title="faqloop",
        version="0.1.0",
        summary="FAQ suggestions for support replies, and the loop that improves the FAQ.",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query_parameters)],
        # /docs and /redoc come from packaged assets (api/web/apidocs.py), not a CDN.
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(errors.DomainError)
    async def domain_error(request: Request, exc: errors.DomainError) -> Response:
        status = _status_of(exc)
        if not request.url.path.startswith("/v1") and request.url.path != "/healthz":
            return site.error_page(request, status, exc.message)
        return JSONResponse(
            {"error": exc.code, "detail": exc.message},
            status_code=status,
            headers=_error_headers(exc, status),
        )

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def out_of_range(request: Request, exc: Exception) -> Response:
        # A number beyond the database's integer range, or text it cannot store (NUL on
        # PostgreSQL): the request is at fault, not the server.
        message = "a number or a text in the request is outside what the database can store"
        if request.url.path.startswith("/v1"):
            return JSONResponse({"error": "invalid_input", "detail": message}, status_code=400)
        return site.error_page(request, 400, message)

    install_conflict_handlers(app)  # a lost race (unique key, deadlock) is 409, never 500

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return JSONResponse(
                {"error": "invalid_json", "detail": "the request body is not valid JSON"},
                status_code=400,
            )
        detail = [
            {"loc": list(p.get("loc", ())), "msg": p.get("msg", ""), "type": p.get("type", "")}
            for p in problems
        ]
        return JSONResponse({"error": "validation_error", "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/v1") and request.url.path != "/healthz":
            return site.error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse(
            {"error": "http_error", "detail": exc.detail}, status_code=exc.status_code
        )

    app.include_router(health.router)
    app.include_router(suggest.router)
    app.include_router(outcomes.router)
    app.include_router(agent_metrics.router)
    app.include_router(faqs.router)
    app.include_router(public.router)
    app.include_router(site.router)
    app.include_router(threads.router)
    app.include_router(drafts.router)
    app.include_router(sign_in.router)
    app.include_router(admin_pages.router)
    app.include_router(webhooks.router)
    app.include_router(webhook_pages.router)
    app.include_router(audit.router)
    app.include_router(audit_pages.router)
    app.include_router(review.router)
    app.include_router(article_pages.router)
    app.include_router(flags.router)
    app.include_router(editor.router)
    site_static = StaticFiles(directory=Path(__file__).parent / "site" / "static")
    app.mount("/static", site_static, name="static")
    # No NUL, lone surrogate or invalid UTF-8 in any query, form or JSON text (api/web/text.py);
    # added first, so it runs inside the limits below (a body is bounded before it is read).
    app.add_middleware(TextHygieneMiddleware)
    # CSP, X-Frame-Options, Cache-Control: no-store on every /review answer (api/auth/headers.py).
    app.add_middleware(ReviewHeadersMiddleware)
    # Limits, request ids, JSON logs and /metrics (api/observability.py, api/limits.py).
    observability.install(app, settings)
    _document_categories(app, settings.content_dir)
    return app


# Request bodies whose `category` must be a key of the content folder's categories.yaml.
_CATEGORY_BODIES = ("FaqCreate", "FaqUpdate", "DraftUpdate", "DraftPublish")


def _document_categories(app: FastAPI, content_dir: Path) -> None:
    """State the managed categories as an enum in OpenAPI, so the schema says what is valid."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        known = sorted(load_categories(content_dir))
        if known:
            components = schema.get("components", {}).get("schemas", {})
            for name in _CATEGORY_BODIES:
                prop = components.get(name, {}).get("properties", {}).get("category")
                if prop is None:
                    continue
                if "anyOf" in prop:  # optional: the string branch gets the enum
                    for branch in prop["anyOf"]:
                        if branch.get("type") == "string":
                            branch["enum"] = known
                else:
                    prop["enum"] = known
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
