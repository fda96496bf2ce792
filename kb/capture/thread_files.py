"""Reading resolved threads from files: JSONL (one thread a line) and CSV exports of
social-listening tools (one post a row, grouped by a thread or conversation id).

Readers never stop at a bad row: they yield the threads they could read and a `RowError`
with the line number for each row they could not, so an import keeps the good rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb.capture.thread_input import ThreadIn, parse_time, thread_from_dict
from kb.errors import InvalidInput
from kb.text import tabular
from kb.text.tabular import Format, Record, RowError


@dataclass(frozen=True)
class ThreadRow:
    """A valid thread and the file lines it came from."""

    lines: tuple[int, ...]
    thread: ThreadIn


Item = ThreadRow | RowError

# Column names of common exports, folded to lower case with "_" for spaces and hyphens.
COLUMNS: dict[str, tuple[str, ...]] = {
    "thread": (
        "thread_id", "conversation_id", "thread", "conversation", "case_id", "ticket_id",
        "conversation_key", "thread_key", "case_number", "ticket",
    ),
    "external_id": ("external_id",),
    "channel": ("channel", "network", "platform", "social_network", "source", "medium"),
    "url": ("thread_url", "conversation_url", "url", "permalink", "link", "post_url"),
    "role": (
        "role", "author_role", "author_type", "sender_type", "sender_role", "direction",
        "from_type", "message_type", "type",
    ),
    "is_agent": ("is_agent", "is_brand", "from_brand", "is_owned", "brand_post", "outgoing"),
    "author": (
        "author", "author_handle", "handle", "username", "user_name", "screen_name", "user",
        "sender", "from", "author_name", "name",
    ),
    "text": (
        "text", "message", "content", "body", "post_text", "message_text", "post",
        "tweet_text", "full_text", "comment",
    ),
    "created_at": (
        "created_at", "time", "timestamp", "date", "datetime", "posted_at", "sent_at",
        "created", "created_time", "post_date", "published_at",
    ),
    "resolved_at": ("resolved_at", "closed_at", "solved_at", "resolved"),
    "faq_id": ("faq_id", "linked_faq_id", "linked_faq", "faq"),
    "position": ("position", "seq", "sequence", "order", "post_index", "index"),
}  # fmt: skip

CUSTOMER_ROLES = frozenset(
    {
        "customer", "user", "fan", "inbound", "incoming", "public", "follower", "consumer",
        "client", "received", "mention", "comment", "visitor",
    }
)  # fmt: skip
AGENT_ROLES = frozenset(
    {
        "agent", "brand", "company", "outbound", "outgoing", "owned", "staff", "support",
        "sent", "page", "business", "admin", "operator",
    }
)  # fmt: skip
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f", ""})


def read_threads(
    path: Path, fmt: Format = "auto", *, default_channel: str | None = None
) -> list[Item]:
    """Every thread and every rejected line of a file; InvalidInput if the file is unusable."""
    file = tabular.load(path, fmt)
    if file.kind == "jsonl":
        return list(read_jsonl(file.text))
    return list(read_csv(file.text, default_channel=default_channel, delimiter=file.delimiter))


def read_jsonl(text: str) -> Iterator[Item]:
    """One thread per non-empty line."""
    for item in tabular.json_lines(text.splitlines()):
        if not isinstance(item, Record):
            yield item.row_error()
            continue
        try:
            yield ThreadRow((item.line,), thread_from_dict(item.value))
        except InvalidInput as exc:
            yield RowError(item.line, exc.message)


def _role(value: str, is_agent: str | None) -> str:
    if is_agent is not None and is_agent.strip().lower() in _TRUE | _FALSE and not value:
        return "agent" if is_agent.strip().lower() in _TRUE else "customer"
    folded = value.strip().lower()
    if folded in CUSTOMER_ROLES:
        return "customer"
    if folded in AGENT_ROLES:
        return "agent"
    raise InvalidInput(f"role must be customer or agent (or inbound/outbound), got {value!r}")


@dataclass
class _PostRow:
    line: int
    order: int
    post: dict[str, Any]
    position: int | None
    created: Any
    url: str


def read_csv(
    text: str, *, default_channel: str | None = None, delimiter: str | None = None
) -> Iterator[Item]:
    """Posts grouped into threads by the thread/conversation id column.

    A bad row is reported and left out; its thread is imported from its other rows when
    they still make a thread (re-importing the fixed file updates it). Posts are ordered by
    a position column, else by time when every row has one, else by file order (exports
    are often newest first).
    """
    sample = text[:8192]
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;").delimiter
        except csv.Error:
            delimiter = ","
    try:
        rows = tabular.CsvRows(io.StringIO(text, newline=""), delimiter)
    except csv.Error as exc:
        raise InvalidInput(f"line 1: malformed CSV header ({exc})") from exc
    header = rows.header
    if header is None:
        raise InvalidInput("the CSV file is empty")
    cols = tabular.find_columns(header, COLUMNS)
    missing = [
        name
        for name, ok in (
            ("a thread or conversation id", "thread" in cols or "external_id" in cols),
            ("the post text", "text" in cols),
            ("the author's role", "role" in cols or "is_agent" in cols),
        )
        if not ok
    ]
    if missing:
        raise InvalidInput(
            f"the CSV header lacks {', '.join(missing)}; found columns: {', '.join(header)}"
        )
    if "channel" not in cols and not default_channel:
        raise InvalidInput("the CSV file has no channel column: give the channel (--channel x)")
    threads: dict[str, dict[str, Any]] = {}
    errors: list[RowError] = []
    order = 0
    for record in rows:
        if not isinstance(record, Record):
            errors.append(record.row_error())
            continue
        line, row = record.line, record.value
        order += 1
        try:
            key, thread_fields, post_row = _parse_row(row, cols, line, order, default_channel)
        except InvalidInput as exc:
            errors.append(RowError(line, exc.message))
            continue
        entry = threads.setdefault(key, {"fields": {}, "posts": [], "lines": []})
        for name, value in thread_fields.items():
            if value and not entry["fields"].get(name):
                entry["fields"][name] = value
        entry["posts"].append(post_row)
        entry["lines"].append(line)
    built: list[tuple[int, Item]] = [(e.line, e) for e in errors]
    for key, entry in threads.items():
        built.extend(_build_thread(key, entry))
    for _, item in sorted(built, key=lambda pair: pair[0]):
        yield item


def _cell(row: list[str], cols: Mapping[str, int], name: str) -> str:
    i = cols.get(name)
    return row[i].strip() if i is not None and i < len(row) else ""


def _parse_row(
    row: list[str],
    cols: Mapping[str, int],
    line: int,
    order: int,
    default_channel: str | None,
) -> tuple[str, dict[str, str], _PostRow]:
    key = _cell(row, cols, "thread") or _cell(row, cols, "external_id")
    if not key:
        raise InvalidInput("the thread/conversation id is empty")
    text = _cell(row, cols, "text")
    if not text:
        raise InvalidInput("the post text is empty")
    is_agent = _cell(row, cols, "is_agent") if "is_agent" in cols else None
    role = _role(_cell(row, cols, "role"), is_agent)
    created = parse_time(_cell(row, cols, "created_at"), "created_at")
    position: int | None = None
    raw_position = _cell(row, cols, "position")
    if raw_position:
        try:
            position = int(raw_position)
        except ValueError as exc:
            raise InvalidInput(f"position must be a whole number, got {raw_position!r}") from exc
    resolved = _cell(row, cols, "resolved_at")
    if resolved:
        parse_time(resolved, "resolved_at")  # reported on this row, not on the whole thread
    thread_fields = {
        "external_id": _cell(row, cols, "external_id") or key,
        "channel": _cell(row, cols, "channel") or (default_channel or ""),
        "resolved_at": resolved,
        "faq_id": _cell(row, cols, "faq_id"),
    }
    post = {
        "role": role,
        "author": _cell(row, cols, "author"),
        "text": text,
        "created_at": created,
    }
    url = _cell(row, cols, "url")
    return key, thread_fields, _PostRow(line, order, post, position, created, url)


def _build_thread(key: str, entry: dict[str, Any]) -> list[tuple[int, Item]]:
    rows: list[_PostRow] = entry["posts"]
    if all(r.position is not None for r in rows):
        rows = sorted(rows, key=lambda r: (r.position, r.order))
    elif all(r.created is not None for r in rows):
        rows = sorted(rows, key=lambda r: (r.created, r.order))
    fields = dict(entry["fields"])
    # The thread's link is the link of its first post (usually the customer's).
    fields["url"] = next((r.url for r in rows if r.url), "")
    body = {**fields, "posts": [r.post for r in rows]}
    lines = tuple(sorted(entry["lines"]))
    try:
        thread = thread_from_dict(body)
    except InvalidInput as exc:
        message = f"thread {key!r}: {exc.message}"
        return [(line, RowError(line, message)) for line in lines]
    return [(lines[0], ThreadRow(lines, thread))]
