"""Reading import files: JSONL or CSV/TSV text, UTF-8 (with or without BOM) or Shift_JIS.

The one reader under every file import (threads, feedback history, posts to suggest for).
It finds the format, decodes, enforces the size limit and hands over records with their
line numbers; a line it cannot parse comes back as a `BadLine` so an import can report it
and keep going. What a record means is the importer's business.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from kb.errors import InvalidInput
from kb.text.hygiene import bad_text, text_problem

Kind = Literal["jsonl", "csv"]
Format = Literal["auto", "jsonl", "csv"]
MAX_FILE_BYTES = 200 * 1024 * 1024
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv", ".tsv")
ParseError = TypeVar("ParseError", json.JSONDecodeError, csv.Error)


@dataclass(frozen=True)
class RowError:
    """A line that was not imported, and why."""

    line: int
    message: str


@dataclass(frozen=True)
class Record:
    """One JSONL line's value, or one CSV row's cells; `end` is the row's last line."""

    line: int
    value: Any
    end: int


@dataclass(frozen=True)
class BadLine(Generic[ParseError]):
    """A line that is not valid JSON, or a row the CSV reader rejects (a field too long)."""

    line: int
    error: ParseError

    def row_error(self) -> RowError:
        """The error as an import reports it."""
        if isinstance(self.error, json.JSONDecodeError):
            return RowError(
                self.line, f"invalid JSON ({self.error.msg} at column {self.error.colno})"
            )
        return RowError(self.line, f"malformed CSV ({self.error})")


@dataclass(frozen=True)
class TextFile:
    """A decoded import file and how to read it."""

    text: str
    kind: Kind
    delimiter: str | None  # a tab for .tsv; None leaves it to the CSV reader


def load(path: Path, fmt: Format = "auto") -> TextFile:
    """A file's text, format (`fmt`, or as `detect_format` finds it) and delimiter."""
    text = read_text(path)
    kind = detect_format(path, text) if fmt == "auto" else fmt
    return TextFile(text, kind, "\t" if path.suffix.lower() == ".tsv" else None)


def read_text(path: Path) -> str:
    """The decoded text of a file of at most MAX_FILE_BYTES; InvalidInput naming the problem."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a directory, not a file") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror})") from exc
    return decode(data, str(path))


def decode(data: bytes, name: str) -> str:
    """Text of a file: UTF-8 (with or without BOM), else Shift_JIS as Japanese Excel saves."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp932")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name}: not UTF-8 or Shift_JIS text (byte {exc.start})") from exc


def format_of_suffix(path: Path) -> Kind | None:
    """The format a file's extension names, if it names one."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in CSV_SUFFIXES:
        return "csv"
    return None


def detect_format(path: Path, text: str) -> Kind:
    """By extension (.txt is CSV), else by the first character ({ means JSONL)."""
    kind = format_of_suffix(path)
    if kind is not None:
        return kind
    if path.suffix.lower() == ".txt":
        return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def json_lines(lines: Iterable[str]) -> Iterator[Record | BadLine[json.JSONDecodeError]]:
    """The value of each non-empty line, numbered from 1."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadLine(number, exc)
            continue
        for where, problem in bad_text(value, []):
            field = ".".join(map(str, where)) or "the value"
            yield BadLine(number, json.JSONDecodeError(f"{field}: text {problem}", line, 0))
            break
        else:
            yield Record(number, value, number)


class CsvRows:
    """A CSV file's header, then its non-blank rows as records of cells.

    Reading the header raises csv.Error when it is malformed; `header` is None for an
    empty file.
    """

    def __init__(self, lines: Iterable[str], delimiter: str) -> None:
        self._reader = csv.reader(lines, delimiter=delimiter)
        self.header: list[str] | None = next(self._reader, None)

    def __iter__(self) -> Iterator[Record | BadLine[csv.Error]]:
        while True:
            line = self._reader.line_num + 1
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield BadLine(line, exc)
                continue
            if not any(cell.strip() for cell in cells):
                continue
            problem = next((p for p in map(text_problem, cells) if p), None)
            if problem:
                yield BadLine(line, csv.Error(f"a cell {problem}"))
                continue
            yield Record(line, cells, self._reader.line_num)


def fold(name: str) -> str:
    """A column name as the alias tables spell it: lower case, "_" for spaces and hyphens."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def find_columns(header: list[str], aliases: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """Position of each field whose name (or one of its aliases, first found wins) is present."""
    folded = [fold(h) for h in header]
    found: dict[str, int] = {}
    for field_name, names in aliases.items():
        for alias in names:
            if alias in folded:
                found[field_name] = folded.index(alias)
                break
    return found
