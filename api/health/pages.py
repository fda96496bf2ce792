"""Editor pages of content health (server-rendered, under /review so the editor's sign-in
cookie applies): the flag queue by impact, an article's health with its chart, revision diff,
before/after of each rewrite, and the rewrite, merge and dismiss forms.

Sign-in, the cookie and the CSRF token are the review pages' (api/capture/pages.py);
every form here carries the same token.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
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
from api.health.chart import ChartText, RevisionMark, health_chart_svg
from api.health.deps import HealthDep, HealthKit
from api.health.evidence import evidence_facts
from api.state import Services
from api.web.deps import ServicesDep, SessionDep
from api.web.i18n import N_, Translator, translator
from api.web.markdown import render_markdown
from api.web.templating import render
from kb.audit import entry_state, flag_state, record_action
from kb.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from kb.faqs import entries as faqs
from kb.faqs import merge
from kb.health import detection, flags
from kb.health import scores as health_scores
from kb.health.scores import ArticleHealth
from kb.models import FaqEntry, FaqRevision, Flag, FlagKind, FlagStatus
from kb.site import stats as site_stats
from kb.site import visitors
from kb.suggest.service import article_url

router = APIRouter(prefix="/review/health", include_in_schema=False)
PAGE_SIZE = 50

DONE = {  # what a page confirms after each action
    "rewritten": N_("Rewritten. The new revision is live and starts with clean numbers."),
    "merged": N_("Merged. The old URL redirects here."),
    "dismissed": N_("Dismissed. It stays quiet until new evidence arrives."),
    "recomputing": N_("Recompute started; reload this page in a moment for the new flags."),
}
STATUSES = {
    "open": N_("open"),
    "resolved": N_("resolved"),
    "dismissed": N_("dismissed"),
    "all": N_("all"),
}
KINDS = {
    FlagKind.low_helpfulness.value: N_("low helpfulness"),
    FlagKind.low_acceptance.value: N_("low acceptance"),
    FlagKind.duplicate.value: N_("duplicate"),
    FlagKind.stale.value: N_("stale"),
    FlagKind.content_gap.value: N_("content gap"),
}


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    tr = translator(context.setdefault("lang", page_language(request)))
    done = request.query_params.get("done")
    context.setdefault("done", tr.gettext(DONE[done]) if done in DONE else None)
    context.setdefault("kinds", [k.value for k in FlagKind])
    context.setdefault("kinds_label", tr.labels(KINDS))
    context.setdefault("statuses_label", tr.labels(STATUSES))
    return render(request, name, context, status_code=status_code)


def _pct(value: object) -> str:
    return f"{float(value) * 100:.0f}%" if isinstance(value, int | float) else "—"


def flag_summary(flag: Flag, tr: Translator) -> str:
    """One line saying why a flag was raised, in the page's language."""
    ev = flag.evidence or {}
    try:
        if flag.kind == FlagKind.low_helpfulness:
            ratio = ev.get("helpful_ratio") or {}
            return tr.gettext(
                "%(helpful)s of %(votes)s votes helpful (%(ratio)s; 95%% upper bound %(high)s) "
                "vs typical %(typical)s; %(views)s views",
                helpful=ev.get("helpful", 0),
                votes=ev.get("helpful", 0) + ev.get("not_helpful", 0),
                ratio=_pct(ratio.get("ratio")),
                high=_pct(ratio.get("wilson_high")),
                typical=_pct(ev.get("site_typical")),
                views=(ev.get("views") or {}).get("total", 0),
            )
        if flag.kind == FlagKind.low_acceptance:
            acc = ev.get("acceptance") or {}
            return tr.gettext(
                "%(accepted)s of %(n)s suggestions accepted (upper bound %(high)s) vs "
                "typical %(typical)s",
                accepted=ev.get("accepted", 0),
                n=ev.get("accepted", 0) + ev.get("rejected", 0),
                high=_pct(acc.get("wilson_high")),
                typical=_pct(ev.get("site_typical")),
            )
        if flag.kind == FlagKind.duplicate:
            pair = ev.get("pair") or [0, 0]
            proposal = ev.get("merge") or {}
            other = pair[1] if pair and pair[0] == flag.entry_id else pair[0]
            return tr.gettext(
                "Same question as FAQ %(other)s (score %(score)s); merge FAQ %(source)s "
                "into FAQ %(target)s",
                other=other,
                score=ev.get("score"),
                source=proposal.get("from"),
                target=proposal.get("into"),
            )
        if flag.kind == FlagKind.content_gap:
            return tr.gettext(
                "%(total)s unanswered (%(posts)s posts, %(searches)s searches): "
                "\u201c%(medoid)s\u201d",
                total=ev.get("total", 0),
                posts=ev.get("posts", 0),
                searches=ev.get("searches", 0),
                medoid=ev.get("medoid", ""),
            )
        return tr.gettext(
            "Not revised for %(days)s days; %(rule)s",
            days=ev.get("revised_days_ago"),
            rule=ev.get("rule", ""),
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return str(ev.get("rule", ""))


def _flag_link(flag: Flag) -> str:
    if flag.entry_id is not None:
        return f"/review/health/faqs/{flag.entry_id}#flag-{flag.id}"
    return f"/review/health/flags/{flag.id}"


@router.get("", response_class=HTMLResponse)
def queue(
    request: Request,
    session: SessionDep,
    kind: Annotated[str | None, Query(pattern="^[a-z_]*$")] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    language: Annotated[str | None, Query(alias="in", pattern="^(ja|en)?$")] = None,
    status: Annotated[str, Query(pattern="^(open|resolved|dismissed|all)$")] = "open",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Flags sorted by impact, filtered by kind, category and language."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    flag_kind = None
    if kind:
        try:
            flag_kind = FlagKind(kind)
        except ValueError as exc:
            raise InvalidInput(f"unknown kind {kind!r}") from exc
    rows, total = flags.list_flags(
        session,
        status=None if status == "all" else FlagStatus(status),
        kind=flag_kind,
        category=category or None,
        language=language or None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    entries = faqs.entries_by_ids(session, [f.entry_id for f in rows if f.entry_id])
    lang = page_language(request)
    tr = translator(lang)
    items = [
        {
            "flag": f,
            "entry": entries.get(f.entry_id) if f.entry_id else None,
            "summary": flag_summary(f, tr),
            "link": _flag_link(f),
        }
        for f in rows
    ]
    return _page(
        request,
        "review/health_queue.html",
        {
            "lang": lang,
            "items": items,
            "total": total,
            "kind": kind or "",
            "category": category or "",
            "language": language or "",
            "status": status,
            "statuses": STATUSES,
            "categories": flags.flag_categories(session),
            "offset": offset,
            "page_size": PAGE_SIZE,
            "editor": editor,
        },
    )


@router.post("/recompute")
def recompute(
    request: Request,
    session: SessionDep,
    kit: HealthDep,
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Start recomputing scores and flags in the background, then back to the queue."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    check_csrf(editor, csrf)
    kit.recompute_in_background()
    return RedirectResponse("/review/health?done=recomputing", status_code=303)


# -- one article -------------------------------------------------------------------------


@dataclass
class DiffLine:
    """One line of a revision diff: ' ' same, '-' removed, '+' added."""

    op: str
    text: str


def text_diff(old: str, new: str) -> list[DiffLine]:
    """Line diff of two texts (difflib); the template escapes every line."""
    a, b = old.splitlines(), new.splitlines()
    out: list[DiffLine] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.extend(DiffLine(" ", line) for line in a[i1:i2])
            continue
        out.extend(DiffLine("-", line) for line in a[i1:i2])
        out.extend(DiffLine("+", line) for line in b[j1:j2])
    return out


def _marks(report: ArticleHealth, kit: HealthKit) -> list[RevisionMark]:
    marks = []
    for r in report.revisions:
        rev = r.revision
        if r.merged_from is None:
            # The day it went live, in the stats time zone like the counters' days.
            marks.append(
                RevisionMark(rev.id, f"r{rev.number}", rev.created_at.astimezone(kit.tz).date())
            )
        else:
            marks.append(RevisionMark(rev.id, f"#{r.merged_from} r{rev.number}", None))
    return marks


def chart_for(report: ArticleHealth, kit: HealthKit, tr: Translator) -> str:
    """The article's SVG chart in the page's language."""
    text = ChartText(
        title=tr.gettext("Views per period and helpful ratio, by revision"),
        views=tr.gettext("views"),
        helpful=tr.gettext("helpful ratio"),
        no_data=tr.gettext("No views or votes yet."),
        description=tr.gettext(
            "%(views)s views and %(votes)s votes in total; bars are views coloured by "
            "revision, points the share of helpful votes.",
            views=report.totals.views_total,
            votes=report.totals.votes,
        ),
    )
    return health_chart_svg(report.series, _marks(report, kit), text)


def _revision_by_number(revisions: list[FaqRevision], number: int | None) -> FaqRevision | None:
    return next((r for r in revisions if r.number == number), None)


def _article(
    request: Request,
    session: Session,
    services: Services,
    kit: HealthKit,
    editor: Editor,
    faq_id: int,
    *,
    diff_from: int | None = None,
    diff_to: int | None = None,
    error: str | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    entry = session.get(FaqEntry, faq_id)
    if entry is None:
        raise NotFound(f"FAQ {faq_id} not found")
    lang = page_language(request)
    tr = translator(lang)
    report = health_scores.article_health(
        session, faq_id, kit.policy, tz=kit.tz, baseline=kit.baseline()
    )
    own = [r.revision for r in report.revisions if r.merged_from is None]
    current = entry.current_revision
    to_rev = _revision_by_number(own, diff_to) or (own[-1] if own else None)
    from_rev = _revision_by_number(own, diff_from) or (
        own[-2] if len(own) >= 2 and to_rev is own[-1] else None
    )
    diff = None
    if from_rev is not None and to_rev is not None:
        diff = {
            "from": from_rev,
            "to": to_rev,
            "question": text_diff(from_rev.question, to_rev.question),
            "answer": text_diff(from_rev.answer, to_rev.answer),
        }
    open_flags = flags.open_flags_of(session, faq_id)
    proposal = next(
        (
            (f.evidence or {}).get("merge")
            for f in open_flags
            if f.kind == FlagKind.duplicate and (f.evidence or {}).get("merge")
        ),
        None,
    )
    comments = []
    try:
        stats = site_stats.entry_stats(session, faq_id, comments=10)
        comments = next((s.comments for s in stats if s.current), [])
    except NotFound:
        pass
    return _page(
        request,
        "review/health_article.html",
        {
            "lang": lang,
            "entry": entry,
            "current": current,
            "report": report,
            "chart": chart_for(report, kit, tr),
            "revisions": own,
            "diff": diff,
            "open_flags": [
                {"flag": f, "summary": flag_summary(f, tr), "link": _flag_link(f)}
                for f in open_flags
            ],
            "revision_flags": [f for f in open_flags if f.kind in detection.REVISION_KINDS],
            "proposal": proposal,
            "comments": comments,
            "answer_html": render_markdown(current.answer) if current else "",
            "public_url": article_url(services.settings.base_url, entry.slug),
            "editor": editor,
            "error": error,
            "form": form or {},
        },
        status_code=status_code,
    )


@router.get("/faqs/{faq_id}", response_class=HTMLResponse)
def article_page(
    request: Request,
    faq_id: int,
    session: SessionDep,
    services: ServicesDep,
    kit: HealthDep,
    diff_from: Annotated[int | None, Query(alias="from", ge=1)] = None,
    diff_to: Annotated[int | None, Query(alias="to", ge=1)] = None,
) -> Response:
    """An article's health: chart, revisions, before/after, diff, flags and actions."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    return _article(
        request, session, services, kit, editor, faq_id, diff_from=diff_from, diff_to=diff_to
    )


@router.get("/faqs/{faq_id}/chart.svg")
def article_chart(request: Request, faq_id: int, session: SessionDep, kit: HealthDep) -> Response:
    """The article's chart as an SVG image."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    report = health_scores.article_health(
        session, faq_id, kit.policy, tz=kit.tz, baseline=kit.baseline()
    )
    svg = chart_for(report, kit, translator(page_language(request)))
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.post("/faqs/{faq_id}/rewrite", response_class=HTMLResponse)
def rewrite(
    request: Request,
    faq_id: int,
    session: SessionDep,
    services: ServicesDep,
    kit: HealthDep,
    csrf: Annotated[str | None, Form()] = None,
    question: Annotated[str, Form(max_length=500)] = "",
    answer: Annotated[str, Form(max_length=50_000)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    flag_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Create a new revision from the form; resolves the flags of the old revision."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    check_csrf(editor, csrf)
    before = entry_state(session, faq_id)
    try:
        flag = visitors.parse_id(flag_id, "flag_id")
        flags.rewrite_entry(
            session,
            faq_id,
            question=question,
            answer=answer,
            author=editor.actor,
            reason=reason,
            flag_id=flag,
        )
    except (InvalidInput, Conflict) as exc:
        session.rollback()
        form = {"question": question, "answer": answer, "reason": reason}
        status = 400 if isinstance(exc, InvalidInput) else 409
        return _article(
            request,
            session,
            services,
            kit,
            editor,
            faq_id,
            error=exc.message,
            status_code=status,
            form=form,
        )
    record_action(
        session,
        actor=editor.actor,
        action="faq.rewrite",
        target=f"faq:{faq_id}",
        before=before,
        after=entry_state(session, faq_id),
    )
    services.index.commit_and_sync(session, services.session_factory)
    return RedirectResponse(f"/review/health/faqs/{faq_id}?done=rewritten", status_code=303)


@router.post("/faqs/{faq_id}/merge", response_class=HTMLResponse)
def merge_article(
    request: Request,
    faq_id: int,
    session: SessionDep,
    services: ServicesDep,
    kit: HealthDep,
    csrf: Annotated[str | None, Form()] = None,
    into: Annotated[str, Form(max_length=20)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
    confirm: Annotated[str | None, Form(max_length=8)] = None,
) -> Response:
    """Merge the article into another (the "yes, merge" box ticked); then show the survivor."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    check_csrf(editor, csrf)
    try:
        target = visitors.parse_id(into, "into")
        if target is None:
            raise InvalidInput("choose the FAQ to merge into (its id)")
        if confirm != "yes":
            raise InvalidInput("tick the box to confirm the merge")
        result = merge.merge_entries(session, faq_id, target, by=editor.actor, reason=reason)
    except (InvalidInput, Conflict, NotFound) as exc:
        session.rollback()
        status = {InvalidInput: 400, Conflict: 409, NotFound: 404}[type(exc)]
        return _article(
            request, session, services, kit, editor, faq_id, error=exc.message, status_code=status
        )
    target_id = result.target.id
    services.index.commit_and_sync(session, services.session_factory)
    return RedirectResponse(f"/review/health/faqs/{target_id}?done=merged", status_code=303)


# -- one flag ----------------------------------------------------------------------------


@router.get("/flags/{flag_id}", response_class=HTMLResponse)
def flag_page(request: Request, flag_id: int, session: SessionDep) -> Response:
    """A flag with its whole evidence (content gaps have no article page)."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    return _flag(request, session, editor, flag_id)


def _flag(
    request: Request,
    session: Session,
    editor: Editor,
    flag_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    flag = flags.get_flag_or_raise(session, flag_id)
    lang = page_language(request)
    tr = translator(lang)
    entry = session.get(FaqEntry, flag.entry_id) if flag.entry_id else None
    return _page(
        request,
        "review/health_flag.html",
        {
            "lang": lang,
            "flag": flag,
            "entry": entry,
            "summary": flag_summary(flag, tr),
            "evidence": flag.evidence or {},
            "facts": evidence_facts(flag.evidence, tr),
            "editor": editor,
            "error": error,
        },
        status_code=status_code,
    )


def _safe_back(target: str | None, fallback: str) -> str:
    # Only pages of this section: never an open redirect.
    if target and target.startswith("/review/health") and "//" not in target:
        return target
    return fallback


@router.post("/flags/{flag_id}/dismiss", response_class=HTMLResponse)
def dismiss(
    request: Request,
    flag_id: int,
    session: SessionDep,
    csrf: Annotated[str | None, Form()] = None,
    reason: Annotated[str, Form(max_length=500)] = "",
    back: Annotated[str | None, Form(max_length=300)] = None,
) -> Response:
    """Dismiss a flag with a reason; then back where the editor came from."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    check_csrf(editor, csrf)
    before = flag_state(session, flag_id)
    try:
        flags.dismiss_flag(session, flag_id, reason=reason, by=editor.actor)
        record_action(
            session,
            actor=editor.actor,
            action="flag.dismiss",
            target=f"flag:{flag_id}",
            before=before,
            after=flag_state(session, flag_id),
        )
    except (InvalidInput, InvalidTransition) as exc:
        session.rollback()
        status = 400 if isinstance(exc, InvalidInput) else 409
        return _flag(request, session, editor, flag_id, error=exc.message, status_code=status)
    session.commit()
    target = _safe_back(back, f"/review/health/flags/{flag_id}")
    sep = "&" if "?" in target.split("#")[0] else "?"
    path, _, anchor = target.partition("#")
    return RedirectResponse(
        f"{path}{sep}done=dismissed" + (f"#{anchor}" if anchor else ""), status_code=303
    )
