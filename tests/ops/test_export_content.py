"""`faqloop export-content`: published articles back to the faq_content/ format, so that
loading the export into a fresh instance reproduces the same entries (hypothesis over
generated articles, Japanese included), and loading it into the same instance changes
nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, create_engine, delete, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from kb.db import make_engine, make_session_factory, migrate, session_scope
from kb.faqs.content import Article, read_content_dir
from kb.faqs.entries import load_articles
from kb.models import EntryStatus, FaqEntry, QuestionPhrasing
from kb.ops.backup import data_tables
from kb.ops.export import export_content
from tests.support.paths import CONTENT_DIR, PG_URL
from tests.support.serve import run as run_cli
from tests.support.serve import serve_env

Entry = tuple[str | None, str, str, str, str | None, str, str, tuple[str, ...]]


@pytest.fixture
def second_db_url(tmp_path: Path, _sqlite_template: Path) -> Iterator[str]:
    """Another migrated, empty database (the "fresh instance")."""
    if not PG_URL:
        path = tmp_path / "second.db"
        shutil.copy(_sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    url_str = url.render_as_string(hide_password=False)
    migrate(url_str)
    try:
        yield url_str
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def entries(factory: sessionmaker[Session]) -> list[Entry]:
    """Published entries as content sees them: key, slug, category, language, group,
    question, answer and phrasings (in order)."""
    out = []
    with factory() as s:
        rows = s.scalars(select(FaqEntry).where(FaqEntry.status == EntryStatus.published))
        for e in rows:
            rev = e.current_revision
            assert rev is not None
            phrasings = tuple(
                s.scalars(
                    select(QuestionPhrasing.text)
                    .where(QuestionPhrasing.entry_id == e.id)
                    .order_by(QuestionPhrasing.id)
                )
            )
            out.append(
                (
                    e.content_key,
                    e.slug,
                    e.category,
                    e.language,
                    e.translation_group,
                    rev.question,
                    rev.answer,
                    phrasings,
                )
            )
    return sorted(out, key=lambda t: t[1])


def _newlines(entry: Entry) -> Entry:
    # Text files are read with universal newlines: \r\n and \r in answers come back as \n.
    answer = entry[6].replace("\r\n", "\n").replace("\r", "\n")
    return (*entry[:6], answer, entry[7])


def _wipe(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        meta = MetaData()
        meta.reflect(bind=s.connection())
        s.execute(text("UPDATE faq_entry SET current_revision_id = NULL"))
        for table in reversed(data_tables(meta)):
            s.execute(delete(table))


# ----------------------------------------------------------------- generated articles

_JA = (
    "あいうえおかがきくけこさしすせそアイウエオカキクケコ日本語質問回線解約料金端末"
    "、。？！ー「」（）・〜＃：ｶﾀｶﾅＡＢＣ１２３"
)
_TRICKY = "#:-?&*!|>%@`'\"{}[],\\ \t\n\r\u3000\u2028\x85😭🙏é"
_chars = st.one_of(
    st.sampled_from(_JA),
    st.sampled_from(_TRICKY),
    # NUL aside: PostgreSQL text cannot hold it (the API answers 400 for it).
    st.characters(codec="utf-8", exclude_categories=("Cs", "Co", "Cn"), exclude_characters="\x00"),
)


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_chars, min_size=1, max_size=max_size).filter(lambda t: t.strip() != "")


_answers = st.one_of(
    _text(200),
    st.lists(_text(60), min_size=1, max_size=5).map("\n\n".join),
    st.builds(lambda t: f"# 手順\n\n1. {t}\n2. ---\n\n---\n", _text(40)),
)
_slugs = st.from_regex(r"[a-z0-9]{1,6}(-[a-z0-9]{1,6}){0,2}", fullmatch=True)


@st.composite
def articles(draw: st.DrawFn) -> list[Article]:
    slugs = draw(st.lists(_slugs, min_size=1, max_size=6, unique=True))
    keys = draw(
        st.lists(
            st.one_of(_text(20), st.sampled_from(["null", "yes", "1.5", "0x10", "~"])),
            min_size=len(slugs),
            max_size=len(slugs),
            unique_by=str.strip,
        )
    )
    out = []
    for slug, key in zip(slugs, keys, strict=True):
        out.append(
            Article(
                key=key.strip() or "k",
                slug=slug,
                category=draw(_text(30)).strip()[:64] or "c",
                language=draw(st.sampled_from(["ja", "en"])),
                question=draw(_text(80)).strip(),
                answer=draw(_answers).strip() or "a",
                questions=tuple(draw(st.lists(_text(40), max_size=4))),
                translation_group=draw(st.none() | _text(20).map(str.strip)) or None,
            )
        )
    return out


@settings(
    max_examples=int(os.environ.get("FAQLOOP_EXPORT_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(generated=articles())
def test_export_then_load_into_a_fresh_instance_gives_the_same_entries(
    generated: list[Article],
    session_factory: sessionmaker[Session],
    second_db_url: str,
) -> None:
    fresh = make_session_factory(make_engine(second_db_url))
    _wipe(session_factory)
    _wipe(fresh)
    with session_scope(session_factory) as s:
        load_articles(s, generated, author="test")
    original = entries(session_factory)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export"
        with session_scope(session_factory) as s:
            summary = export_content(s, out)
        assert len(summary.files) == len(original) and summary.keys_assigned == 0
        exported = read_content_dir(out)
        with session_scope(fresh) as s:
            load_articles(s, exported, author="export")
        assert entries(fresh) == [_newlines(e) for e in original]
        # Loading the export into the instance it came from changes nothing.
        with session_scope(session_factory) as s:
            again = load_articles(s, exported, author="export")
        crlf = sum(1 for e in original if e != _newlines(e))
        assert again.created == 0 and again.revised == crlf
        assert again.unchanged == len(original) - crlf


def test_seed_content_round_trips(
    seeded: None,
    session_factory: sessionmaker[Session],
    second_db_url: str,
    tmp_path: Path,
) -> None:
    with session_scope(session_factory) as s:
        summary = export_content(s, tmp_path / "out", categories_from=CONTENT_DIR)
    assert len(summary.files) == 106 and summary.categories_copied
    assert (tmp_path / "out" / "ja" / "esim-iphone-activate-ja.md").is_file()
    fresh = make_session_factory(make_engine(second_db_url))
    with session_scope(fresh) as s:
        load_articles(s, read_content_dir(tmp_path / "out"), author="export")
    assert entries(fresh) == entries(session_factory)
    # The seed files themselves come back (same keys, slugs, categories, groups, phrasings).
    original = {a.key: a for a in read_content_dir(CONTENT_DIR)}
    for art in read_content_dir(tmp_path / "out"):
        seed = original[art.key]
        assert (art.slug, art.category, art.language, art.translation_group) == (
            seed.slug,
            seed.category,
            seed.language,
            seed.translation_group,
        )
        assert art.question == seed.question and art.answer == seed.answer.strip()


def test_api_written_entries_round_trip_and_adopt_a_content_key(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    second_db_url: str,
    tmp_path: Path,
) -> None:
    r = client.post(
        "/v1/faqs",
        json={
            "question": "料金プランを\n途中で変えられますか？ #",
            "answer": "# 変更方法\r\n\r\nマイソラミから変更できます。\r\n---\r\n"
            "翌月から適用されます。",
            "category": "plans",
            "lang": "ja",
            "phrasings": ["プラン変更したい", "ＰＬＡＮを変えたい"],
            "translation_group": "change-plan",
        },
        headers=editor_headers,
    )
    assert r.status_code == 201, r.text
    new_id = r.json()["id"]
    before = entries(session_factory)
    with session_scope(session_factory) as s:
        summary = export_content(s, tmp_path / "out")
    assert summary.keys_assigned == 1
    with session_factory() as s:
        adopted = s.get(FaqEntry, new_id)
        assert adopted is not None and adopted.content_key == f"{adopted.slug}.ja"
    exported = read_content_dir(tmp_path / "out")
    mine = next(a for a in exported if a.key == f"{r.json()['slug']}.ja")
    assert mine.question == "料金プランを\n途中で変えられますか？ #"
    assert mine.questions == ("プラン変更したい", "PLANを変えたい")
    # Into this instance again: nothing is created, nothing clashes on slugs.
    with session_scope(session_factory) as s:
        again = load_articles(s, exported, author="export")
    assert again.created == 0 and again.revised == 1  # only the \r\n answer, now \n
    # Into a fresh instance: the same entries (the new key aside, line endings as \n).
    fresh = make_session_factory(make_engine(second_db_url))
    with session_scope(fresh) as s:
        load_articles(s, exported, author="export")
    adopted_before = [(f"{e[1]}.{e[3]}" if e[0] is None else e[0], *e[1:]) for e in before]
    assert entries(fresh) == [_newlines(e) for e in adopted_before]  # type: ignore[arg-type]


def test_export_content_cli(seeded: None, db_url: str, models_dir: Path, tmp_path: Path) -> None:
    env = serve_env(tmp_path / "data", db_url, models_dir)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args, timeout=300)

    out = tmp_path / "content"
    r = run("export-content", str(out))
    assert r.returncode == 0, r.stderr
    assert "106 articles written" in r.stdout and "categories.yaml copied" in r.stdout
    assert len(list(out.rglob("*.md"))) == 106
    r = run("export-content", str(out))
    assert r.returncode == 2 and "is not empty" in r.stderr
    r = run("export-content", str(out), "--overwrite")
    assert r.returncode == 0, r.stderr
    # The folder is a content folder: load-content accepts it and finds nothing to change.
    r = run("load-content", str(out))
    assert r.returncode == 0 and "106 unchanged" in r.stdout
