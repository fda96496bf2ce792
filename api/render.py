"""Markdown answers rendered to HTML and sanitised with an allow-list (nh3)."""

from __future__ import annotations

import markdown as md
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "a", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "kbd",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


def render_markdown(text: str) -> str:
    """Safe HTML for a Markdown answer: raw HTML, scripts and javascript: links are dropped."""
    html = md.markdown(text, extensions=["tables", "sane_lists", "fenced_code"])
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "tel"},
        link_rel="noopener noreferrer",
    )
