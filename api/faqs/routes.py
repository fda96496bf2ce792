"""FAQ entries: list and read (agents), create and revise (editors)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.faqs.lifecycle_schemas import PhrasingList, PhrasingOriginRead, TranslationsRead
from api.faqs.schemas import (
    FaqCreate,
    FaqCreated,
    FaqList,
    FaqRead,
    FaqSummary,
    FaqUpdate,
    PhrasingRead,
    RevisionRead,
    UnmergeRead,
)
from api.state import Services
from api.web.concurrency import IfMatch, etag, if_match_version
from api.web.deps import AgentKey, EditorKey, ServicesDep, SessionDep, require
from api.web.schemas import ErrorBody
from kb.audit import Actor, entry_state, new_entries, record_action
from kb.faqs import entries as faqs
from kb.faqs import lifecycle, merge
from kb.faqs.content import check_category
from kb.models import ApiKey, EntryStatus, FaqEntry, Role
from kb.suggest.service import article_url

router = APIRouter(prefix="/v1/faqs", tags=["faqs"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409)
}
# Writes that take If-Match can also answer 412.
_WRITE_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 412)
}
_ETAG = {"ETag": {"description": 'The article\'s version (its revision number), e.g. `"3"`.'}}
AdminKey = Annotated[ApiKey, Depends(require(Role.admin))]


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
        needs_account=entry.needs_account,
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


@router.get(
    "/{faq_id}",
    response_model=FaqRead,
    responses={**_ERRORS, 200: {"headers": _ETAG}},
)
def get_faq(
    faq_id: int, response: Response, services: ServicesDep, session: SessionDep, _key: AgentKey
) -> FaqRead:
    """One entry with its phrasings and revision history; `ETag` is its version, to send
    back in `If-Match` when writing."""
    entry = faqs.get_entry_or_raise(session, faq_id)
    response.headers["ETag"] = etag(faqs.version_of(entry))
    return _read(session, entry, services.settings.base_url)


@router.post("", response_model=FaqCreated, status_code=201, responses=_ERRORS)
def create_faq(
    body: FaqCreate, services: ServicesDep, session: SessionDep, key: EditorKey
) -> FaqCreated:
    """Create and publish an entry; it is searchable when this call returns.

    409 when the explicit `slug` is taken (also by a concurrent create); a generated slug
    gets a suffix instead, so concurrent creates with one title all succeed."""

    def commit() -> object:
        # Recorded in the create's own transaction (retried with it on a slug collision).
        made = created[-1]
        record_action(
            session,
            actor=Actor(key.name, "key"),
            action="faq.create",
            target=f"faq:{made.id}",
            after=entry_state(session, made.id),
        )
        return services.index.commit_and_sync(session, services.session_factory)

    check_category(body.category, services.settings.content_dir)
    with new_entries(session) as created:
        entry, _ = faqs.create_and_commit(
            session,
            commit,
            question=body.question,
            answer=body.answer,
            category=body.category,
            language=body.lang,
            phrasings=body.phrasings or [],
            slug=body.slug,
            translation_group=body.translation_group,
            author=key.name,
            reason=body.reason or "created",
            needs_account=bool(body.needs_account),
        )
    return FaqCreated(
        id=entry.id,
        slug=entry.slug,
        revision=1,
        url=article_url(services.settings.base_url, entry.slug),
    )


@router.put(
    "/{faq_id}",
    response_model=FaqRead,
    responses={**_WRITE_ERRORS, 200: {"headers": _ETAG}},
)
def update_faq(
    faq_id: int,
    body: FaqUpdate,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
    key: EditorKey,
    if_match: IfMatch = None,
) -> FaqRead:
    """Write a new revision of an entry (the old ones stay).

    With `If-Match`, 412 when the entry's version is no longer that one. Concurrent edits
    queue up: each gets its own revision."""
    check_category(body.category, services.settings.content_dir)
    before = entry_state(session, faq_id)
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
        expected_version=if_match_version(if_match),
        needs_account=body.needs_account,
    )
    record_action(
        session,
        actor=Actor(key.name, "key"),
        action="faq.update",
        target=f"faq:{faq_id}",
        before=before,
        after=entry_state(session, faq_id),
    )
    # Read back inside the transaction (the row is locked): the answer is this write, not a
    # later one that a concurrent editor commits before we read.
    entry = faqs.get_entry_or_raise(session, faq_id)
    out = _read(session, entry, services.settings.base_url)
    response.headers["ETag"] = etag(faqs.version_of(entry))
    services.index.commit_and_sync(session, services.session_factory)
    return out


@router.post("/{faq_id}/unmerge", response_model=UnmergeRead, responses=_ERRORS)
def unmerge_faq(
    faq_id: int, services: ServicesDep, session: SessionDep, key: AdminKey
) -> UnmergeRead:
    """Undo the merge of this FAQ (admin key): it is published again at its own URL, which
    no longer redirects, and takes back the views, votes and imported feedback of its own
    revisions (docs/api.md). 409 when it is not merged."""
    result = merge.unmerge_entry(session, faq_id, by=Actor(key.name, "key"))
    services.index.commit_and_sync(session, services.session_factory)
    base = services.settings.base_url
    return UnmergeRead(
        faq_id=faq_id,
        was_merged_into=result.target_id,
        status=result.entry.status.value,
        url=article_url(base, result.entry.slug),
        views_moved_back=result.views,
        votes_moved_back=result.votes,
        feedback_days_moved_back=result.feedback_days,
    )


# --- life cycle: unpublish, archive, restore; translations; phrasings (kb/faqs/lifecycle.py)


def _status_change(
    action: str, faq_id: int, services: Services, session: Session, key: ApiKey
) -> FaqSummary:
    lifecycle.change_status(session, faq_id, action, by=Actor(key.name, "key"))
    services.index.commit_and_sync(session, services.session_factory)
    return summary(faqs.get_entry_or_raise(session, faq_id), services.settings.base_url)


@router.post("/{faq_id}/archive", response_model=FaqSummary, responses=_ERRORS)
def archive_faq(
    faq_id: int, services: ServicesDep, session: SessionDep, key: EditorKey
) -> FaqSummary:
    """Archive a published or unpublished article: it leaves the site (404) and search at once.

    409 when it is already archived or was merged.
    """
    return _status_change("archive", faq_id, services, session, key)


@router.post("/{faq_id}/unpublish", response_model=FaqSummary, responses=_ERRORS)
def unpublish_faq(
    faq_id: int, services: ServicesDep, session: SessionDep, key: EditorKey
) -> FaqSummary:
    """Take a published article back to draft: it leaves the site (404) and search at once."""
    return _status_change("unpublish", faq_id, services, session, key)


@router.post("/{faq_id}/restore", response_model=FaqSummary, responses=_ERRORS)
def restore_faq(
    faq_id: int, services: ServicesDep, session: SessionDep, key: EditorKey
) -> FaqSummary:
    """Publish an unpublished or archived article again; searchable when this returns."""
    return _status_change("restore", faq_id, services, session, key)


def _translations(session: Session, faq_id: int) -> TranslationsRead:
    entry = faqs.get_entry_or_raise(session, faq_id)
    return TranslationsRead(
        faq_id=entry.id,
        translation_group=entry.translation_group,
        translations={e.language: e.id for e in lifecycle.translations(session, entry)},
    )


@router.put("/{faq_id}/translations/{other_id}", response_model=TranslationsRead, responses=_ERRORS)
def link_translation(
    faq_id: int, other_id: int, services: ServicesDep, session: SessionDep, key: EditorKey
) -> TranslationsRead:
    """Link `other_id` as a translation of `faq_id` (idempotent; one article per language).

    400 for the same language, 409 when the group already has that language.
    """
    lifecycle.link_translation(session, faq_id, other_id, by=Actor(key.name, "key"))
    services.index.commit_and_sync(session, services.session_factory)
    return _translations(session, faq_id)


@router.delete(
    "/{faq_id}/translations/{other_id}", response_model=TranslationsRead, responses=_ERRORS
)
def unlink_translation(
    faq_id: int, other_id: int, services: ServicesDep, session: SessionDep, key: EditorKey
) -> TranslationsRead:
    """Unlink a translation; 404 when `other_id` is not one of `faq_id`."""
    lifecycle.unlink_translation(session, faq_id, other_id, by=Actor(key.name, "key"))
    services.index.commit_and_sync(session, services.session_factory)
    return _translations(session, faq_id)


@router.get("/{faq_id}/phrasings", response_model=PhrasingList, responses=_ERRORS)
def list_phrasings(faq_id: int, session: SessionDep, _key: EditorKey) -> PhrasingList:
    """Every phrasing of the article with its origin (content, editor, thread or outcome)."""
    items = lifecycle.list_phrasings(session, faq_id)
    return PhrasingList(
        faq_id=faq_id, items=[PhrasingOriginRead.model_validate(asdict(p)) for p in items]
    )


@router.delete("/{faq_id}/phrasings/{phrasing_id}", status_code=204, responses=_ERRORS)
def remove_phrasing(
    faq_id: int, phrasing_id: int, services: ServicesDep, session: SessionDep, key: EditorKey
) -> Response:
    """Forget one phrasing; search no longer matches it when this returns."""
    lifecycle.remove_phrasing(session, faq_id, phrasing_id, by=Actor(key.name, "key"))
    services.index.commit_and_sync(session, services.session_factory)
    return Response(status_code=204)
