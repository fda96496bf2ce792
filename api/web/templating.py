"""The one Jinja2 environment of every server-rendered page, and how a page is rendered.

Templates live with their feature (`api/<feature>/templates/`); the loader searches the
shared `api/web/templates/` first, then every feature's folder, so a template is named the
same wherever it lives ("base.html", "review/draft.html"). Pages are autoescaped and speak
through gettext (`{{ _("...") }}`): each render gets its own language's callables in its
context, so no language is ever set globally.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from jinja2.nodes import EvalContext
from jinja2.utils import pass_eval_context
from markupsafe import escape

from api.web.i18n import languages, translator

API_DIR = Path(__file__).resolve().parent.parent
SHARED = API_DIR / "web" / "templates"
SEARCH_PATH = [SHARED, *sorted(p for p in API_DIR.glob("*/templates") if p != SHARED)]

environment = Environment(
    loader=FileSystemLoader(SEARCH_PATH),
    autoescape=True,
    extensions=["jinja2.ext.i18n"],
)
# English (the msgids) unless the render's context brings its language's callables.
environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
environment.globals["ui_languages"] = languages()
templates = Jinja2Templates(env=environment)


@functools.cache
def gettext_callables(language: str) -> dict[str, Callable[..., str]]:
    """gettext, ngettext, pgettext and npgettext of one language, as templates call them:
    %(name)s placeholders filled from keyword arguments; text and values escaped when the page
    is."""
    t = translator(language).translations

    def fill(eval_ctx: EvalContext, text: str, variables: dict[str, Any]) -> str:
        # A translation is text, never markup: it is escaped like the variables it holds.
        return (escape(text) if eval_ctx.autoescape else text) % variables

    @pass_eval_context
    def gettext(eval_ctx: EvalContext, message: str, /, **variables: Any) -> str:
        return fill(eval_ctx, t.gettext(message), variables)

    @pass_eval_context
    def ngettext(
        eval_ctx: EvalContext, singular: str, plural: str, num: int, /, **variables: Any
    ) -> str:
        variables.setdefault("num", num)
        return fill(eval_ctx, t.ngettext(singular, plural, num), variables)

    @pass_eval_context
    def pgettext(eval_ctx: EvalContext, context: str, message: str, /, **variables: Any) -> str:
        return fill(eval_ctx, t.pgettext(context, message), variables)

    @pass_eval_context
    def npgettext(
        eval_ctx: EvalContext,
        context: str,
        singular: str,
        plural: str,
        num: int,
        /,
        **variables: Any,
    ) -> str:
        variables.setdefault("num", num)
        return fill(eval_ctx, t.npgettext(context, singular, plural, num), variables)

    # `_` is the i18n extension's alias: it calls whichever `gettext` the context holds.
    return {"gettext": gettext, "ngettext": ngettext, "pgettext": pgettext, "npgettext": npgettext}


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """The page `name` in the language `context["lang"]` names."""
    page = {**context, **gettext_callables(translator(context["lang"]).language)}
    return templates.TemplateResponse(request, name, page, status_code=status_code)
