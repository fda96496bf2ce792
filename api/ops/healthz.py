"""GET /healthz: ready only when the search index is loaded."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.ops.schemas import Health
from api.web.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(services: ServicesDep) -> JSONResponse:
    """200 with index details when ready; 503 while loading or after a load error."""
    info = {**services.index.describe(), **services.index.activity()}
    if services.index.ready:
        body = Health(status="ready", index=info)
        return JSONResponse(body.model_dump(), status_code=200)
    if services.load_error:
        body = Health(status="error", index=info, detail=services.load_error)
    else:
        body = Health(status="loading", index=info)
    return JSONResponse(body.model_dump(), status_code=503)
