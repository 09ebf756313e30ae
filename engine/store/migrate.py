"""Migration runner: applies ``schema/NNN_*.sql`` in order, once each.

Each file runs in its own transaction together with its ``schema_migrations`` row, under a
session advisory lock, so two runners started at once apply every file exactly once. An
applied file whose checksum has changed is refused: history is never rewritten silently.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "schema"
ADVISORY_LOCK_KEY = 727_274_001  # arbitrary constant shared by every runner
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name        text        PRIMARY KEY,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """A migration file is malformed, changed after being applied, or failed to apply."""


@dataclass(frozen=True, slots=True)
class MigrationFile:
    name: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    name: str
    state: str  # applied | pending | changed | missing
    applied_at: datetime | None


def discover(schema_dir: Path = SCHEMA_DIR) -> list[MigrationFile]:
    """List the migration files in order, refusing misnamed or duplicate-numbered files."""
    if not schema_dir.is_dir():
        raise MigrationError(f"schema directory {schema_dir} does not exist")
    files: list[MigrationFile] = []
    numbers: dict[str, str] = {}
    for path in sorted(schema_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(
                f"{path.name}: migration files must be named NNN_lowercase_words.sql"
            )
        number = match.group(1)
        if number in numbers:
            raise MigrationError(f"{path.name} and {numbers[number]} share the number {number}")
        numbers[number] = path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append(MigrationFile(path.name, path, digest))
    return files


def _applied(conn: psycopg.Connection) -> dict[str, tuple[str, datetime]]:
    rows = conn.execute("SELECT name, checksum, applied_at FROM schema_migrations").fetchall()
    return {_get(r, 0, "name"): (_get(r, 1, "checksum"), _get(r, 2, "applied_at")) for r in rows}


def _get(row, index: int, key: str):
    return row[key] if isinstance(row, dict) else row[index]


def status(dsn: str, schema_dir: Path = SCHEMA_DIR) -> list[MigrationStatus]:
    """Applied, pending and changed files (and applied rows whose file is missing)."""
    files = discover(schema_dir)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CREATE_TABLE, prepare=False)
        applied = _applied(conn)
    result: list[MigrationStatus] = []
    for f in files:
        if f.name not in applied:
            result.append(MigrationStatus(f.name, "pending", None))
        else:
            checksum, at = applied[f.name]
            result.append(MigrationStatus(f.name, "applied" if checksum == f.checksum else "changed", at))
    known = {f.name for f in files}
    for name, (_, at) in sorted(applied.items()):
        if name not in known:
            result.append(MigrationStatus(name, "missing", at))
    return result


def migrate(dsn: str, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Apply every pending file; return the names applied (empty when up to date)."""
    files = discover(schema_dir)
    done: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            conn.execute(CREATE_TABLE, prepare=False)
            applied = _applied(conn)
            for f in files:
                if f.name in applied:
                    if applied[f.name][0] != f.checksum:
                        raise MigrationError(
                            f"{f.name} was changed after it was applied (checksum "
                            f"{applied[f.name][0][:12]}… in the database, {f.checksum[:12]}… on "
                            "disk); add a new migration file instead of editing an applied one"
                        )
                    continue
                logger.info("applying migration %s", f.name)
                try:
                    with conn.transaction():
                        conn.execute(f.sql, prepare=False)
                        conn.execute(
                            "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                            (f.name, f.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"{f.name} failed to apply: {exc}") from exc
                done.append(f.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return done


def schema_version(dsn: str) -> str | None:
    """The last applied migration's name, or None on an empty database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
        if exists is None:
            return None
        row = conn.execute("SELECT max(name) FROM schema_migrations").fetchone()
        return row[0]
