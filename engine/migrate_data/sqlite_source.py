"""Read the legacy ``arb_bot_records.sqlite3`` (tables named as in the seeds)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def open_sqlite(path: str | Path, *, writable: bool = False) -> Iterator[sqlite3.Connection]:
    """Open a legacy SQLite file; read-only and immutable unless ``writable``.

    Immutable mode reads a copy on a read-only mount without creating journal files. Copy the
    file only after the old bot stopped (or after ``PRAGMA wal_checkpoint(TRUNCATE)``), so no
    committed data is still waiting in a ``-wal`` file.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"legacy SQLite database {file} does not exist")
    with file.open("rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            raise ValueError(f"{file} is not an SQLite 3 database")
    uri = f"{file.resolve().as_uri()}?mode={'rw' if writable else 'ro'}"
    if not writable:
        uri += "&immutable=1"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        yield conn


def table_names(conn: sqlite3.Connection) -> list[str]:
    """User tables of the legacy database."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
    return [r[0] for r in rows]


def column_names(conn: sqlite3.Connection, table: str) -> list[str]:
    """Columns of a legacy table."""
    return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]


def read_rows(conn: sqlite3.Connection, table: str) -> Iterator[dict[str, Any]]:
    """Rows of ``table`` as dicts, oldest first (by ``id`` when present, else rowid)."""
    cols = column_names(conn, table)
    order = '"id"' if "id" in cols else "rowid"
    try:
        cursor = conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}')
    except sqlite3.OperationalError:  # WITHOUT ROWID table without id
        cursor = conn.execute(f'SELECT * FROM "{table}"')
    for row in cursor:
        yield {key: row[key] for key in row.keys()}  # noqa: SIM118 (sqlite3.Row)
