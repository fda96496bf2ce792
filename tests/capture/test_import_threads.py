"""Importing thread files: the JSONL and CSV readers, and `faqloop import-threads` on a real
database (bad rows reported with line numbers, good rows kept, idempotent re-import)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from api import state
from api.cli.main import app
from indexer.embedding.encoders import CachedEmbedder
from kb.capture.thread_files import RowError, ThreadRow, read_csv, read_threads
from kb.errors import InvalidInput
from kb.models import FaqDraft, QuestionPhrasing, Thread, ThreadPost, ThreadStatus
from tests.support.paths import CONTENT_DIR, TEST_MODEL

DATA = Path(__file__).parents[1] / "data" / "capture"


def _split(items: list[ThreadRow | RowError]) -> tuple[list[ThreadRow], list[RowError]]:
    return (
        [i for i in items if isinstance(i, ThreadRow)],
        [i for i in items if isinstance(i, RowError)],
    )


def test_jsonl_reader_keeps_good_lines_and_reports_bad_ones_by_line() -> None:
    rows, errors = _split(read_threads(DATA / "threads.jsonl"))
    assert [r.lines for r in rows] == [(1,), (2,), (3,), (7,)]
    assert [r.thread.channel for r in rows] == ["x", "instagram", "x", "email"]
    assert [e.line for e in errors] == [4, 5]
    assert errors[0].message.startswith("invalid JSON")
    assert "customer post" in errors[1].message


def test_csv_export_is_grouped_ordered_and_bad_rows_are_reported() -> None:
    rows, errors = _split(read_threads(DATA / "export.csv"))
    assert [e.line for e in errors] == [7, 8, 9, 10, 11]
    messages = dict((e.line, e.message) for e in errors)
    assert "text is empty" in messages[7]
    assert "customer or agent" in messages[8]
    assert "created_at" in messages[9]
    assert "conv-5" in messages[10] and "customer post" in messages[10]
    assert "conversation id is empty" in messages[11]
    conv1, conv2 = rows
    assert (conv1.thread.channel, conv1.thread.external_id) == ("x", "conv-1")
    assert conv1.lines == (2, 4)  # the agent's reply spans lines 2-3 (a quoted line break)
    # Exports list newest first; posts are put in time order.
    assert [p.role.value for p in conv1.thread.posts] == ["customer", "agent"]
    assert conv1.thread.url == "https://x.com/i/status/900"
    assert "\n" in conv1.thread.posts[1].text
    assert (conv2.thread.channel, [p.role.value for p in conv2.thread.posts]) == (
        "instagram",
        ["customer", "agent", "customer"],
    )


def test_csv_variants_shift_jis_tabs_positions_and_missing_columns(tmp_path: Path) -> None:
    text = (
        "thread_id\tposition\tis_agent\thandle\ttext\n"
        "t1\t2\ttrue\t@SoramiSupport\t再発行できます\n"
        "t1\t1\tfalse\t@user\tSIMを失くしました\n"
        "t1\tx\tfalse\t@user\tまだですか\n"
    )
    path = tmp_path / "export.tsv"
    path.write_bytes(text.encode("cp932"))
    rows, errors = _split(read_threads(path, default_channel="x"))
    assert [p.text for p in rows[0].thread.posts] == ["SIMを失くしました", "再発行できます"]
    assert [(e.line, "position" in e.message) for e in errors] == [(4, True)]
    with pytest.raises(InvalidInput, match="channel"):
        read_threads(path)
    with pytest.raises(InvalidInput, match="lacks the post text"):
        list(read_csv("conversation_id,role\nc1,customer\n", default_channel="x"))
    with pytest.raises(InvalidInput, match="no such file"):
        read_threads(tmp_path / "missing.jsonl")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81\x00")
    with pytest.raises(InvalidInput, match="UTF-8 or Shift_JIS"):
        read_threads(tmp_path / "binary.csv")


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    db_url: str,
    models_dir: Path,
    embedder: CachedEmbedder,
    seeded: None,
) -> CliRunner:
    """The real command line in this process, sharing the session's loaded model."""
    for name, value in {
        "FAQLOOP_DATA_DIR": str(tmp_path / "data"),
        "FAQLOOP_DATABASE_URL": db_url,
        "FAQLOOP_EMBEDDING_MODEL": TEST_MODEL,
        "FAQLOOP_MODELS_DIR": str(models_dir),
        "FAQLOOP_CONTENT_DIR": str(CONTENT_DIR),
    }.items():
        monkeypatch.setenv(name, value)
    # Loading the model costs seconds per command; the session's copy is the same model.
    monkeypatch.setattr(state, "load_embedder", lambda name, directory, **_: embedder)
    return CliRunner()


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_import_keeps_good_rows_reports_bad_ones_and_is_idempotent(
    cli: CliRunner, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    r = cli.invoke(app, ["import-threads", str(DATA / "export.csv"), "--report", str(report)])
    assert r.exit_code == 2, r.output
    assert "2 threads imported (2 new, 0 updated, 0 unchanged)" in r.stdout
    assert "5 rows rejected" in r.stdout
    for line in (7, 8, 9, 10, 11):
        assert f"line {line}: " in r.stderr
    assert "the other rows were imported" in r.stderr
    body = json.loads(report.read_text())
    assert [e["line"] for e in body["rejected"]] == [7, 8, 9, 10, 11]
    assert _count(session_factory, Thread) == 2 and _count(session_factory, ThreadPost) == 5
    with session_factory() as s:
        threads = s.scalars(select(Thread).order_by(Thread.external_id)).all()
        assert [(t.channel, t.external_id, t.status) for t in threads] == [
            ("x", "conv-1", ThreadStatus.drafted),
            ("instagram", "conv-2", ThreadStatus.drafted),
        ]
    drafts = _count(session_factory, FaqDraft)
    again = cli.invoke(app, ["import-threads", str(DATA / "export.csv")])
    assert "2 threads imported (0 new, 0 updated, 2 unchanged)" in again.stdout
    assert _count(session_factory, Thread) == 2 and _count(session_factory, FaqDraft) == drafts


def test_import_jsonl_files_covered_threads_and_drafts(
    cli: CliRunner, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    r = cli.invoke(app, ["import-threads", str(DATA / "threads.jsonl")])
    assert r.exit_code == 2 and "line 4: invalid JSON" in r.stderr, r.output
    assert "4 threads imported (4 new" in r.stdout
    with session_factory() as s:
        by_id = {t.external_id: t for t in s.scalars(select(Thread))}
        assert by_id["1860000000000000001"].status == ThreadStatus.covered
        learnt = s.scalars(
            select(QuestionPhrasing.text).where(QuestionPhrasing.thread_id.is_not(None))
        ).all()
        assert learnt == ["My Soramiのパスワードを忘れたのでログインできない"]
        assert by_id["ig-17890000001"].status == ThreadStatus.drafted
        assert by_id["case-2026-0042"].status == ThreadStatus.drafted
        # Japanese and English questions about points are separate drafts (one per language).
        assert by_id["ig-17890000001"].draft_id != by_id["case-2026-0042"].draft_id
    good = tmp_path / "good.jsonl"
    lines = (DATA / "threads.jsonl").read_text(encoding="utf-8").splitlines()
    good.write_text("\n".join(lines[:3]) + "\n", encoding="utf-8")
    r = cli.invoke(app, ["import-threads", str(good)])
    assert r.exit_code == 0, r.output
    assert "3 threads imported (0 new, 0 updated, 3 unchanged)" in r.stdout


def test_unusable_files_are_a_clear_error(cli: CliRunner, tmp_path: Path) -> None:
    r = cli.invoke(app, ["import-threads", str(tmp_path / "nope.csv")])
    assert r.exit_code == 2 and "no such file" in r.stderr
    shutil.copy(DATA / "export.csv", tmp_path / "x.csv")
    r = cli.invoke(app, ["import-threads", str(tmp_path / "x.csv"), "--format", "xml"])
    assert r.exit_code == 2 and "--format" in r.stderr
