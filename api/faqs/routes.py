"""FAQ entries: list and read (agents), create and revise (editors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.faqs.schemas import (
    FaqCreate,
    FaqCreated,
    FaqList,
    FaqRead,
    FaqSummary,
    FaqUpdate,
    PhrasingRead,
    RevisionRead,
)
from api.web.deps import AgentKey, EditorKey, ServicesDep, SessionDep
from api.web.schemas import ErrorBody
from kb.faqs import entries as faqs
from kb.models import EntryStatus, FaqEntry
from kb.suggest.service import article_url

router = APIRouter(prefix="/v1/faqs", tags=["faqs"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409)
}


def summary(entry: FaqEntry, base_url: str) -> FaqSummary:
    """The list view of an entry."""
    rev = entry.current_revision
    return FaqSummary(
        id=entry.id,
        slug=entry.slug,
        category=entry.category,
        lang=entry.language,
        status=entry.status.value,
        question=rev.question if rev else "",
        url=article_url(base_url, entry.slug),
        translation_group=entry.translation_group,
        revision=rev.number if rev else 0,
    )


def _read(session: Session, entry: FaqEntry, base_url: str) -> FaqRead:
    rev = entry.current_revision
    translations: dict[str, int] = {}
    if entry.translation_group:
        rows = session.execute(
            select(FaqEntry.language, FaqEntry.id).where(
                FaqEntry.translation_group == entry.translation_group, FaqEntry.id != entry.id
            )
        )
        translations = {lang: i for lang, i in rows}
    return FaqRead(
        **summary(entry, base_url).model_dump(),
        answer=rev.answer if rev else "",
        phrasings=[PhrasingRead.model_validate(p) for p in entry.phrasings],
        revisions=[RevisionRead.model_validate(r) for r in faqs.list_revisions(session, entry.id)],
        translations=translations,
    )


@router.get("", response_model=FaqList, responses=_ERRORS)
def list_faqs(
    services: ServicesDep,
    session: SessionDep,
    _key: AgentKey,
    lang: Annotated[str | None, Query(pattern="^(ja|en)$")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    status: EntryStatus | None = EntryStatus.published,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FaqList:
    """Entries, filtered by language, category and status."""
    rows, total = faqs.list_entries(
        session, language=lang, category=category, status=status, limit=limit, offset=offset
    )
    return FaqList(items=[summary(e, services.settings.base_url) for e in rows], total=total)


@router.get("/{faq_id}", response_model=FaqRead, responses=_ERRORS)
def get_faq(faq_id: int, services: ServicesDep, session: SessionDep, _key: AgentKey) -> FaqRead:
    """One entry with its phrasings and revision history."""
    entry = faqs.get_entry_or_raise(session, faq_id)
    return _read(session, entry, services.settings.base_url)


@router.post("", response_model=FaqCreated, status_code=201, responses=_ERRORS)
def create_faq(
    body: FaqCreate, services: ServicesDep, session: SessionDep, key: EditorKey
) -> FaqCreated:
    """Create and publish an entry; it is searchable when this call returns."""
    entry = faqs.create_entry(
        session,
        question=body.question,
        answer=body.answer,
        category=body.category,
        language=body.lang,
        phrasings=body.phrasings or [],
        slug=body.slug,
        translation_group=body.translation_group,
        author=key.name,
        reason=body.reason or "created",
    )
    created = FaqCreated(
        id=entry.id,
        slug=entry.slug,
        revision=1,
        url=article_url(services.settings.base_url, entry.slug),
    )
    services.index.commit_and_sync(session, services.session_factory)
    return created


@router.put("/{faq_id}", response_model=FaqRead, responses=_ERRORS)
def update_faq(
    faq_id: int, body: FaqUpdate, services: ServicesDep, session: SessionDep, key: EditorKey
) -> FaqRead:
    """Write a new revision of an entry (the old ones stay)."""
    faqs.revise_entry(
        session,
        faq_id,
        question=body.question,
        answer=body.answer,
        category=body.category,
        language=body.lang,
        phrasings=body.phrasings,
        author=key.name,
        reason=body.reason or "edited",
    )
    services.index.commit_and_sync(session, services.session_factory)
    entry = faqs.get_entry_or_raise(session, faq_id)
    return _read(session, entry, services.settings.base_url)
