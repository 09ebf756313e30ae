"""Repair historical duplicate closes: one ``closed_trades`` row per (trading day, tag).

The old bot's ``record_close`` once recorded the same tag twice on a day. In PostgreSQL the
schema forbids that (``closed_trades_day_tag_uq``), so duplicates can only exist

* in a legacy SQLite file — :func:`dedupe_closed_trades` deletes all but the earliest row (lowest
  id) of each (day, tag) in the file itself; :func:`~engine.migrate_data.import_sqlite` skips the
  same rows without touching the file, so running this first is optional;
* in a PostgreSQL database whose constraint was dropped — the same repair runs there; when the
  constraint is present nothing can be duplicated and the report says so.

A "true duplicate" is the same trading day AND the same tag; the same tag on another day, or
another tag on the same day, is a different trade and is kept.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from engine.migrate_data.report import Report
from engine.migrate_data.sqlite_source import column_names, open_sqlite

_CONSTRAINT_SQL = """
SELECT 1 FROM pg_index i
 WHERE i.indrelid = 'closed_trades'::regclass AND i.indisunique AND i.indpred IS NULL
   AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
          FROM pg_attribute a
         WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = ARRAY['tag', 'trade_date']
"""

_PG_DUPLICATES = """
SELECT c.id FROM closed_trades c
 WHERE EXISTS (SELECT 1 FROM closed_trades d
                WHERE d.trade_date = c.trade_date AND d.tag = c.tag AND d.id < c.id)
 ORDER BY c.id
"""


def _day_column(conn: sqlite3.Connection) -> str:
    cols = column_names(conn, "closed_trades")
    for name in ("trade_date", "date", "day"):
        if name in cols:
            return name
    raise ValueError("legacy closed_trades has no trade_date/date column")


def find_sqlite_duplicates(conn: sqlite3.Connection) -> list[int]:
    """Ids (rowids when the table has no id) of legacy closes that repeat an earlier one."""
    day = _day_column(conn)
    key = "id" if "id" in column_names(conn, "closed_trades") else "rowid"
    rows = conn.execute(
        f'SELECT c.{key} FROM closed_trades c WHERE EXISTS (SELECT 1 FROM closed_trades d '
        f'WHERE d."{day}" = c."{day}" AND d.tag = c.tag AND d.{key} < c.{key}) ORDER BY c.{key}'
    ).fetchall()
    return [r[0] for r in rows]


def _dedupe_sqlite(path: Path, dry_run: bool) -> Report:
    report = Report(source=str(path), dry_run=dry_run)
    counts = report.counts("closed_trades")
    with open_sqlite(path, writable=True) as conn:
        counts.read = conn.execute("SELECT count(*) FROM closed_trades").fetchone()[0]
        duplicates = find_sqlite_duplicates(conn)
        key = "id" if "id" in column_names(conn, "closed_trades") else "rowid"
        conn.executemany(f"DELETE FROM closed_trades WHERE {key} = ?",
                         [(i,) for i in duplicates])
        counts.removed = len(duplicates)
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    if duplicates:
        report.note(f"closed_trades duplicate ids removed: {', '.join(map(str, duplicates[:50]))}"
                    + (" ..." if len(duplicates) > 50 else ""))
    return report


def _dedupe_postgres(pool: ConnectionPool, dry_run: bool) -> Report:
    report = Report(source="postgresql:closed_trades", dry_run=dry_run)
    counts = report.counts("closed_trades")
    with pool.connection() as conn, conn.transaction() as tx:
        row: Any = conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()
        counts.read = row["n"] if isinstance(row, dict) else row[0]
        if conn.execute(_CONSTRAINT_SQL).fetchone():
            report.note("UNIQUE (trade_date, tag) is enforced on closed_trades: "
                        "no duplicates can exist, nothing to do")
            return report
        ids = [r["id"] if isinstance(r, dict) else r[0]
               for r in conn.execute(_PG_DUPLICATES).fetchall()]
        if ids:
            conn.execute("DELETE FROM closed_trades WHERE id = ANY(%s)", (ids,))
        counts.removed = len(ids)
        report.note("UNIQUE (trade_date, tag) is missing on closed_trades; restore it with "
                    "ALTER TABLE closed_trades ADD CONSTRAINT closed_trades_day_tag_uq "
                    "UNIQUE (trade_date, tag)")
        if dry_run:
            raise psycopg.Rollback(tx)
    return report


def dedupe_closed_trades(target: ConnectionPool | str | Path, dry_run: bool = False) -> Report:
    """Delete all but the earliest close of each (trading day, tag).

    Args:
        target: A pool on the PostgreSQL database, or the path of a legacy SQLite file.
        dry_run: Count what would be removed, change nothing.

    Returns:
        ``closed_trades`` counts: ``read`` rows examined, ``removed`` duplicates.
    """
    if isinstance(target, ConnectionPool):
        return _dedupe_postgres(target, dry_run)
    if isinstance(target, str | Path):
        return _dedupe_sqlite(Path(target), dry_run)
    raise TypeError(f"dedupe_closed_trades needs a ConnectionPool or an SQLite path, "
                    f"not {type(target).__name__}")
