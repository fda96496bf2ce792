"""Export the published FAQ back to the `faq_content/` Markdown format (content in git).

Every published entry's current revision becomes `<dir>/<language>/<slug>.md` with its
phrasings, category, language, translation group and `needs_account` in the front
matter, written so that `read_content_dir` + `load_articles` give the same entries back:

- A question that would not survive as a `# ` heading (several lines, a trailing `#`) is
  also written as the `question` field, which wins over the heading when read.
- Strings YAML or the front-matter parser could misread (line breaks, NEL, U+2028) are
  written double-quoted with escapes, on one line.
- Line endings in answers are written as `\\n` (text files are read with universal
  newlines, so `\\r\\n` would come back as `\\n` anyway).
- Entries created through the API have no content key yet; the export gives them one
  (`<slug>.<language>`, as the seed files do) and records it, so loading the exported files
  into this same database updates those entries instead of clashing on their slugs.
- An entry keeps at most `kb.faqs.entries.MAX_PHRASINGS` phrasings from content files; when it
  has learnt more from threads and outcomes, the editor and content ones are kept first
  and the rest is cut (counted in the summary).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from kb.errors import Conflict
from kb.faqs.entries import MAX_PHRASINGS
from kb.models import EntryStatus, FaqEntry, PhrasingSource, QuestionPhrasing

_LINE_BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029")
_AUTHORED = (PhrasingSource.content, PhrasingSource.editor)


@dataclass
class ExportSummary:
    """What `export_content` wrote."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    keys_assigned: int = 0
    phrasings_cut: dict[str, int] = field(default_factory=dict)  # slug -> phrasings left out
    categories_copied: bool = False


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes strings with line breaks double-quoted on one line."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if any(ch in value for ch in _LINE_BREAKS) or not value.isprintable() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _heading(question: str) -> str:
    # One line, no trailing '#': what parse_article reads back from a `# ` heading.
    flat = " ".join(question.split())
    return flat.rstrip("# ") or "Question"


def render_entry(
    *,
    key: str,
    slug: str,
    category: str,
    language: str,
    translation_group: str | None,
    question: str,
    answer: str,
    phrasings: list[str],
    needs_account: bool = False,
) -> str:
    """The content-file text of one entry (the inverse of `kb.faqs.content.parse_article`)."""
    meta: dict[str, Any] = {"id": key, "slug": slug, "category": category, "language": language}
    if translation_group:
        meta["translation_group"] = translation_group
    if needs_account:
        meta["needs_account"] = True
    if _heading(question) != question:  # the heading cannot carry it: the field wins
        meta["question"] = question
    if phrasings:
        meta["questions"] = phrasings
    front = yaml.dump(
        meta, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1 << 30
    ).strip()
    body = answer.replace("\r\n", "\n").replace("\r", "\n").strip()
    return f"---\n{front}\n---\n# {_heading(question)}\n\n{body}\n"


def _phrasings(session: Session, entry_ids: list[int]) -> dict[int, list[QuestionPhrasing]]:
    out: dict[int, list[QuestionPhrasing]] = {i: [] for i in entry_ids}
    rows = session.scalars(
        select(QuestionPhrasing)
        .where(QuestionPhrasing.entry_id.in_(entry_ids))
        .order_by(QuestionPhrasing.id)
    )
    for p in rows:
        out[p.entry_id].append(p)
    return out


def _assign_key(session: Session, entry: FaqEntry, taken: set[str]) -> str:
    base = f"{entry.slug}.{entry.language}"
    key = base if base not in taken else f"{base}-{entry.id}"
    entry.content_key = key
    taken.add(key)
    return key


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def export_content(
    session: Session,
    directory: Path,
    *,
    categories_from: Path | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """Write every published entry to `directory`; the caller commits (keys assigned).

    The directory must be empty or absent unless `overwrite` is set (then files of the same
    name are replaced and other files left alone). `categories_from` is a content folder
    whose `categories.yaml` (display names) is copied along.
    """
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise Conflict(f"{directory} is not empty; choose an empty folder or pass --overwrite")
    entries = list(
        session.scalars(
            select(FaqEntry)
            .where(FaqEntry.status == EntryStatus.published)
            .order_by(FaqEntry.language, FaqEntry.slug)
        )
    )
    taken = {k for k in session.scalars(select(FaqEntry.content_key)) if k is not None}
    phrasings = _phrasings(session, [e.id for e in entries])
    summary = ExportSummary(directory=directory)
    for entry in entries:
        revision = entry.current_revision
        if revision is None:
            continue
        key = entry.content_key
        if key is None:
            key = _assign_key(session, entry, taken)
            summary.keys_assigned += 1
        own = phrasings[entry.id]
        ordered = [p.text for p in own if p.source in _AUTHORED]
        ordered += [p.text for p in own if p.source not in _AUTHORED]
        if len(ordered) > MAX_PHRASINGS:
            summary.phrasings_cut[entry.slug] = len(ordered) - MAX_PHRASINGS
            ordered = ordered[:MAX_PHRASINGS]
        text = render_entry(
            key=key,
            slug=entry.slug,
            category=entry.category,
            language=entry.language,
            translation_group=entry.translation_group,
            question=revision.question,
            answer=revision.answer,
            phrasings=ordered,
            needs_account=entry.needs_account,
        )
        path = directory / entry.language / f"{entry.slug}.md"
        _write_atomic(path, text)
        summary.files.append(path)
    session.flush()
    if categories_from is not None:
        source = categories_from / "categories.yaml"
        target = directory / "categories.yaml"
        if source.is_file() and source.resolve() != target.resolve():
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            summary.categories_copied = True
    return summary
