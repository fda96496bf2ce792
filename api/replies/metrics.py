"""GET /v1/metrics: how the agents' assistant did over a time window (JSON)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.replies.deps import ReplyKitDep
from api.replies.schemas import AgentMetricsRead
from api.web.deps import AgentKey, ServicesDep, SessionDep
from api.web.schemas import ErrorBody, IsoDateTime
from kb.errors import InvalidInput
from kb.replies.metrics import agent_metrics

router = APIRouter(prefix="/v1", tags=["metrics"])


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get(
    "/metrics",
    response_model=AgentMetricsRead,
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 422)},
)
def get_metrics(
    services: ServicesDep,
    session: SessionDep,
    _key: AgentKey,
    kit: ReplyKitDep,
    start: Annotated[
        IsoDateTime | None, Query(description="Window start (ISO 8601; default: end − days).")
    ] = None,
    end: Annotated[IsoDateTime | None, Query(description="Window end (default: now).")] = None,
    days: Annotated[float, Query(gt=0, le=3660, description="Window length if no start.")] = 7,
    gaps: Annotated[int, Query(ge=0, le=100, description="How many content gaps.")] = 10,
) -> AgentMetricsRead:
    """Posts seen, suggestions, coverage, acceptance, one-reply resolution, FAQ growth, gaps."""
    try:
        until = _aware(end) or datetime.now(UTC)
        since = _aware(start) or until - timedelta(days=days)
    except OverflowError as exc:
        raise InvalidInput("the window is outside the years 1 to 9999") from exc
    if since >= until:
        raise InvalidInput("start must be before end")
    metrics = agent_metrics(
        session,
        start=since,
        end=until,
        tokenize=services.index.tokenizer.tokenize,
        gaps=gaps,
        threshold=kit.threshold(),
    )
    return AgentMetricsRead.model_validate(metrics, from_attributes=True)
