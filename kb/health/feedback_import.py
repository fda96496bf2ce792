"""Import daily feedback history from another help center (CSV or JSONL). Callers commit.

One row per article and day: `slug`, `date` (YYYY-MM-DD), `views`, `helpful`,
`not_helpful`. Counts are filed under the article's current revision. Importing is
idempotent per slug and date: a row for a day already imported replaces that day's counts
(the same file twice changes nothing; a corrected export overwrites). Bad rows are reported
with their line number and skipped; good rows still land.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.errors import InvalidInput
from kb.models import DailyFeedback, EntryStatus, FaqEntry
from kb.text import tabular
from kb.text.tabular import Format, Record, RowError

MAX_COUNT = 10_000_000  # per article and day; more is a broken export, not traffic
MAX_MERGE_HOPS = 5
# Column spellings other help centers export, folded (lowercase, _ for space and -).
COLUMNS: dict[str, tuple[str, ...]] = {
    "slug": ("slug", "article_slug", "faq_slug", "article"),
    "date": ("date", "day"),
    "views": ("views", "page_views", "pageviews", "view_count"),
    "helpful": ("helpful", "helpful_votes", "yes", "up_votes", "upvotes"),
    "not_helpful": (
        "not_helpful",
        "nothelpful",
        "unhelpful",
        "not_helpful_votes",
        "no",
        "down_votes",
        "downvotes",
    ),
}
_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")


@dataclass(frozen=True)
class FeedbackRow:
    """A valid row and the line it came from."""

    line: int
    slug: str
    day: date
    views: int
    helpful: int
    not_helpful: int


Item = FeedbackRow | RowError


def _count(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip() == "":
        return 0  # an empty cell: nothing happened that day
    elif isinstance(value, str) and re.fullmatch(r"\d{1,3}(,\d{3})+|\d+", value.strip()):
        number = int(value.strip().replace(",", ""))
    elif value is None:
        return 0
    else:
        raise InvalidInput(f"{name} must be a whole number, got {value!r}")
    if number < 0:
        raise InvalidInput(f"{name} must not be negative, got {number}")
    if number > MAX_COUNT:
        raise InvalidInput(f"{name} is implausibly large ({number})")
    return number


def _day(value: object, today: date) -> date:
    text = str(value or "").strip()
    match = _DATE.match(text[:10]) if len(text) >= 8 else None
    if not text:
        raise InvalidInput("date is missing")
    if match is None or (len(text) > 10 and text[10] not in "T "):
        raise InvalidInput(f"date must be YYYY-MM-DD, got {text!r}")
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError as exc:
        raise InvalidInput(f"date {text!r} does not exist") from exc
    if day > today:
        raise InvalidInput(f"date {day.isoformat()} is in the future")
    return day


def row_from_mapping(data: Mapping[str, Any], line: int, *, today: date) -> FeedbackRow:
    """A valid row from a JSON object or a CSV row; InvalidInput naming what is wrong."""
    slug = str(data.get("slug") or "").strip()
    if not slug:
        raise InvalidInput("slug is missing")
    slug = slug.rstrip("/").rsplit("/faq/", 1)[-1]  # a full article URL works too
    day = _day(data.get("date"), today)
    views = _count(data.get("views"), "views")
    helpful = _count(data.get("helpful"), "helpful")
    not_helpful = _count(data.get("not_helpful"), "not_helpful")
    if helpful + not_helpful > views:
        raise InvalidInput(
            f"helpful + not_helpful ({helpful + not_helpful}) is more than views ({views})"
        )
    return FeedbackRow(line, slug, day, views, helpful, not_helpful)


def read_jsonl(text: str, *, today: date) -> Iterator[Item]:
    """One object per non-empty line."""
    for item in tabular.json_lines(text.splitlines()):
        if not isinstance(item, Record):
            yield item.row_error()
        elif not isinstance(item.value, dict):
            yield RowError(item.line, "each line must be a JSON object")
        else:
            try:
                yield row_from_mapping(item.value, item.line, today=today)
            except InvalidInput as exc:
                yield RowError(item.line, exc.message)


def read_csv(text: str, *, today: date, delimiter: str | None = None) -> Iterator[Item]:
    """A header row naming the columns (usual spellings accepted), then one row per day."""
    if delimiter is None:
        first = text.split("\n", 1)[0]
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
    rows = tabular.CsvRows(io.StringIO(text), delimiter)
    header = rows.header
    if header is None:
        return
    columns = tabular.find_columns(header, COLUMNS)
    missing = [n for n in ("slug", "date", "views") if n not in columns]
    if missing:
        raise InvalidInput(
            f"the header has no {', '.join(missing)} column (found: {', '.join(header)})"
        )
    for record in rows:
        if not isinstance(record, Record):
            raise record.error  # the whole file is unreadable from here
        row, line = record.value, record.end
        data = {name: (row[i] if i < len(row) else "") for name, i in columns.items()}
        try:
            yield row_from_mapping(data, line, today=today)
        except InvalidInput as exc:
            yield RowError(line, exc.message)


def read_feedback(path: Path, fmt: Format = "auto", *, today: date) -> list[Item]:
    """Every valid row and every rejected line of a file; InvalidInput if it is unusable."""
    file = tabular.load(path, fmt)
    if file.kind == "jsonl":
        return list(read_jsonl(file.text, today=today))
    try:
        return list(read_csv(file.text, today=today, delimiter=file.delimiter))
    except csv.Error as exc:
        raise InvalidInput(f"{path}: not a readable CSV file ({exc})") from exc


@dataclass
class FeedbackReport:
    """What an import did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated + self.unchanged


def _entries_by_slug(session: Session, slugs: Sequence[str]) -> dict[str, FaqEntry]:
    """Entry per slug, following merges to the surviving article."""
    found: dict[str, FaqEntry] = {}
    wanted = sorted(set(slugs))
    for start in range(0, len(wanted), 500):
        for entry in session.scalars(
            select(FaqEntry).where(FaqEntry.slug.in_(wanted[start : start + 500]))
        ):
            found[entry.slug] = entry
    out: dict[str, FaqEntry] = {}
    for slug, entry in found.items():
        hops = 0
        while entry.status == EntryStatus.merged and entry.merged_into_id and hops < MAX_MERGE_HOPS:
            nxt = session.get(FaqEntry, entry.merged_into_id)
            if nxt is None:
                break
            entry, hops = nxt, hops + 1
        out[slug] = entry
    return out


def import_feedback(session: Session, items: Sequence[Item]) -> FeedbackReport:
    """Write the valid rows (replacing days already imported); report the rejected ones."""
    report = FeedbackReport(rejected=[i for i in items if isinstance(i, RowError)])
    rows = [i for i in items if isinstance(i, FeedbackRow)]
    entries = _entries_by_slug(session, [r.slug for r in rows])
    seen: dict[tuple[int, date], int] = {}
    accepted: list[tuple[FeedbackRow, FaqEntry]] = []
    for row in rows:
        entry = entries.get(row.slug)
        if entry is None:
            report.rejected.append(RowError(row.line, f"no FAQ has the slug {row.slug!r}"))
            continue
        if entry.current_revision_id is None:
            report.rejected.append(RowError(row.line, f"FAQ {row.slug!r} has no text yet"))
            continue
        first = seen.get((entry.id, row.day))
        if first is not None:
            report.rejected.append(
                RowError(
                    row.line,
                    f"{row.slug} on {row.day.isoformat()} is already on line {first} of this file",
                )
            )
            continue
        seen[(entry.id, row.day)] = row.line
        accepted.append((row, entry))
    existing: dict[tuple[int, date], DailyFeedback] = {}
    ids = sorted({e.id for _, e in accepted})
    for start in range(0, len(ids), 500):
        for fb in session.scalars(
            select(DailyFeedback).where(DailyFeedback.entry_id.in_(ids[start : start + 500]))
        ):
            existing[(fb.entry_id, fb.day)] = fb
    for row, entry in accepted:
        known = existing.get((entry.id, row.day))
        values = (row.views, row.helpful, row.not_helpful)
        if known is None:
            session.add(
                DailyFeedback(
                    entry_id=entry.id,
                    revision_id=entry.current_revision_id,
                    day=row.day,
                    views=row.views,
                    helpful=row.helpful,
                    not_helpful=row.not_helpful,
                )
            )
            report.created += 1
        elif (known.views, known.helpful, known.not_helpful) == values:
            report.unchanged += 1
        else:
            # The day keeps the revision it was first filed under: that text was live then.
            known.views, known.helpful, known.not_helpful = values
            report.updated += 1
    session.flush()
    report.rejected.sort(key=lambda e: e.line)
    return report
