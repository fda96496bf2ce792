"""Editor pages of the articles (server-rendered, under /review/articles): list and filter,
create and edit with a live Markdown preview, unpublish, archive and restore, translations,
phrasings with their origin. Every change goes through kb/faqs/lifecycle.py (audited) and
`index.commit_and_sync`, so the site and search follow at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth.editor_session import (
    Editor,
    check_csrf,
    current_editor,
    login_redirect,
    page_language,
)
from api.state import Services
from api.web.deps import ServicesDep, SessionDep
from api.web.i18n import N_, translator
from api.web.markdown import render_markdown
from api.web.templating import render
from kb.audit import record_action
from kb.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from kb.faqs import entries as faqs
from kb.faqs import lifecycle, merge
from kb.faqs.content import load_categories
from kb.models import EntryStatus, PhrasingSource, PhrasingStatus, QuestionPhrasing
from kb.replies.outcomes import approve_phrasing
from kb.suggest.service import article_url
from kb.text.language import LANGUAGES

router = APIRouter(prefix="/review/articles", include_in_schema=False)

PAGE_SIZE = 50
MAX_PREVIEW = 50_000
STATUSES = ("published", "draft", "archived", "merged", "all")
STATUS_LABELS = {
    "published": N_("Published"),
    "draft": N_("Unpublished"),
    "archived": N_("Archived"),
    "merged": N_("Merged"),
    "all": N_("All"),
}
SOURCE_LABELS = {
    "content": N_("Content file"),
    "editor": N_("Editor"),
    "thread": N_("Support thread"),
    "outcome": N_("Agent's reply (outcome)"),
}
DONE = {
    "created": N_("Article created and published. It is searchable now."),
    "edited": N_("Changes saved."),
    "unpublish": N_("Unpublished. It has left the site and search."),
    "archive": N_("Archived. It has left the site and search."),
    "restore": N_("Published again. It is searchable now."),
    "linked": N_("Translation linked."),
    "unlinked": N_("Translation unlinked."),
    "phrasing-removed": N_("Phrasing removed. Search no longer matches it."),
    "phrasing-approved": N_("Phrasing approved. Search matches it now."),
    "unmerged": N_("Merge undone."),
}
CONFIRMED = {"archive", "remove-phrasing", "unmerge"}  # need the "I am sure" box ticked
# The state of an outcome-learnt phrasing (kb/replies/outcomes.py quarantines them).
PHRASING_STATES = {
    "pending": N_("waiting for approval"),
    "approved": N_("approved"),
}


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    context.setdefault("lang", page_language(request))
    return render(request, name, context, status_code=status_code)


def _ticked(box: str) -> bool:
    """Whether a checkbox was ticked (a browser sends its value only then)."""
    return box.strip().lower() in ("yes", "on", "true", "1")


def _phrasing_lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


@router.get("", response_class=HTMLResponse)
def article_list(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    status: Annotated[str, Query(pattern="^(published|draft|archived|merged|all)$")] = "published",
    language: Annotated[str | None, Query(alias="in", pattern="^(ja|en)?$")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Articles filtered by status, language and category."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    entries, total = faqs.list_entries(
        session,
        language=language or None,
        category=category or None,
        status=None if status == "all" else EntryStatus(status),
        limit=PAGE_SIZE,
        offset=offset,
    )
    tr = translator(page_language(request))
    return _page(
        request,
        "review/articles.html",
        {
            "entries": entries,
            "total": total,
            "status": status,
            "language": language or "",
            "category": category or "",
            "offset": offset,
            "page_size": PAGE_SIZE,
            "statuses": tr.labels({s: STATUS_LABELS[s] for s in STATUSES}),
            "status_labels": tr.labels(STATUS_LABELS),
            "categories": load_categories(services.settings.content_dir),
            "editor": editor,
        },
    )


def _editor_form(
    request: Request,
    services: Services,
    editor: Editor,
    *,
    values: dict[str, str],
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return _page(
        request,
        "review/article_new.html",
        {
            "values": values,
            "preview_html": render_markdown(values.get("answer", "")),
            "categories": load_categories(services.settings.content_dir),
            "languages": LANGUAGES,
            "editor": editor,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/new", response_class=HTMLResponse)
def new_article(request: Request, session: SessionDep, services: ServicesDep) -> Response:
    """The form of a new article."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    return _editor_form(request, services, editor, values={"lang": page_language(request)})


@router.post("/new", response_class=HTMLResponse)
def create_article(
    request: Request,
    session: SessionDep,
    services: ServicesDep,
    csrf: Annotated[str | None, Form()] = None,
    question: Annotated[str, Form(max_length=1000)] = "",
    answer: Annotated[str, Form(max_length=60_000)] = "",
    category: Annotated[str, Form(max_length=64)] = "",
    lang: Annotated[str, Form(max_length=8)] = "",
    phrasings: Annotated[str, Form(max_length=60_000)] = "",
    needs_account: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Create and publish; then to the article's page."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    check_csrf(editor, csrf)
    try:
        entry = lifecycle.create_and_commit_article(
            session,
            lambda: services.index.commit_and_sync(session, services.session_factory),
            question=question,
            answer=answer,
            category=category,
            language=lang,
            phrasings=_phrasing_lines(phrasings),
            by=editor.actor,
            needs_account=_ticked(needs_account),
        )
    except (InvalidInput, Conflict) as exc:
        session.rollback()
        values = {
            "question": question,
            "answer": answer,
            "category": category,
            "lang": lang,
            "phrasings": phrasings,
            "needs_account": "yes" if _ticked(needs_account) else "",
        }
        status = 400 if isinstance(exc, InvalidInput) else 409
        return _editor_form(
            request, services, editor, values=values, error=exc.message, status_code=status
        )
    return RedirectResponse(f"/review/articles/{entry.id}?done=created", status_code=303)


@router.post("/preview")
def preview(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str | None, Form()] = None,
    answer: Annotated[str, Form()] = "",
) -> Response:
    """The answer's Markdown rendered by the site's sanitiser, as JSON {"html": ...}."""
    editor = current_editor(request, session)
    if editor is None:
        return JSONResponse({"error": "unauthorized", "detail": "sign in again"}, status_code=401)
    check_csrf(editor, csrf)
    if len(answer) > MAX_PREVIEW:
        return JSONResponse(
            {"error": "too_large", "detail": f"answer is longer than {MAX_PREVIEW} characters"},
            status_code=413,
        )
    return JSONResponse({"html": render_markdown(answer)}, headers={"Cache-Control": "no-store"})


def _detail(
    request: Request,
    session: Session,
    services: Services,
    editor: Editor,
    faq_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
    values: dict[str, str] | None = None,
) -> Response:
    entry = faqs.get_entry_or_raise(session, faq_id)
    tr = translator(page_language(request))
    done = request.query_params.get("done")
    rev = entry.current_revision
    origins = lifecycle.list_phrasings(session, faq_id)
    editable = {
        "question": rev.question if rev else "",
        "answer": rev.answer if rev else "",
        "category": entry.category,
        "lang": entry.language,
        "needs_account": "yes" if entry.needs_account else "",
        "phrasings": "\n".join(p.text for p in origins if p.source.value in ("editor", "content")),
    }
    if values:
        editable.update(values)
    return _page(
        request,
        "review/article.html",
        {
            "entry": entry,
            "rev": rev,
            "values": editable,
            "preview_html": render_markdown(editable["answer"]),
            "url": article_url(services.settings.base_url, entry.slug),
            "translations": lifecycle.translations(session, entry),
            "phrasings": origins,
            "approvable": {p.id for p in origins if lifecycle.approvable(p)},
            "sources": tr.labels(SOURCE_LABELS),
            "phrasing_states": tr.labels(PHRASING_STATES),
            "status_labels": tr.labels(STATUS_LABELS),
            "revisions": faqs.list_revisions(session, faq_id)[::-1][:10],
            "categories": load_categories(services.settings.content_dir),
            "languages": LANGUAGES,
            "can_unmerge": entry.status == EntryStatus.merged,
            "editor": editor,
            "error": error,
            "done": tr.gettext(DONE[done]) if done in DONE else None,
        },
        status_code=status_code,
    )


@router.get("/{faq_id}", response_class=HTMLResponse)
def article_page(
    request: Request, faq_id: int, session: SessionDep, services: ServicesDep
) -> Response:
    """One article: edit with preview, life cycle, translations, phrasings, history."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    return _detail(request, session, services, editor, faq_id)


def _approve_phrasing(session: Session, faq_id: int, phrasing_id: int, editor: Editor) -> None:
    """Approve an outcome-learnt phrasing waiting for approval (audit-recorded): search
    matches it after the commit."""
    faqs.get_entry_or_raise(session, faq_id)
    phrasing = session.scalar(
        select(QuestionPhrasing)
        .where(QuestionPhrasing.id == phrasing_id, QuestionPhrasing.entry_id == faq_id)
        .with_for_update()
    )
    if phrasing is None:
        raise NotFound(f"FAQ {faq_id} has no phrasing {phrasing_id}")
    if phrasing.source != PhrasingSource.outcome or phrasing.status != PhrasingStatus.pending:
        raise InvalidTransition(f"phrasing {phrasing_id} is not waiting for approval")
    approve_phrasing(session, phrasing_id, by=editor.actor)
    record_action(
        session,
        actor=editor.actor,
        action="phrasing_approved",
        target=f"faq:{faq_id}",
        before={"phrasing": phrasing_id, "text": phrasing.text, "status": "pending"},
        after={"phrasing": phrasing_id, "status": "approved"},
    )


@router.post("/{faq_id}/{action}", response_class=HTMLResponse)
def article_action(
    request: Request,
    faq_id: int,
    action: str,
    session: SessionDep,
    services: ServicesDep,
    csrf: Annotated[str | None, Form()] = None,
    confirm: Annotated[str | None, Form()] = None,
    question: Annotated[str, Form(max_length=1000)] = "",
    answer: Annotated[str, Form(max_length=60_000)] = "",
    category: Annotated[str, Form(max_length=64)] = "",
    lang: Annotated[str, Form(max_length=8)] = "",
    phrasings: Annotated[str, Form(max_length=60_000)] = "",
    other_id: Annotated[str, Form(max_length=20)] = "",
    phrasing_id: Annotated[str, Form(max_length=20)] = "",
    needs_account: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """edit, unpublish, archive, restore, link, unlink, remove-phrasing, approve-phrasing,
    unmerge."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    check_csrf(editor, csrf)
    values: dict[str, str] | None = None
    try:
        if action in CONFIRMED and confirm != "yes":
            raise InvalidInput("tick the box to confirm; this cannot be undone by accident")
        if action == "edit":
            values = {
                "question": question,
                "answer": answer,
                "category": category,
                "lang": lang,
                "phrasings": phrasings,
                "needs_account": "yes" if _ticked(needs_account) else "",
            }
            lifecycle.edit_article(
                session,
                faq_id,
                question=question,
                answer=answer,
                category=category,
                language=lang,
                phrasings=_phrasing_lines(phrasings),
                by=editor.actor,
                needs_account=_ticked(needs_account),
            )
            done = "edited"
        elif action in lifecycle.TRANSITIONS:
            lifecycle.change_status(session, faq_id, action, by=editor.actor)
            done = action
        elif action in ("link", "unlink"):
            if not other_id.strip().isdigit():
                raise InvalidInput("give the id of the other article")
            change = (
                lifecycle.link_translation if action == "link" else lifecycle.unlink_translation
            )
            change(session, faq_id, int(other_id), by=editor.actor)
            done = action + "ed"
        elif action == "remove-phrasing":
            if not phrasing_id.strip().isdigit():
                raise InvalidInput("choose the phrasing to remove")
            lifecycle.remove_phrasing(session, faq_id, int(phrasing_id), by=editor.actor)
            done = "phrasing-removed"
        elif action == "approve-phrasing":
            if not phrasing_id.strip().isdigit():
                raise InvalidInput("choose the phrasing to approve")
            _approve_phrasing(session, faq_id, int(phrasing_id), editor)
            done = "phrasing-approved"
        elif action == "unmerge":
            merge.unmerge_entry(session, faq_id, by=editor.actor)
            done = "unmerged"
        else:
            raise InvalidInput(f"unknown action {action!r}")
    except (InvalidInput, InvalidTransition, Conflict) as exc:
        session.rollback()
        status = 400 if isinstance(exc, InvalidInput) else 409
        return _detail(
            request,
            session,
            services,
            editor,
            faq_id,
            error=exc.message,
            status_code=status,
            values=values,
        )
    except NotFound as exc:
        session.rollback()
        faqs.get_entry_or_raise(session, faq_id)  # the article itself missing: 404
        return _detail(
            request, session, services, editor, faq_id, error=exc.message, status_code=404
        )
    services.index.commit_and_sync(session, services.session_factory)
    return RedirectResponse(f"/review/articles/{faq_id}?done={done}", status_code=303)
