"""Editor pages of the review queue (server-rendered): drafts by demand, with their threads
as evidence; edit, publish, merge, reject, reopen. Sign-in: api/auth/editor_session.py.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from api.auth.editor_session import (
    Editor,
    check_csrf,
    current_editor,
    login_redirect,
    page_language,
)
from api.capture.deps import CaptureDep
from api.state import Services
from api.web.deps import ServicesDep, SessionDep
from api.web.i18n import N_, translator
from api.web.markdown import render_markdown
from api.web.templating import render
from kb.audit import draft_state, record_action
from kb.capture import drafts as capture_drafts
from kb.capture import ingest
from kb.capture.translations import TranslationProposal, propose_translations
from kb.errors import Conflict, InvalidInput, InvalidTransition
from kb.faqs.content import load_categories
from kb.models import DraftStatus, EntryStatus, FaqEntry
from kb.suggest.service import article_url
from kb.text.language import LANGUAGES

log = logging.getLogger(__name__)

router = APIRouter(prefix="/review", include_in_schema=False)

PAGE_SIZE = 50

DONE = {  # what the draft page confirms after each action
    "edited": N_("Changes saved."),
    "published": N_("Published. It is searchable now."),
    "merged": N_("Merged. The FAQ learnt the threads' phrasings."),
    "rejected": N_("Rejected. Similar threads will attach to this draft."),
    "reopened": N_("Back in the queue."),
}
ROLES = {"customer": N_("Customer"), "agent": N_("Agent")}
SORT_LABELS = {
    "demand": N_("Most threads"),
    "growth": N_("Fastest growing"),
    "recent": N_("Last 7 days"),
    "newest": N_("Newest"),
}
# The queue's filters and badges: draft and thread states in the page's language.
DRAFT_STATUS_LABELS = {
    "open": N_("Open"),
    "rejected": N_("Rejected"),
    "published": N_("Published"),
    "merged": N_("Merged"),
    "all": N_("All"),
}
THREAD_STATUS_LABELS = {
    "covered": N_("answered by an article"),
    "uncovered": N_("waiting for a draft"),
    "drafted": N_("in a draft"),
}


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    context.setdefault("lang", page_language(request))
    return render(request, name, context, status_code=status_code)


@router.get("", response_class=HTMLResponse)
def queue(
    request: Request,
    session: SessionDep,
    status: Annotated[str, Query(pattern="^(open|rejected|published|merged|all)$")] = "open",
    sort: Annotated[str, Query(pattern="^(demand|growth|recent|newest)$")] = "demand",
    language: Annotated[str | None, Query(alias="in", pattern="^(ja|en)$")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Drafts sorted by demand and growth."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    tr = translator(page_language(request))
    views, total = capture_drafts.list_drafts(
        session,
        status=None if status == "all" else DraftStatus(status),
        language=language,
        sort=sort,
        limit=PAGE_SIZE,
        offset=offset,
    )
    return _page(
        request,
        "review/queue.html",
        {
            "views": views,
            "total": total,
            "status": status,
            "sort": sort,
            "language": language,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "statuses": tr.labels(DRAFT_STATUS_LABELS),
            "sorts": tr.labels(SORT_LABELS),
            "thread_statuses": tr.labels(THREAD_STATUS_LABELS),
            "language_names": {code: tr.language_name(code) for code in LANGUAGES},
            "counts": capture_drafts.count_threads(session),
            "editor": editor,
            "questions": {t.id: ingest.thread_question(t.posts) for v in views for t in v.threads},
        },
    )


def _detail(
    request: Request,
    session: Session,
    services: Services,
    kit: ingest.Capture,
    editor: Editor,
    draft_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    view = capture_drafts.get_draft_or_raise(session, draft_id)
    lang = page_language(request)
    tr = translator(lang)
    done = request.query_params.get("done")
    entry_url = None
    proposals: list[TranslationProposal] = []
    if view.draft.entry_id is not None:
        entry = session.get(FaqEntry, view.draft.entry_id)
        entry_url = article_url(services.settings.base_url, entry.slug) if entry else None
        rev = entry.current_revision if entry else None
        if (
            entry is not None
            and rev is not None
            and view.draft.status == DraftStatus.published
            and entry.status == EntryStatus.published
        ):
            # Proposed, never linked: the page offers a one-click link to each article. A
            # failure costs the proposals, not the page.
            try:
                proposals = propose_translations(
                    session,
                    services.embedder,
                    question=rev.question,
                    answer=rev.answer,
                    language=entry.language,
                    entry_id=entry.id,
                    draft_id=view.draft.id,
                )
            except Exception:
                log.exception("translation proposals for FAQ %s failed", entry.id)
    candidates = (
        capture_drafts.similar_entries(session, kit, view.draft) if view.draft.question else []
    )
    return _page(
        request,
        "review/draft.html",
        {
            "lang": lang,
            "view": view,
            "draft": view.draft,
            "answer_html": render_markdown(view.draft.answer or ""),
            "questions": {t.id: ingest.thread_question(t.posts) for t in view.threads},
            "categories": load_categories(services.settings.content_dir),
            "languages": LANGUAGES,
            "candidates": candidates,
            "entry_url": entry_url,
            "proposals": proposals,
            "editor": editor,
            "error": error,
            "done": tr.gettext(DONE[done]) if done in DONE else None,
            "roles": tr.labels(ROLES),
            "live": view.draft.status in (DraftStatus.open, DraftStatus.rejected),
        },
        status_code=status_code,
    )


@router.get("/drafts/{draft_id}", response_class=HTMLResponse)
def draft_page(
    request: Request,
    draft_id: int,
    session: SessionDep,
    services: ServicesDep,
    kit: CaptureDep,
) -> Response:
    """One draft: its text, its demand, merge candidates and the threads behind it."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    return _detail(request, session, services, kit, editor, draft_id)


@router.post("/drafts/{draft_id}/{action}", response_class=HTMLResponse)
def draft_action(
    request: Request,
    draft_id: int,
    action: str,
    session: SessionDep,
    services: ServicesDep,
    kit: CaptureDep,
    csrf: Annotated[str | None, Form()] = None,
    question: Annotated[str | None, Form()] = None,
    answer: Annotated[str | None, Form()] = None,
    category: Annotated[str | None, Form()] = None,
    lang: Annotated[str | None, Form()] = None,
    faq_id: Annotated[str | None, Form()] = None,
    reason: Annotated[str | None, Form()] = None,
    confirm: Annotated[str | None, Form(max_length=8)] = None,
) -> Response:
    """Edit, publish, merge, reject or reopen; then back to the draft."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    check_csrf(editor, csrf)
    reindex = False
    before = draft_state(session, draft_id)
    try:
        if action == "edit":
            capture_drafts.update_draft(
                session,
                draft_id,
                question=question or "",
                answer=answer or "",
                category=category,
                language=lang or None,
            )
            done = "edited"
        elif action == "publish":
            capture_drafts.publish_draft(session, draft_id, category=category, author=editor.actor)
            done, reindex = "published", True
        elif action == "merge":
            target = (faq_id or "").strip()
            if not target.isdigit():
                raise InvalidInput("choose the FAQ to merge into (its id)")
            if confirm != "yes":
                raise InvalidInput("tick the box to confirm the merge")
            capture_drafts.merge_draft(session, draft_id, faq_id=int(target))
            done, reindex = "merged", True
        elif action == "reject":
            capture_drafts.reject_draft(session, draft_id, reason=reason or "")
            done = "rejected"
        elif action == "reopen":
            capture_drafts.reopen_draft(session, draft_id)
            done = "reopened"
        else:
            raise InvalidInput(f"unknown action {action!r}")
    except (InvalidInput, InvalidTransition, Conflict) as exc:
        session.rollback()
        status = 400 if isinstance(exc, InvalidInput) else 409
        return _detail(
            request, session, services, kit, editor, draft_id, error=exc.message, status_code=status
        )
    after = draft_state(session, draft_id)
    record_action(
        session,
        actor=editor.actor,
        action=f"draft.{action}",
        target=f"draft:{draft_id}",
        before=before,
        after=after,
    )
    services.index.commit_and_sync(session, services.session_factory, reindex=reindex)
    return RedirectResponse(f"/review/drafts/{draft_id}?done={done}", status_code=303)
