"""Markdown answers rendered to HTML and sanitised with an allow-list (nh3)."""

from __future__ import annotations

import re

import markdown as md
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li",
    "a", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "kbd",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}

_FENCE = re.compile(r"^(```|~~~)")
_ITEM = re.compile(r"^([-*+]|\d{1,9}[.)])([ \t]+)(\S.*)$")
_RULE = re.compile(r"^([-*_])(?: *\1){2,} *$")  # "* * *" is a horizontal rule, not an item


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _commonmark_lists(text: str) -> str:
    """Rewrite CommonMark list layout into the one Python-Markdown understands.

    Editors write CommonMark: a list may follow a paragraph directly ("Tips:" then "- a"),
    and a nested item is indented to its parent's text (3 spaces under "1. "). Python-
    Markdown needs a blank line before a list and 4 spaces per nesting level; without this,
    such items render as one run of text.
    """
    out: list[str] = []
    stack: list[int] = []  # text columns of the open list items, outermost first
    fence_shift: int | None = None  # inside a fenced block: how far its lines move
    prev_blank, prev_in_list = True, False
    for raw in text.expandtabs(4).splitlines():
        indent, body = _indent(raw), raw.lstrip(" ")
        if fence_shift is not None:
            out.append(_shift(raw, fence_shift))
            if _FENCE.match(body):
                fence_shift = None
            continue
        if not body:
            out.append("")
            prev_blank = True
            continue
        item = None if _RULE.match(body) else _ITEM.match(body)
        lazy = not item and indent == 0 and not prev_blank and bool(stack)
        if not lazy:
            while stack and indent < stack[-1]:
                stack.pop()
        if item:
            marker = item.group(1)
            starts_list = not stack and not prev_in_list
            # As in CommonMark, only a list starting at 1 interrupts a paragraph ("2024. x").
            if (
                starts_list
                and not prev_blank
                and (not marker[0].isdigit() or int(marker[:-1]) == 1)
            ):
                out.append("")
            out.append(" " * (4 * len(stack)) + marker + " " + item.group(3))
            stack.append(indent + len(marker) + len(item.group(2)))
        elif lazy or not stack:
            out.append(raw)
        else:
            new_indent = 4 * len(stack) + max(0, indent - stack[-1])
            out.append(" " * new_indent + body)
            if _FENCE.match(body):
                fence_shift = new_indent - indent
        if _FENCE.match(body) and fence_shift is None and not stack:
            fence_shift = 0
        prev_blank, prev_in_list = False, bool(stack)
    return "\n".join(out)


def _shift(line: str, by: int) -> str:
    if by >= 0:
        return " " * by + line
    return line[min(-by, _indent(line)) :]


def render_markdown(text: str) -> str:
    """Safe HTML for a Markdown answer: raw HTML, scripts and javascript: links are dropped."""
    html = md.markdown(_commonmark_lists(text), extensions=["tables", "sane_lists", "fenced_code"])
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto", "tel"},
        link_rel="noopener noreferrer",
    )
