"""The faq_content/ format: parsing, errors that name the file, the seed set itself."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.errors import ContentError
from kb.faqs.content import Article, parse_article, read_content_dir, render_article
from tests.support.paths import CONTENT_DIR

GOOD = """---
id: reset.en
slug: reset-password
category: account
language: en
translation_group: reset
questions:
  - I forgot my password
  - cannot log in
---
# How do I reset my password?

Tap **Forgot password**.
"""


def test_parse_article() -> None:
    art = parse_article(GOOD)
    assert art.key == "reset.en" and art.slug == "reset-password"
    assert art.question == "How do I reset my password?"
    assert art.answer == "Tap **Forgot password**."
    assert art.questions == ("I forgot my password", "cannot log in")
    assert art.translation_group == "reset"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# no front matter\n\nbody", "no front matter"),
        ("---\nid: [unclosed\n---\n# Q\n\nA", "malformed front matter"),
        ("---\n- a list\n---\n# Q\n\nA", "must be a mapping"),
        ("---\nid: x\nslug: s\ncategory: c\n---\n# Q\n\nA", "lacks language"),
        ("---\nid: x\nslug: Bad Slug\ncategory: c\nlanguage: en\n---\n# Q\n\nA", "slug"),
        ("---\nid: x\nslug: s\ncategory: c\nlanguage: xx\n---\n# Q\n\nA", "language 'xx'"),
        ("---\nid: x\nslug: s\ncategory: c\nlanguage: en\nquestions: 3\n---\n# Q\n\nA", "list"),
        ("---\nid: x\nslug: s\ncategory: c\nlanguage: en\n---\n# Q\n", "answer"),
    ],
)
def test_malformed_articles_are_named(text: str, message: str) -> None:
    with pytest.raises(ContentError, match=message) as info:
        parse_article(text, source="faq_content/en/broken.md")
    assert "faq_content/en/broken.md" in str(info.value)


def test_read_dir_names_the_bad_file_and_duplicate_slugs(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.md").write_text(GOOD.replace("id: reset.en", "id: other.en"))
    with pytest.raises(ContentError, match=r"b\.md: slug 'reset-password' also used"):
        read_content_dir(tmp_path)
    (tmp_path / "b.md").write_text("---\nid: [\n---\n")
    with pytest.raises(ContentError, match=r"b\.md"):
        read_content_dir(tmp_path)


_text = (
    st.text(
        alphabet=st.characters(
            whitelist_categories=("Lu", "Ll", "Lo", "Nd"), whitelist_characters=" ?、。ー"
        ),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=60, deadline=None)
@given(
    question=_text,
    answer=_text,
    questions=st.lists(_text, max_size=4),
    lang=st.sampled_from(["ja", "en"]),
    slug=st.from_regex(r"[a-z0-9]{1,10}(-[a-z0-9]{1,10}){0,3}", fullmatch=True),
)
def test_render_then_parse_round_trips(
    question: str, answer: str, questions: list[str], lang: str, slug: str
) -> None:
    art = Article(
        key=f"{slug}.{lang}",
        slug=slug,
        category="billing",
        language=lang,
        question=question,
        answer=answer,
        questions=tuple(questions),
        translation_group=slug,
    )
    assert parse_article(render_article(art)) == art


def test_seed_content_is_complete_and_bilingual() -> None:
    articles = read_content_dir(CONTENT_DIR)
    groups: dict[str, set[str]] = {}
    for art in articles:
        assert art.translation_group, f"{art.path} has no translation_group"
        groups.setdefault(art.translation_group, set()).add(art.language)
        assert 2 <= len(art.questions) <= 4, f"{art.path}: {len(art.questions)} questions"
    assert len(groups) >= 40
    assert all(langs == {"ja", "en"} for langs in groups.values())
    cats = Counter(a.category for a in articles)
    for needed in ("billing", "plans", "device-setup", "sim-esim", "network", "orders"):
        assert cats[needed] >= 2
    for needed in ("shipping", "returns", "account", "payments", "outages"):
        assert cats[needed] >= 2
