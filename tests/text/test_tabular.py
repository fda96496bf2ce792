"""The shared import-file reader: decoding, formats, limits, columns and bad rows."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest

from kb.capture import thread_files
from kb.errors import InvalidInput
from kb.health import feedback_import
from kb.text.tabular import (
    MAX_FILE_BYTES,
    BadLine,
    CsvRows,
    Record,
    RowError,
    TextFile,
    detect_format,
    find_columns,
    format_of_suffix,
    json_lines,
    load,
    read_text,
)

TODAY = date(2026, 6, 30)


def test_a_bad_csv_row_is_reported_and_the_file_read_on() -> None:
    too_long = "y" * (csv.field_size_limit() + 1)
    text = f"thread,channel,role,text\nc1,x,customer,{too_long}\nc2,x,customer,Hi\nc2,x,agent,Yo\n"
    error, thread = thread_files.read_csv(text)
    assert error == RowError(2, "malformed CSV (field larger than field limit (131072))")
    assert isinstance(thread, thread_files.ThreadRow) and thread.lines == (3, 4)
    # Feedback files stop there: the whole file is reported unreadable.
    with pytest.raises(csv.Error, match="field larger than field limit"):
        list(feedback_import.read_csv(text.replace("thread", "slug,date,views"), today=TODAY))


# -- files ----------------------------------------------------------------------------------
def test_format_from_the_extension_or_the_first_character(tmp_path: Path) -> None:
    assert format_of_suffix(Path("a.NDJSON")) == "jsonl"
    assert format_of_suffix(Path("a.tsv")) == "csv"
    assert format_of_suffix(Path("a.txt")) is None
    assert detect_format(Path("a.txt"), "{}") == "csv"
    assert detect_format(Path("export"), '  {"a": 1}') == "jsonl"
    assert detect_format(Path("export"), "a,b") == "csv"


def test_text_is_utf8_with_or_without_bom_else_shift_jis(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    for data in (
        "スレッド,本文".encode(),
        "\ufeffスレッド,本文".encode(),
        "スレッド,本文".encode("cp932"),
    ):
        path.write_bytes(data)
        assert read_text(path) == "スレッド,本文"
    path.write_bytes(b"ab\x81\x20")
    with pytest.raises(InvalidInput, match=r"f.csv: not UTF-8 or Shift_JIS text \(byte 2\)"):
        read_text(path)


def test_unusable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        read_text(tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match="is a directory"):
        read_text(tmp_path)
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(InvalidInput, match="larger than 200 MB"):
        read_text(big)


def test_columns_by_alias_first_found_wins() -> None:
    aliases = {"thread": ("thread_id", "conversation"), "text": ("text", "body")}
    assert find_columns(["Body", "Conversation", "Thread-ID"], aliases) == {"thread": 2, "text": 0}


def test_records_carry_their_first_and_last_line() -> None:
    rows = CsvRows(io.StringIO('a,b\n1,"x\ny"\n\n , \n2,z\n', newline=""), ",")
    assert rows.header == ["a", "b"]
    assert [(r.line, r.end, r.value) for r in rows] == [(2, 3, ["1", "x\ny"]), (6, 6, ["2", "z"])]
    lines = list(json_lines(['{"a": 1}', "", "{oops"]))
    assert lines[0] == Record(1, {"a": 1}, 1)
    assert isinstance(lines[1], BadLine) and lines[1].line == 3
    assert lines[1].row_error().message.startswith("invalid JSON (")
    assert CsvRows([], ",").header is None


def test_load_gives_text_format_and_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "days.tsv"
    path.write_text("slug\tdate\n", encoding="utf-8")
    assert load(path) == TextFile("slug\tdate\n", "csv", "\t")
    assert load(path, "jsonl").kind == "jsonl"
    (tmp_path / "days").write_text('{"slug": "a"}\n', encoding="utf-8")
    assert load(tmp_path / "days") == TextFile('{"slug": "a"}\n', "jsonl", None)
