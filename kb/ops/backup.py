"""Backups taken while the service runs, and restores into an empty database.

Two formats, told apart by their first bytes:

- **SQLite snapshot** (SQLite databases, the default there): SQLite's online backup API
  copies the live database in one step, inside one read transaction, so the copy is a
  consistent snapshot even while requests write (WAL lets them go on). The copy is a
  self-contained database file (journal mode DELETE) that passed `PRAGMA integrity_check`.
- **Logical export** (PostgreSQL, or `fmt="logical"` anywhere): gzip-compressed JSON lines,
  read in one REPEATABLE READ, READ ONLY transaction (one snapshot of every table). Line 1
  is a header (format, version, dialect, Alembic revisions, tables and column types); then
  per table a `{"table": name}` line and one JSON array per row, tables in foreign-key
  order; the last line holds the row counts, so a truncated file is detected.

A restore refuses a target that holds any row, creates the schema at the backup's Alembic
revisions, loads every row in one transaction (ids kept; sequences moved past them), and
then upgrades to this version's migrations, so an older backup restores into a newer
faqloop. A SQLite snapshot restores into SQLite by copying the file, and into PostgreSQL
logically. Search indexes are never part of a backup: the caller rebuilds them.

Files are written to a temporary name, fsynced and renamed, so a crash never leaves a
half-written backup under the final name.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.sql.ddl import sort_tables_and_constraints

from kb.db import alembic_config, make_engine, migrate
from kb.errors import Conflict, InvalidInput

FORMAT = "faqloop-backup"
VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
GZIP_MAGIC = b"\x1f\x8b"
VERSION_TABLE = "alembic_version"
INSERT_CHUNK = 500

Kind = Literal["sqlite", "logical"]
ColumnKind = Literal["datetime", "date", "json", "bytes", "decimal", "plain"]


@dataclass
class BackupSummary:
    """What a backup or a restore contained."""

    path: Path
    kind: Kind
    revisions: list[str]
    rows: dict[str, int] = field(default_factory=dict)
    size: int = 0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


# ---------------------------------------------------------------------- shared helpers


def is_sqlite(url: str) -> bool:
    """Whether the SQLAlchemy URL names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidInput("backups need a SQLite database file, not an in-memory database")
    return Path(database)


def _column_kind(column: Any) -> ColumnKind:
    kind = column.type
    if isinstance(kind, DateTime):
        return "datetime"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, JSON):
        return "json"
    if isinstance(kind, LargeBinary):
        return "bytes"
    python_type: type | None
    try:
        python_type = kind.python_type
    except NotImplementedError:
        python_type = None
    return "decimal" if python_type is Decimal else "plain"


def _encode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        if value.tzinfo is None:  # every timestamp is stored in UTC (kb.models.UTCDateTime)
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if kind == "date":
        return value.isoformat()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "decimal":
        return str(value)
    return value


def _decode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "decimal":
        return Decimal(value)
    return value


def _reflect(conn: Connection) -> MetaData:
    meta = MetaData()
    meta.reflect(bind=conn)
    return meta


def _sorted(meta: MetaData) -> tuple[list[Table], set[Any]]:
    """Tables in foreign-key order, and the constraints left out to break cycles.

    A cycle (an entry's current revision belongs to the entry) is broken at its nullable
    foreign keys; those columns are filled after every row is in (see `_deferred_columns`).
    """
    tables = list(meta.tables.values())
    cyclic: set[Any] = set()
    for t, fkcs in sort_tables_and_constraints(tables):
        if t is None:
            cyclic.update(fkcs)

    def nullable(fkc: Any) -> bool:
        return all(c.nullable for c in fkc.columns)

    cut: set[Any] = set()
    ordered: list[Table] = []
    for t, fkcs in sort_tables_and_constraints(
        tables, filter_fn=lambda fkc: nullable(fkc) if fkc in cyclic else None
    ):
        if t is None:
            cut.update(fkcs)
        else:
            ordered.append(t)
    stuck = [f for f in cut if not nullable(f)]
    if stuck:
        raise InvalidInput(f"tables reference each other through required columns: {stuck}")
    return [t for t in ordered if t.name != VERSION_TABLE], cut


def data_tables(meta: MetaData) -> list[Table]:
    """Every table but alembic_version, parents before children (cycles broken)."""
    return _sorted(meta)[0]


def _deferred_columns(meta: MetaData) -> dict[str, list[str]]:
    """Per table, the foreign-key columns that must be filled after every row is in.

    Those of self-references (an entry merged into another entry) and of the constraints
    cut to break cycles cannot be satisfied row by row.
    """
    _, cut = _sorted(meta)
    deferred: dict[str, list[str]] = {}
    for table in meta.tables.values():
        for fkc in table.foreign_key_constraints:
            if fkc.referred_table is table or fkc in cut:
                deferred.setdefault(table.name, []).extend(c.name for c in fkc.columns)
    return deferred


def _revisions(conn: Connection) -> list[str]:
    if not inspect(conn).has_table(VERSION_TABLE):
        return []
    return sorted(str(r) for r in conn.scalars(text("SELECT version_num FROM alembic_version")))


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {rev.revision for rev in script.walk_revisions()}


def _check_revisions(revisions: list[str]) -> None:
    if not revisions:
        raise InvalidInput("the backup has no schema version (alembic_version is empty)")
    unknown = sorted(set(revisions) - _known_revisions())
    if unknown:
        raise InvalidInput(
            f"the backup was made by a newer faqloop (schema revisions {', '.join(unknown)} "
            "are unknown here); upgrade faqloop first"
        )


@contextmanager
def _atomic_output(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest`, renamed onto it (after fsync) only on success."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def detect_kind(path: Path) -> Kind:
    """Which backup format a file holds; InvalidInput when it is neither."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the backup: {exc.strerror}") from exc
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(GZIP_MAGIC):
        return "logical"
    raise InvalidInput(f"{path}: not a faqloop backup (neither a SQLite file nor a gzip export)")


# ------------------------------------------------------------------------------ backup


def _sqlite_snapshot(source: Path, dest: Path) -> None:
    """Copy a live SQLite database with the online backup API, in one consistent step."""
    if not source.exists():
        raise InvalidInput(f"{source}: the database file does not exist")
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            # pages=-1: the whole database in one step, i.e. within one read transaction.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            result = dst.execute("PRAGMA integrity_check").fetchone()
            if not result or result[0] != "ok":
                raise InvalidInput(f"the snapshot failed its integrity check: {result}")
            dst.commit()
        finally:
            dst.close()
    finally:
        src.close()


def _write_logical(conn: Connection, out: IO[bytes], dialect: str) -> BackupSummary:
    meta = _reflect(conn)
    tables = data_tables(meta)
    revisions = _revisions(conn)
    kinds = {t.name: [(c.name, _column_kind(c)) for c in t.columns] for t in tables}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "dialect": dialect,
        "created_at": datetime.now(UTC).isoformat(),
        "alembic_revisions": revisions,
        "tables": [{"name": t.name, "columns": kinds[t.name]} for t in tables],
    }
    summary = BackupSummary(path=Path(), kind="logical", revisions=revisions)

    def line(obj: Any) -> None:
        out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")

    line(header)
    for table in tables:
        line({"table": table.name})
        order = list(table.primary_key.columns) or list(table.columns)
        column_kinds = [k for _, k in kinds[table.name]]
        count = 0
        result = conn.execution_options(stream_results=True, max_row_buffer=1000).execute(
            select(table).order_by(*order)
        )
        for row in result:
            line([_encode(v, k) for v, k in zip(row, column_kinds, strict=True)])
            count += 1
        summary.rows[table.name] = count
    line({"end": True, "rows": summary.rows})
    return summary


def backup_database(
    url: str, dest: Path, *, fmt: Literal["auto", "sqlite", "logical"] = "auto"
) -> BackupSummary:
    """Write a consistent backup of the database at `url` to `dest` (atomically)."""
    sqlite = is_sqlite(url)
    if fmt == "sqlite" and not sqlite:
        raise InvalidInput("a SQLite snapshot needs a SQLite database; use the logical format")
    kind: Kind = "sqlite" if sqlite and fmt in ("auto", "sqlite") else "logical"
    with _atomic_output(dest) as tmp:
        if kind == "sqlite":
            _sqlite_snapshot(sqlite_path(url), tmp)
            summary = inspect_backup(tmp)
        elif sqlite:
            # SQLite has no REPEATABLE READ: export from a snapshot taken the consistent way.
            with tempfile.TemporaryDirectory(prefix="faqloop-backup-") as work:
                snap = Path(work) / "snapshot.db"
                _sqlite_snapshot(sqlite_path(url), snap)
                summary = _export_file(f"sqlite:///{snap}", tmp, "sqlite")
        else:
            summary = _export_file(url, tmp, make_url(url).get_backend_name())
    summary.path = dest
    summary.size = dest.stat().st_size
    return summary


def _export_file(url: str, dest: Path, dialect: str) -> BackupSummary:
    engine = make_engine(url)
    try:
        options: dict[str, Any] = {}
        if not is_sqlite(url):
            # One snapshot of every table; READ ONLY so the export can never write.
            options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        with (
            engine.connect().execution_options(**options) as conn,
            conn.begin(),
            gzip.open(dest, "wb", compresslevel=6) as raw,
        ):
            out = io.BufferedWriter(raw, buffer_size=1 << 16)
            summary = _write_logical(conn, out, dialect)
            out.flush()
    finally:
        engine.dispose()
    return summary


# ----------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """A backup opened for reading: revisions, tables with column kinds, and their rows."""

    revisions: list[str]
    tables: list[tuple[str, list[tuple[str, str]]]]
    rows: Iterator[tuple[str, list[Any]]]  # (table, decoded row), tables in order
    counts: dict[str, int]  # filled once `rows` is exhausted (the export's own counts)


def _read_logical(path: Path) -> Generator[_Source, None, None]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        try:
            header = json.loads(fh.readline())
        except (OSError, EOFError, ValueError) as exc:
            raise InvalidInput(f"{path}: unreadable backup header: {exc}") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise InvalidInput(f"{path}: not a faqloop backup")
        if header.get("version") != VERSION:
            raise InvalidInput(f"{path}: backup format version {header.get('version')} unknown")
        tables = [(t["name"], [tuple(c) for c in t["columns"]]) for t in header["tables"]]
        kinds = {name: [k for _, k in cols] for name, cols in tables}
        counts: dict[str, int] = {}

        def rows() -> Iterator[tuple[str, list[Any]]]:
            current: str | None = None
            seen: dict[str, int] = {}
            try:
                for raw in fh:
                    item = json.loads(raw)
                    if isinstance(item, dict):
                        if item.get("end"):
                            if item.get("rows") != seen:
                                raise InvalidInput(f"{path}: row counts disagree with the footer")
                            counts.update(seen)
                            return
                        current = item["table"]
                        if current not in kinds:
                            raise InvalidInput(f"{path}: table {current!r} is not in the header")
                        seen[current] = 0
                        continue
                    if current is None:
                        raise InvalidInput(f"{path}: a row before any table")
                    seen[current] += 1
                    yield (
                        current,
                        [_decode(v, k) for v, k in zip(item, kinds[current], strict=True)],
                    )
            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                raise InvalidInput(f"{path}: the backup is damaged or truncated ({exc})") from exc
            raise InvalidInput(f"{path}: the backup is truncated (no end marker)")

        yield _Source(
            revisions=list(header.get("alembic_revisions") or []),
            tables=[(n, [(c, k) for c, k in cols]) for n, cols in tables],
            rows=rows(),
            counts=counts,
        )


def _check_sqlite_file(path: Path) -> None:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{path}: damaged SQLite backup: {exc}") from exc
    finally:
        conn.close()
    if not result or result[0] != "ok":
        raise InvalidInput(f"{path}: the SQLite backup fails its integrity check")


def _read_sqlite(path: Path) -> Generator[_Source, None, None]:
    _check_sqlite_file(path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            meta = _reflect(conn)
            tables = data_tables(meta)
            spec: list[tuple[str, list[tuple[str, str]]]] = [
                (t.name, [(c.name, _column_kind(c)) for c in t.columns]) for t in tables
            ]
            counts: dict[str, int] = {}

            def rows() -> Iterator[tuple[str, list[Any]]]:
                for table, (_, cols) in zip(tables, spec, strict=True):
                    n = 0
                    order = list(table.primary_key.columns) or list(table.columns)
                    for row in conn.execute(select(table).order_by(*order)):
                        n += 1
                        # Through the export encoding, so both formats load the same values.
                        yield (
                            table.name,
                            [
                                _decode(_encode(v, k), k)
                                for v, (_, k) in zip(row, cols, strict=True)
                            ],
                        )
                    counts[table.name] = n

            yield _Source(revisions=_revisions(conn), tables=spec, rows=rows(), counts=counts)
    finally:
        engine.dispose()


@contextmanager
def _open_backup(path: Path) -> Iterator[_Source]:
    kind = detect_kind(path)
    reader = _read_sqlite(path) if kind == "sqlite" else _read_logical(path)
    try:
        yield next(reader)
    finally:
        reader.close()


def inspect_backup(path: Path) -> BackupSummary:
    """Read a whole backup and return what it holds (validates it end to end)."""
    kind = detect_kind(path)
    with _open_backup(path) as source:
        rows: dict[str, int] = {name: 0 for name, _ in source.tables}
        for name, _ in source.rows:
            rows[name] += 1
        return BackupSummary(
            path=path,
            kind=kind,
            revisions=source.revisions,
            rows=rows,
            size=path.stat().st_size,
        )


# ----------------------------------------------------------------------------- restore


def count_rows(engine: Engine) -> dict[str, int]:
    """Rows per table of a database (alembic_version excluded); empty when it has none."""
    with engine.connect() as conn:
        meta = _reflect(conn)
        return {
            t.name: int(conn.scalar(select(func.count()).select_from(t)) or 0)
            for t in data_tables(meta)
        }


def _refuse_non_empty(engine: Engine, where: str) -> None:
    filled = {name: n for name, n in count_rows(engine).items() if n}
    if filled:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(filled.items()))
        raise Conflict(
            f"{where} is not empty ({listed}); restore only into an empty database "
            "(a new data directory or a new PostgreSQL database)"
        )


def _prepare_schema(engine: Engine, url: str, revisions: list[str]) -> None:
    """Bring an empty target to the backup's schema revisions."""
    with engine.connect() as conn:
        current = _revisions(conn)
        has_tables = bool(inspect(conn).get_table_names())
    if current == revisions:
        return
    if current or has_tables:
        raise Conflict(
            f"the target database is at schema revisions {current or 'none'} and the backup "
            f"at {revisions}; restore into a database without tables"
        )
    for revision in revisions:
        migrate(url, revision)


def _load_rows(conn: Connection, source: _Source) -> dict[str, int]:
    meta = _reflect(conn)
    tables = {t.name: t for t in meta.tables.values()}
    deferred = _deferred_columns(meta)
    counts: dict[str, int] = {}
    later: list[tuple[Table, dict[str, Any], dict[str, Any]]] = []
    columns = dict(source.tables)
    for name, cols in source.tables:
        table = tables.get(name)
        if table is None:
            raise InvalidInput(f"the backup has table {name!r}, which this schema lacks")
        missing = [c for c, _ in cols if c not in table.columns]
        if missing:
            raise InvalidInput(f"the backup's {name} has columns {missing} this schema lacks")
    batch: list[dict[str, Any]] = []
    batch_table: Table | None = None

    def flush() -> None:
        if batch and batch_table is not None:
            conn.execute(batch_table.insert(), batch)
            batch.clear()

    for name, values in source.rows:
        table = tables[name]
        if batch_table is not table:
            flush()
            batch_table = table
        row = {c: v for (c, _), v in zip(columns[name], values, strict=True)}
        hold = {c: row[c] for c in deferred.get(name, []) if row.get(c) is not None}
        if hold:
            key = {c.name: row[c.name] for c in table.primary_key.columns}
            later.append((table, key, hold))
            row.update(dict.fromkeys(hold))
        batch.append(row)
        counts[name] = counts.get(name, 0) + 1
        if len(batch) >= INSERT_CHUNK:
            flush()
    flush()
    for table, key, hold in later:
        where = [table.c[c] == v for c, v in key.items()]
        conn.execute(update(table).where(*where).values(**hold))
    if conn.dialect.name == "postgresql":
        _advance_sequences(conn, list(tables.values()))
    return counts


def _advance_sequences(conn: Connection, tables: list[Table]) -> None:
    """Move each serial/identity sequence past the ids the restore inserted."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, Integer):
            continue
        sequence = conn.scalar(
            text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": pk[0].name}
        )
        if sequence:
            top = conn.scalar(select(func.max(pk[0])))
            if top is not None:
                conn.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": int(top)})


def restore_database(url: str, source_path: Path) -> BackupSummary:
    """Restore a backup into the empty database at `url`, then upgrade it to heads."""
    kind = detect_kind(source_path)
    if kind == "sqlite" and is_sqlite(url):
        return _restore_sqlite_file(url, source_path)
    engine = make_engine(url)
    try:
        _refuse_non_empty(engine, "the target database")
        with _open_backup(source_path) as source:
            _check_revisions(source.revisions)
            _prepare_schema(engine, url, source.revisions)
            with engine.begin() as conn:
                counts = _load_rows(conn, source)
            expected = {name: source.counts.get(name, 0) for name, _ in source.tables}
            loaded = {name: counts.get(name, 0) for name, _ in source.tables}
            if loaded != expected:
                raise InvalidInput(f"restored {loaded} rows, the backup holds {expected}")
            revisions = source.revisions
    finally:
        engine.dispose()
    migrate(url)
    return BackupSummary(
        path=source_path,
        kind=kind,
        revisions=revisions,
        rows=loaded,
        size=source_path.stat().st_size,
    )


def _restore_sqlite_file(url: str, source_path: Path) -> BackupSummary:
    """Install a SQLite snapshot as the target database file (after checking both)."""
    target = sqlite_path(url)
    summary = inspect_backup(source_path)  # integrity and readability, end to end
    _check_revisions(summary.revisions)
    if target.exists():
        engine = make_engine(url)
        try:
            _refuse_non_empty(engine, str(target))
        finally:
            engine.dispose()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_output(target) as tmp:
        shutil.copyfile(source_path, tmp)
        for suffix in ("-wal", "-shm", "-journal"):  # the empty target's, if any
            Path(f"{target}{suffix}").unlink(missing_ok=True)
    migrate(url)
    summary.path = source_path
    return summary
