"""GET /healthz: ready only when the search index is loaded."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(services: ServicesDep) -> JSONResponse:
    """200 with index details when ready; 503 while loading or after a load error."""
    info = services.index.describe()
    if services.index.ready:
        body = Health(status="ready", index=info)
        return JSONResponse(body.model_dump(), status_code=200)
    status = "error" if services.load_error else "loading"
    body = Health(status=status, index=info, detail=services.load_error)
    return JSONResponse(body.model_dump(), status_code=503)
