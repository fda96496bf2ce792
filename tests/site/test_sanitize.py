"""Markdown answers render inert: whatever an editor (or an attacker with an editor key)
writes, the HTML keeps only allow-listed tags, attributes and link schemes."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session, sessionmaker

from api.web.markdown import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, render_markdown
from kb.db import session_scope
from kb.faqs.content import Article
from kb.faqs.entries import create_entry
from tests.support.html_dom import Node, parse
from tests.support.pages import BROWSER_UA

SAFE_SCHEMES = {"http", "https", "mailto", "tel"}
HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<<script>script>alert(1)<</script>/script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    '<a href="  JaVaScRiPt:alert(1)">x</a>',
    '<a href="java&#x09;script:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JAVASCRIPT:alert(document.cookie))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![img](javascript:alert(1))",
    "<javascript:alert(1)>",
    "[ref][1]\n\n[1]: javascript:alert(1)",
    '<div onclick="alert(1)">hi</div>',
    '<p onmouseover="alert(1)" style="color:red">hi</p>',
    '<a href="https://ok.example" onclick="alert(1)" target="_blank">ok</a>',
    "<svg onload=alert(1)><circle r=1 /></svg>",
    "<iframe src=https://evil.example></iframe>",
    "<object data=x.swf></object><embed src=x.swf>",
    "<style>body{display:none}</style>",
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/">',
    '<form action="https://evil.example"><input name=p></form>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<!-- <script>alert(1)</script> -->",
    "<details open ontoggle=alert(1)>",
    '<a href="/faq/other-article">internal</a>',
    "`<script>alert(1)</script>` and\n\n    <script>indented code</script>",
    "```html\n<script>alert(1)</script>\n```",
    "| a | b |\n|---|---|\n| <b onclick=x>1</b> | [x](javascript:y) |",
]
MARKDOWN_BITS = [
    "# Heading",
    "## Steps",
    "1. First\n2. Second",
    "- item\n- item",
    "**bold** and _em_",
    "> quote",
    "[Sorami](https://sorami.example/help)",
    "call [0120-000-000](tel:0120000000)",
    "設定 > モバイル通信 > eSIMを追加",
    "---",
]


def _scheme(url: str) -> str | None:
    # Browsers drop ASCII whitespace and control characters before reading a scheme.
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", html.unescape(url))
    parts = urlsplit(cleaned)
    return parts.scheme.lower() or None


def _assert_inert(rendered: str) -> None:
    assert not re.search(r"<\s*script", rendered, re.I)
    doc = parse(rendered)
    for node in doc.iter():
        if node.tag == "#document":
            continue
        assert node.tag in ALLOWED_TAGS, node.tag
        allowed = ALLOWED_ATTRIBUTES.get(node.tag, set()) | ({"rel"} if node.tag == "a" else set())
        for name, value in node.attrs.items():
            assert name in allowed, (node.tag, name)
            assert not name.lower().startswith("on")
            if name == "href" and value:
                scheme = _scheme(value)
                assert scheme is None or scheme in SAFE_SCHEMES, value


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from(HOSTILE),
            st.sampled_from(MARKDOWN_BITS),
            st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
            st.text(alphabet="<>\"'=/:; &#ajvscrtipoenlhf()[]!`", max_size=40),
        ),
        min_size=1,
        max_size=8,
    ),
    joiner=st.sampled_from(["\n\n", "\n", " ", ""]),
)
def test_rendered_markdown_is_always_inert(parts: list[str], joiner: str) -> None:
    _assert_inert(render_markdown(joiner.join(parts)))


def test_each_known_attack_renders_inert_and_safe_markdown_survives() -> None:
    for attack in HOSTILE:
        _assert_inert(render_markdown(attack))
    doc = parse(render_markdown("\n\n".join(MARKDOWN_BITS)))
    assert {"h1", "h2", "ol", "ul", "strong", "em", "blockquote", "a", "hr"} - {
        n.tag for n in doc.iter()
    } == {"h1"}  # h1 is reserved for the page's title
    hrefs = [a.get("href") for a in doc.find_all("a")]
    assert hrefs == ["https://sorami.example/help", "tel:0120000000"]
    assert all(a.get("rel") == "noopener noreferrer" for a in doc.find_all("a"))


def test_hostile_article_is_inert_on_the_page(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    answer = "Steps below.\n\n" + "\n\n".join(HOSTILE)
    with session_scope(session_factory) as s:
        entry = create_entry(
            s,
            question="<script>alert('title')</script> How do I pay?",
            answer=answer,
            category="billing",
            language="en",
            slug="hostile-article",
        )
        entry_id = entry.id
    r = client.get("/faq/hostile-article", headers={"User-Agent": BROWSER_UA})
    assert r.status_code == 200
    doc = parse(r.text)
    scripts: list[Node] = doc.find_all("script")
    assert [s.get("src") for s in scripts] == ["/static/vote.js"]
    assert all(not s.children for s in scripts)
    assert "<script>alert('title')</script>" in doc.one("h1").text  # shown as text, inert
    answer_div = doc.one("div", class_="answer")
    _assert_inert("".join(_serialise(c) for c in answer_div.children))
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert entry_id > 0


def _serialise(node: Node | str) -> str:
    if isinstance(node, str):
        return html.escape(node, quote=False)
    attrs = "".join(f' {k}="{html.escape(v or "")}"' for k, v in node.attrs.items())
    return f"<{node.tag}{attrs}>" + "".join(_serialise(c) for c in node.children) + f"</{node.tag}>"


def test_lists_written_the_commonmark_way_render_as_lists(seed_articles: list[Article]) -> None:
    doc = parse(
        render_markdown("Tips:\n- one\n- two\n\n1. first\n2. second\n   - nested\n3. third")
    )
    assert [p.text for p in doc.find_all("p")] == ["Tips:"]
    top_list = next(n for n in doc.children if isinstance(n, Node) and n.tag == "ul")
    assert [li.text for li in top_list.find_all("li")] == ["one", "two"]
    ordered = doc.one("ol")
    assert len(ordered.find_all("li")) == 4 and ordered.one("ul").text == "nested"
    assert render_markdown("In\n2024. it changed") == "<p>In\n2024. it changed</p>"
    for article in seed_articles:
        for block in parse(render_markdown(article.answer)).iter():
            if block.tag in ("p", "li"):
                own = "".join(c for c in block.children if isinstance(c, str))
                assert not re.search(r"\n\s*(?:[-*+]|\d+\.) ", own), (article.slug, own)
