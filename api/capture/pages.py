"""Editor pages of the review queue (server-rendered): drafts by demand, with their threads
as evidence; edit, publish, merge, reject, reopen.

Browsers cannot send an `Authorization` header from a form, so an editor signs in once with
their editor API key; it is kept in an HttpOnly, SameSite=Strict cookie scoped to /review,
and every form carries a CSRF token derived from it. API clients may send the key as a
Bearer header instead (no cookie, so no CSRF token needed).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from api.capture.deps import CaptureDep
from api.state import Services
from api.web.deps import ServicesDep, SessionDep
from api.web.markdown import render_markdown
from kb.auth.keys import authenticate
from kb.capture import drafts as capture_drafts
from kb.capture import ingest
from kb.errors import Conflict, Forbidden, InvalidInput, InvalidTransition, Unauthorized
from kb.faqs.content import load_categories
from kb.models import ApiKey, DraftStatus, FaqEntry, Role
from kb.suggest.service import article_url
from kb.text.language import LANGUAGES

router = APIRouter(prefix="/review", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")

COOKIE = "fql_editor"
COOKIE_MAX_AGE = 8 * 3600  # one working day
PAGE_SIZE = 50

UI: dict[str, dict[str, str]] = {
    "en": {
        "brand": "Sorami Mobile",
        "title": "FAQ review",
        "skip": "Skip to content",
        "footer": "Sorami Mobile · editors only",
        "queue": "Review queue",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "key_label": "Editor API key",
        "key_hint": "Create one with: faqloop keys create --role editor",
        "question": "Question",
        "answer": "Answer (Markdown)",
        "category": "Category",
        "language": "Language",
        "threads": "Threads",
        "last_7d": "Last 7 days",
        "previous_7d": "7 days before",
        "growth": "Weekly change",
        "trending": "rising",
        "status": "Status",
        "edit": "Save changes",
        "publish": "Publish as a new FAQ",
        "merge": "Merge into an existing FAQ",
        "merge_id": "FAQ id",
        "reject": "Reject",
        "reason": "Reason",
        "reopen": "Reopen",
        "evidence": "Source threads (evidence)",
        "preview": "Answer preview",
        "no_drafts": "No drafts here.",
        "candidates": "Closest published FAQs",
        "raw": "Original text",
        "customer": "Customer",
        "agent": "Agent",
        "sort": "Sort by",
        "filter": "Show",
        "all_languages": "All languages",
        "next": "Next page",
        "prev": "Previous page",
        "published_as": "Published as",
        "merged_into": "Merged into",
        "rejected_because": "Rejected:",
        "done_edited": "Changes saved.",
        "done_published": "Published. It is searchable now.",
        "done_merged": "Merged. The FAQ learnt the threads' phrasings.",
        "done_rejected": "Rejected. Similar threads will attach to this draft.",
        "done_reopened": "Back in the queue.",
        "bad_key": "This key is not a valid editor key.",
    },
    "ja": {
        "brand": "ソラミモバイル",
        "title": "FAQレビュー",
        "skip": "本文へスキップ",
        "footer": "ソラミモバイル · 編集者専用",
        "queue": "レビュー待ち",
        "sign_in": "ログイン",
        "sign_out": "ログアウト",
        "key_label": "編集者APIキー",
        "key_hint": "作成方法: faqloop keys create --role editor",
        "question": "質問",
        "answer": "回答（Markdown）",
        "category": "カテゴリ",
        "language": "言語",
        "threads": "スレッド数",
        "last_7d": "直近7日",
        "previous_7d": "その前の7日",
        "growth": "前週比",
        "trending": "急増",
        "status": "状態",
        "edit": "変更を保存",
        "publish": "新しいFAQとして公開",
        "merge": "既存のFAQに統合",
        "merge_id": "FAQ ID",
        "reject": "却下",
        "reason": "理由",
        "reopen": "レビューに戻す",
        "evidence": "根拠となるスレッド",
        "preview": "回答プレビュー",
        "no_drafts": "下書きはありません。",
        "candidates": "近い公開済みFAQ",
        "raw": "元の投稿",
        "customer": "お客様",
        "agent": "担当者",
        "sort": "並び順",
        "filter": "表示",
        "all_languages": "すべての言語",
        "next": "次へ",
        "prev": "前へ",
        "published_as": "公開済み:",
        "merged_into": "統合先:",
        "rejected_because": "却下理由:",
        "done_edited": "保存しました。",
        "done_published": "公開しました。すぐに検索できます。",
        "done_merged": "統合しました。FAQが言い回しを学習しました。",
        "done_rejected": "却下しました。似たスレッドはこの下書きにまとめられます。",
        "done_reopened": "レビュー待ちに戻しました。",
        "bad_key": "有効な編集者キーではありません。",
    },
}
DONE = ("edited", "published", "merged", "rejected", "reopened")
SORT_LABELS = {"demand": "demand", "growth": "growth", "recent": "last 7 days", "newest": "newest"}


@dataclass
class Editor:
    key: ApiKey
    csrf: str | None  # None when signed in by header: no cookie, nothing to forge


def csrf_token(secret: str) -> str:
    """The form token of a cookie session: a MAC of the key, useless without it."""
    return hmac.new(secret.encode(), b"faqloop-review-csrf", hashlib.sha256).hexdigest()[:40]


def _language(request: Request) -> str:
    lang = request.query_params.get("lang")
    if lang in UI:
        return lang
    accept = request.headers.get("accept-language", "")
    return "ja" if accept.lower().startswith("ja") else "en"


def _editor(request: Request, session: Session) -> Editor | None:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return Editor(authenticate(session, token.strip(), needs=Role.editor), None)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        key = authenticate(session, cookie, needs=Role.editor)
    except (Unauthorized, Forbidden):
        return None  # revoked or downgraded since sign-in: sign in again
    return Editor(key, csrf_token(cookie))


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/review/login?next={quote(target)}", status_code=303)


def _check_csrf(editor: Editor, submitted: str | None) -> None:
    if editor.csrf is not None and not hmac.compare_digest(editor.csrf, submitted or ""):
        raise Forbidden("this form has expired; reload the page and try again")


def _safe_next(target: str | None) -> str:
    # Only paths inside the review pages: never an open redirect to another site.
    if target and target.startswith("/review") and "//" not in target and "\\" not in target:
        return target
    return "/review"


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    lang = context.setdefault("lang", _language(request))
    context.setdefault("ui", UI[lang])
    return templates.TemplateResponse(request, name, context, status_code=status_code)


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, next_url: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The sign-in form."""
    return _page(request, "review/login.html", {"next": _safe_next(next_url), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    key: Annotated[str, Form(max_length=200)] = "",
    next_url: Annotated[str, Form(alias="next")] = "/review",
) -> Response:
    """Check the editor key and keep it in the session cookie."""
    try:
        authenticate(session, key.strip(), needs=Role.editor)
    except (Unauthorized, Forbidden):
        lang = _language(request)
        context = {"next": _safe_next(next_url), "error": UI[lang]["bad_key"], "lang": lang}
        return _page(request, "review/login.html", context, status_code=401)
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        max_age=COOKIE_MAX_AGE,
        path="/review",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(COOKIE, path="/review")
    return response


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
    editor = _editor(request, session)
    if editor is None:
        return _login_redirect(request)
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
            "statuses": ("open", "rejected", "published", "merged", "all"),
            "sorts": SORT_LABELS,
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
    done = request.query_params.get("done")
    entry_url = None
    if view.draft.entry_id is not None:
        entry = session.get(FaqEntry, view.draft.entry_id)
        entry_url = article_url(services.settings.base_url, entry.slug) if entry else None
    candidates = (
        capture_drafts.similar_entries(session, kit, view.draft) if view.draft.question else []
    )
    return _page(
        request,
        "review/draft.html",
        {
            "view": view,
            "draft": view.draft,
            "answer_html": render_markdown(view.draft.answer or ""),
            "questions": {t.id: ingest.thread_question(t.posts) for t in view.threads},
            "categories": load_categories(services.settings.content_dir),
            "languages": LANGUAGES,
            "candidates": candidates,
            "entry_url": entry_url,
            "editor": editor,
            "error": error,
            "done": done if done in DONE else None,
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
    editor = _editor(request, session)
    if editor is None:
        return _login_redirect(request)
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
) -> Response:
    """Edit, publish, merge, reject or reopen; then back to the draft."""
    editor = _editor(request, session)
    if editor is None:
        return _login_redirect(request)
    _check_csrf(editor, csrf)
    reindex = False
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
            capture_drafts.publish_draft(
                session, draft_id, category=category, author=editor.key.name
            )
            done, reindex = "published", True
        elif action == "merge":
            target = (faq_id or "").strip()
            if not target.isdigit():
                raise InvalidInput("choose the FAQ to merge into (its id)")
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
    session.commit()
    if reindex:
        services.index.sync(services.session_factory)
    return RedirectResponse(f"/review/drafts/{draft_id}?done={done}", status_code=303)
