"""Suggestions for a file of posts, resumable: ``faqloop suggest-file posts.jsonl -o out.jsonl``.

Input: JSONL (one object a line) or CSV with a header; fields ``id`` (default: the line or
row number), ``text`` (required), and optional ``lang``, ``channel`` and ``k``.

Output: one JSON object per line, per post: the suggestion with its triage advice and reply
draft (the same fields as ``POST /v1/suggest``) plus the post's ``id``, or
``{"id", "error"}`` for a post that cannot be suggested (empty, too long...).

Resuming: the ids already in the output are skipped, so re-running after an interruption
does only the rest. Each line is written in one call and flushed (and fsynced every few
lines and at the end); a line torn by a crash is cut off before new lines are appended, and
its post is done again.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session

from indexer.retrieval.confidence import ConfidenceModel
from kb.errors import InvalidInput, TooLarge
from kb.indexing import IndexManager
from kb.replies.compose import AssistedSuggestion, ReplyPolicy, suggest_with_reply
from kb.suggest.service import Candidate, SuggestPolicy, validate_post
from kb.text.tabular import Format, Kind, Record, format_of_suffix, json_lines

FSYNC_EVERY = 20


@dataclass(frozen=True)
class PostRow:
    """One post to suggest for, with where it came from."""

    id: str
    text: str
    line: int
    lang: str | None = None
    channel: str | None = None
    k: int | None = None


@dataclass(frozen=True)
class RowError:
    """A row that could not be read; `id` when it had one."""

    line: int
    message: str
    id: str | None = None


def _format_of(path: Path, fmt: Format) -> Kind:
    if fmt != "auto":
        return fmt
    kind = format_of_suffix(path)
    if kind is not None:
        return kind
    raise InvalidInput(f"{path.name}: cannot tell the format from the extension (use --format)")


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    return value.strip()


def _row(data: dict[str, Any], line: int) -> PostRow | RowError:
    raw_id = data.get("id")
    ident = str(raw_id).strip() if raw_id not in (None, "") else str(line)
    try:
        text = data.get("text")
        if not isinstance(text, str):
            raise InvalidInput("text is missing or not a string")
        k_value = data.get("k")
        k = None
        if k_value not in (None, ""):
            try:
                k = int(k_value)
            except (TypeError, ValueError) as exc:
                raise InvalidInput("k must be a whole number") from exc
        return PostRow(
            id=ident,
            text=text,
            line=line,
            lang=_optional_str(data, "lang"),
            channel=_optional_str(data, "channel"),
            k=k,
        )
    except InvalidInput as exc:
        return RowError(line, exc.message, ident)


def parse_posts(stream: TextIO, fmt: Kind) -> list[PostRow | RowError]:
    """Rows of a JSONL or CSV stream, in order; unreadable rows become RowErrors."""
    items: list[PostRow | RowError] = []
    if fmt == "jsonl":
        for item in json_lines(stream):
            number = item.line
            if not isinstance(item, Record):
                items.append(RowError(number, f"not valid JSON ({item.error.msg})", str(number)))
            elif not isinstance(item.value, dict):
                items.append(RowError(number, "not a JSON object", str(number)))
            else:
                items.append(_row(item.value, number))
        return items
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or "text" not in [f.strip() for f in reader.fieldnames]:
        raise InvalidInput("the CSV file needs a header with a text column")
    for record in reader:
        cleaned = {(k or "").strip(): v for k, v in record.items()}
        items.append(_row(cleaned, reader.line_num))
    return items


def read_posts(path: Path, fmt: Format = "auto") -> list[PostRow | RowError]:
    """Read a posts file (JSONL or CSV, UTF-8 with or without BOM)."""
    kind = _format_of(path, fmt)
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            return parse_posts(stream, kind)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text") from exc


def done_ids(path: Path) -> set[str]:
    """The ids already written to an output file; a torn last line is cut off first."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        # The last line never got its newline: the write was interrupted. Drop it (its post
        # is done again) so the next line starts cleanly.
        with path.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    ids: set[str] = set()
    for line in io.StringIO(data[:end].decode("utf-8", errors="replace")):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("id") is not None:
            ids.add(str(record["id"]))
    return ids


class ResultWriter:
    """Appends one JSON object per line; each line is one write, flushed at once."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._unsynced = 0

    def write(self, record: dict[str, Any]) -> None:
        """Append `record` as one line."""
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self._unsynced += 1
        if self._unsynced >= FSYNC_EVERY:
            os.fsync(self._file.fileno())
            self._unsynced = 0

    def close(self) -> None:
        """Flush to disk and close."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _candidate(c: Candidate) -> dict[str, Any]:
    return {
        "faq_id": c.faq_id,
        "slug": c.slug,
        "title": c.title,
        "url": c.url,
        "score": c.score,
        "category": c.category,
        "article_lang": c.language,
    }


def assisted_record(a: AssistedSuggestion) -> dict[str, Any]:
    """The JSON of one assisted suggestion (the body of POST /v1/suggest)."""
    out = a.outcome
    reply = None
    if a.reply is not None:
        reply = {
            "text": a.reply.text,
            "weighted_length": a.reply.weighted_length,
            "limit": a.reply.limit,
            "dm_handoff": a.reply.dm_handoff,
            "dm_reason": a.reply.dm_reason,
            "kind": a.reply.kind,
            "fits": a.reply.fits,
            "channel": a.reply.channel or None,
        }
    return {
        "suggestion_id": out.suggestion_id,
        "candidates": [_candidate(c) for c in out.candidates],
        "best": _candidate(out.best) if out.best else None,
        "confidence": out.confidence,
        "abstained": out.abstained,
        "lang": out.language,
        "cross_language": out.cross_language,
        "latency_ms": out.latency_ms,
        "triage": {
            "advice": a.triage.advice.value,
            "reason": a.triage.reason,
            "kind": a.triage.kind,
            "cue": a.triage.cue,
        },
        "reply": reply,
        "no_reply_reason": a.no_reply_reason,
        "personal_data": a.personal_data,
    }


@dataclass
class BatchSummary:
    """What a run did."""

    total: int = 0
    skipped: int = 0  # already in the output
    done: int = 0
    failed: int = 0
    duplicates: int = 0  # ids seen before in the input: only the first is done
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, id, message)


def run_batch(
    rows: Iterable[PostRow | RowError],
    *,
    already: set[str],
    process: Callable[[PostRow], dict[str, Any]],
    writer: ResultWriter,
    progress: Callable[[int], object] = lambda n: None,
) -> BatchSummary:
    """Process the rows whose id is not in `already`, writing one line each.

    `process` returns the record for a post or raises InvalidInput, which is written as that
    post's error; any other exception stops the run (the lines written so far stay).
    """
    summary = BatchSummary()
    seen: set[str] = set()
    for row in rows:
        summary.total += 1
        ident = row.id or str(row.line)
        if ident in seen:
            summary.duplicates += 1
        elif ident in already:
            seen.add(ident)
            summary.skipped += 1
        else:
            seen.add(ident)
            record = _record(row, ident, process)
            if "error" in record:
                summary.failed += 1
                summary.errors.append((row.line, ident, str(record["error"])))
            else:
                summary.done += 1
            writer.write(record)
        progress(1)
    return summary


def _record(
    row: PostRow | RowError, ident: str, process: Callable[[PostRow], dict[str, Any]]
) -> dict[str, Any]:
    if isinstance(row, RowError):
        return {"id": ident, "error": row.message, "line": row.line}
    try:
        return {"id": ident, **process(row)}
    except InvalidInput as exc:
        return {"id": ident, "error": exc.message, "line": row.line}


def suggest_batch(
    session: Session,
    index: IndexManager,
    calibration: ConfidenceModel,
    policy: SuggestPolicy,
    reply_policy: ReplyPolicy,
    *,
    posts: Sequence[Mapping[str, Any]],
    channel: str | None = None,
    max_posts: int = 100,
    api_key_id: int | None = None,
) -> list[tuple[str | None, AssistedSuggestion]]:
    """Suggest for every post (keys text, lang, k, channel, id), all or nothing.

    TooLarge beyond `max_posts`; InvalidInput naming the bad posts before anything is
    recorded. The caller commits.
    """
    if len(posts) > max_posts:
        raise TooLarge(f"at most {max_posts} posts per batch (got {len(posts)})")
    problems = []
    for position, post in enumerate(posts):
        try:
            validate_post(post.get("text") or "", post.get("lang"), post.get("k"), policy)
        except InvalidInput as exc:
            name = f"post {position}" + (f" (id {post['id']})" if post.get("id") else "")
            problems.append(f"{name}: {exc.message}")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise InvalidInput(
            f"{len(problems)} of {len(posts)} posts are invalid, none was stored: {shown}"
        )
    results = []
    for post in posts:
        assisted = suggest_with_reply(
            session,
            index,
            calibration,
            policy,
            reply_policy,
            text=post["text"],
            lang=post.get("lang"),
            k=post.get("k"),
            channel=post.get("channel") or channel,
            api_key_id=api_key_id,
        )
        results.append((post.get("id"), assisted))
    return results
