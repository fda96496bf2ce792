"""Domain services on a real database: entries, revisions, phrasings, content, keys."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kb.auth.keys import authenticate, create_key, hash_key, list_keys, revoke_key
from kb.db import session_scope
from kb.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from kb.faqs import entries as faqs
from kb.faqs.content import Article
from kb.models import (
    ApiKey,
    EntryChange,
    FaqEntry,
    FaqRevision,
    PhrasingSource,
    QuestionPhrasing,
    Role,
)


def _create(session: Session, **kw: object) -> FaqEntry:
    args: dict[str, object] = {
        "question": "How do I reset my password?",
        "answer": "Tap **Forgot password**.",
        "category": "account",
        "language": "en",
        "phrasings": ["I forgot my password", "i forgot my password!", "Can't log in"],
    }
    args.update(kw)
    return faqs.create_entry(session, **args)  # type: ignore[arg-type]


def test_create_entry_with_revision_and_deduplicated_phrasings(session: Session) -> None:
    entry = _create(session)
    session.commit()
    assert entry.slug == "how-do-i-reset-my-password"
    assert entry.current_revision is not None and entry.current_revision.number == 1
    texts = [p.text for p in faqs.get_entry_or_raise(session, entry.id).phrasings]
    assert texts == ["I forgot my password", "Can't log in"]  # case/punctuation duplicate gone
    assert session.scalar(select(func.count()).select_from(EntryChange)) == 1


def test_japanese_title_gets_a_generated_slug_and_slugs_stay_unique(session: Session) -> None:
    ja = _create(session, question="パスワードを忘れました", language="ja", phrasings=[])
    assert ja.slug.startswith("ja-")
    first = _create(session)
    second = _create(session)
    assert second.slug == f"{first.slug}-2"
    with pytest.raises(Conflict):
        _create(session, slug=first.slug)


def test_revise_adds_a_revision_and_never_overwrites(session: Session) -> None:
    entry = _create(session)
    session.commit()
    faqs.revise_entry(
        session,
        entry.id,
        question="How can I reset my password?",
        answer="Open **My Sorami** and tap **Forgot password**.",
        category="account",
        language="en",
        reason="clearer",
    )
    session.commit()
    revs = faqs.list_revisions(session, entry.id)
    assert [r.number for r in revs] == [1, 2]
    assert revs[0].question == "How do I reset my password?"  # the old text is kept
    assert revs[0].answer == "Tap **Forgot password**."
    assert revs[1].reason == "clearer"
    assert entry.current_revision_id == revs[1].id
    # Saving the same text again is not a new revision.
    faqs.revise_entry(
        session,
        entry.id,
        question=revs[1].question,
        answer=revs[1].answer,
        category="account",
        language="en",
    )
    assert len(faqs.list_revisions(session, entry.id)) == 2


def test_revise_replaces_editor_phrasings_but_keeps_learnt_ones(session: Session) -> None:
    entry = _create(session)
    faqs.add_phrasings(session, entry, ["pw reset link never came"], source=PhrasingSource.thread)
    faqs.revise_entry(
        session,
        entry.id,
        question="How do I reset my password?",
        answer="Tap **Forgot password**.",
        category="account",
        language="en",
        phrasings=["Reset login password"],
    )
    session.commit()
    texts = {p.text for p in faqs.get_entry_or_raise(session, entry.id).phrasings}
    assert texts == {"Reset login password", "pw reset link never came"}


@pytest.mark.parametrize(
    "bad",
    [
        {"question": "  "},
        {"answer": ""},
        {"language": "xx"},
        {"category": " "},
        {"question": "x" * 501},
    ],
)
def test_invalid_entries_are_refused(session: Session, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        _create(session, **bad)


def test_missing_entry(session: Session) -> None:
    with pytest.raises(NotFound):
        faqs.get_entry_or_raise(session, 999)


def _article(**kw: object) -> Article:
    base: dict[str, object] = {
        "key": "reset.en",
        "slug": "reset-password",
        "category": "account",
        "language": "en",
        "question": "How do I reset my password?",
        "answer": "Tap **Forgot password**.",
        "questions": ("I forgot my password", "Can't log in"),
        "translation_group": "reset",
    }
    base.update(kw)
    return Article(**base)  # type: ignore[arg-type]


def _counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.scalar(select(func.count()).select_from(model)) or 0
        for model in (FaqEntry, FaqRevision, QuestionPhrasing, EntryChange)
    )


def test_loading_content_twice_equals_once(
    session_factory: sessionmaker[Session], seed_articles: list[Article]
) -> None:
    with session_scope(session_factory) as s:
        first = faqs.load_articles(s, seed_articles, author="test")
    with session_scope(session_factory) as s:
        once = _counts(s)
        snapshot = [
            (e.slug, e.category, e.language, e.translation_group, e.current_revision_id)
            for e in s.scalars(select(FaqEntry).order_by(FaqEntry.id))
        ]
    with session_scope(session_factory) as s:
        second = faqs.load_articles(s, seed_articles, author="test")
    with session_scope(session_factory) as s:
        assert _counts(s) == once
        assert [
            (e.slug, e.category, e.language, e.translation_group, e.current_revision_id)
            for e in s.scalars(select(FaqEntry).order_by(FaqEntry.id))
        ] == snapshot
    assert first.created == len(seed_articles)
    assert second.created == 0 and second.revised == 0
    assert second.unchanged == len(seed_articles)


def test_changed_content_file_makes_a_new_revision(session: Session) -> None:
    faqs.load_articles(session, [_article()], author="t")
    summary = faqs.load_articles(
        session,
        [_article(answer="Open **My Sorami**.", questions=("I forgot my password", "locked out"))],
        author="t",
    )
    session.commit()
    assert summary.revised == 1
    entry = faqs.get_entry_by_slug(session, "reset-password")
    assert entry is not None
    assert [r.answer for r in faqs.list_revisions(session, entry.id)] == [
        "Tap **Forgot password**.",
        "Open **My Sorami**.",
    ]
    assert {p.text for p in entry.phrasings} == {"I forgot my password", "locked out"}


def test_keys_are_stored_as_hashes_and_roles_are_ranked(session: Session) -> None:
    key, secret = create_key(session, role="agent", name="bot")
    session.commit()
    stored = session.scalar(select(ApiKey).where(ApiKey.id == key.id))
    assert stored is not None and stored.key_hash == hash_key(secret)
    assert secret not in {stored.key_hash, stored.prefix, stored.name}
    assert authenticate(session, secret, needs=Role.agent).id == key.id
    with pytest.raises(Forbidden):
        authenticate(session, secret, needs=Role.editor)
    with pytest.raises(Unauthorized):
        authenticate(session, secret + "x", needs=Role.agent)
    with pytest.raises(Unauthorized):
        authenticate(session, None, needs=Role.agent)
    revoke_key(session, key.id)
    session.commit()
    with pytest.raises(Unauthorized):
        authenticate(session, secret, needs=Role.agent)
    assert [k.id for k in list_keys(session)] == [key.id]
    with pytest.raises(InvalidInput):
        create_key(session, role="root")
