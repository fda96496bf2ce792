"""/v1/webhooks: register, list and remove outgoing webhooks, read their delivery log.

Admin API keys only (Bearer): no cookie reaches these endpoints, so there is nothing for
another site to forge. The secret is in the answer to POST and nowhere else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.web.deps import SessionDep, require
from api.web.schemas import ErrorBody, JsonInt
from kb.audit import Actor
from kb.errors import InvalidInput
from kb.models import ApiKey, Role, Webhook, WebhookDelivery
from kb.notify import webhooks
from kb.notify.webhooks import MAX_DESCRIPTION, MAX_MIN_DEMAND, MAX_SECRET, MIN_SECRET

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

AdminKey = Annotated[ApiKey, Depends(require(Role.admin))]
EventName = Literal["draft.demand", "flag.raised", "article.published"]
DeliveryStatus = Literal["pending", "sending", "delivered", "failed"]
WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The webhook's id.")]
# What kb.notify.webhooks.check_url accepts, as far as a pattern can say it (so a
# schema-valid URL is a valid one): http(s), a host name (or IPv4 address) of non-empty
# labels, a port from 1 to 65535, then printable ASCII without spaces or a #fragment.
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    r"[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*"
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5]))?"
    r"(?:[/?][!\"$-~]*)?$"
)
PRINTABLE_ASCII = r"^[!-~]+$"
MinDemand = Annotated[JsonInt, Field(ge=1, le=MAX_MIN_DEMAND)]


def _errors(*codes: int) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ErrorBody} for code in (401, 403, *codes)}


class WebhookCreate(BaseModel):
    """A webhook to register."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2000,
        pattern=URL_PATTERN,
        description="Where to POST events: an http:// or https:// URL (no user:password).",
        examples=["https://hooks.example.com/faqloop"],
    )
    events: list[EventName] = Field(
        min_length=1, max_length=3, description="The events to send.", examples=[["flag.raised"]]
    )
    min_demand: MinDemand | None = Field(
        None,
        description="draft.demand fires when a new draft has this many threads "
        "(default FAQLOOP_WEBHOOK_DRAFT_MIN_DEMAND).",
    )
    description: str = Field("", max_length=MAX_DESCRIPTION, description="A note for admins.")
    secret: str | None = Field(
        None,
        min_length=MIN_SECRET,
        max_length=MAX_SECRET,
        pattern=PRINTABLE_ASCII,
        description="The HMAC key of the signatures (printable ASCII, no spaces); made for "
        "you when left out.",
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        try:
            return webhooks.check_url(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc


class WebhookRead(BaseModel):
    """A registered webhook (never its secret)."""

    id: int
    url: str
    events: list[str]
    min_demand: int = Field(description="Threads a new draft needs before draft.demand fires.")
    description: str
    active: bool
    created_at: datetime
    created_by: str = Field(description="The admin (or key) that registered it.")


class WebhookCreated(WebhookRead):
    """The new webhook and its secret, shown this once."""

    secret: str = Field(description="The signing secret: store it now, it is never shown again.")


class DeliveryRead(BaseModel):
    """One event sent (or to be sent) to one webhook."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Also the X-Faqloop-Delivery header: the same on every retry.")
    event_id: int
    event: str = Field(description="draft.demand, flag.raised or article.published.")
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None = Field(description="What went wrong last time, if it did.")
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried.")
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    """One page of a webhook's delivery log, newest first."""

    items: list[DeliveryRead]
    total: int
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null at the end.")


def webhook_read(hook: Webhook) -> WebhookRead:
    """The JSON form of a webhook."""
    return WebhookRead(
        id=hook.id,
        url=hook.url,
        events=list(hook.events),
        min_demand=hook.min_demand,
        description=hook.description,
        active=hook.active,
        created_at=hook.created_at,
        created_by=hook.created_by,
    )


def delivery_read(d: WebhookDelivery) -> DeliveryRead:
    """The JSON form of a delivery."""
    return DeliveryRead(
        id=d.id,
        event_id=d.event_id,
        event=d.event.kind,
        status=d.status,
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at if d.status in ("pending", "sending") else None,
        created_at=d.created_at,
        last_attempt_at=d.last_attempt_at,
        delivered_at=d.delivered_at,
    )


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=201,
    responses=_errors(400, 422),
    summary="Register a webhook (admin)",
)
def create(
    body: WebhookCreate, request: Request, session: SessionDep, key: AdminKey
) -> WebhookCreated:
    """Register a webhook. The answer carries its signing secret, the only time it is shown;
    the registration is written to the audit trail (without the secret)."""
    settings = request.app.state.services.settings
    hook, secret = webhooks.create_webhook(
        session,
        url=body.url,
        events=list(body.events),
        min_demand=body.min_demand or settings.webhook_draft_min_demand,
        description=body.description,
        secret=body.secret,
        actor=Actor(key.name, "key"),
    )
    session.commit()
    return WebhookCreated(**webhook_read(hook).model_dump(), secret=secret)


@router.get("", response_model=list[WebhookRead], responses=_errors(), summary="List webhooks")
def list_all(session: SessionDep, key: AdminKey) -> list[WebhookRead]:
    """Every registered webhook, oldest first (secrets are never listed)."""
    return [webhook_read(h) for h in webhooks.list_webhooks(session)]


@router.get(
    "/{webhook_id}", response_model=WebhookRead, responses=_errors(404), summary="One webhook"
)
def read_one(webhook_id: WebhookId, session: SessionDep, key: AdminKey) -> WebhookRead:
    """One webhook (without its secret)."""
    return webhook_read(webhooks.get_webhook_or_raise(session, webhook_id))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=_errors(404),
    summary="Remove a webhook (admin)",
)
def delete(webhook_id: WebhookId, session: SessionDep, key: AdminKey) -> Response:
    """Remove a webhook and its delivery log; nothing more is sent to it (audit-recorded)."""
    webhooks.delete_webhook(session, webhook_id, actor=Actor(key.name, "key"))
    session.commit()
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    responses=_errors(400, 404),
    summary="A webhook's delivery log",
)
def deliveries(
    webhook_id: WebhookId,
    session: SessionDep,
    key: AdminKey,
    status: Annotated[DeliveryStatus | None, Query(description="Only this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DeliveryPage:
    """Deliveries to this webhook, newest first: status, attempts, the receiver's last
    status code and error, and when a pending one is tried next."""
    page = webhooks.list_deliveries(session, webhook_id, status=status, limit=limit, offset=offset)
    more = offset + len(page.deliveries) < page.total
    return DeliveryPage(
        items=[delivery_read(d) for d in page.deliveries],
        total=page.total,
        limit=limit,
        offset=offset,
        next_offset=offset + len(page.deliveries) if more else None,
    )
