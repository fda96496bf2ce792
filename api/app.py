"""create_app(settings): the FastAPI application, built from arguments (no globals)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.routers import drafts, faqs, health, public, review, site, suggest, threads
from api.settings import Settings
from api.state import Services, build_services
from indexer.embedding import Embedder
from kb import errors

log = logging.getLogger(__name__)

STATUS = {
    errors.InvalidInput: 400,
    errors.ContentError: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidTransition: 409,
    errors.RateLimited: 429,
    errors.IndexNotReady: 503,
}


def _status_of(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _open_index(services: Services) -> None:
    try:
        outcome = services.index.open(services.session_factory)
        # The first encode pays for lazy initialisation in torch; do it before traffic does.
        services.embedder.encode_queries(["warm-up"])
        log.info("index ready: %s", outcome)
    except Exception as exc:
        services.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("could not open the index")


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    load_in_background: bool = False,
) -> FastAPI:
    """Build the app; the lifespan loads the model and the index.

    With `load_in_background` the server starts answering at once and /healthz reports
    "loading" until the index is ready (what `faqloop serve` uses).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings, embedder=embedder)
        app.state.services = services
        if load_in_background:
            threading.Thread(target=_open_index, args=(services,), daemon=True).start()
        else:
            _open_index(services)
        services.start_sync_loop(settings.sync_interval)
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="faqloop",
        version="0.1.0",
        summary="FAQ suggestions for support replies, and the loop that improves the FAQ.",
        lifespan=lifespan,
    )

    @app.exception_handler(errors.DomainError)
    async def domain_error(request: Request, exc: errors.DomainError) -> Response:
        status = _status_of(exc)
        if not request.url.path.startswith("/v1") and request.url.path != "/healthz":
            return site.error_page(request, status, exc.message)
        return JSONResponse(
            {"error": exc.code, "detail": exc.message},
            status_code=status,
            headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
        )

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
    app.include_router(faqs.router)
    app.include_router(public.router)
    app.include_router(site.router)
    app.include_router(threads.router)
    app.include_router(drafts.router)
    app.include_router(review.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
