"""Legacy SQLite / JSON -> PostgreSQL import, one transaction per run.

Both entry points map rows through :mod:`engine.migrate_data.tables`, write them with
:func:`engine.migrate_data.writer.write_rows` (idempotent: re-running inserts nothing new) and
then advance every serial sequence past the imported ids. ``dry_run=True`` does all of it in
the same transaction and rolls back (sequences are then only reported, as ``setval`` cannot be
rolled back; sequence values drawn for rows without ids are simply skipped numbers).
A row that cannot be mapped raises :class:`LegacyDataError` and nothing is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from engine.migrate_data.dedupe import find_sqlite_duplicates
from engine.migrate_data.json_source import read_json_tree
from engine.migrate_data.report import Report
from engine.migrate_data.sqlite_source import open_sqlite, read_rows, table_names
from engine.migrate_data.tables import SPEC_BY_NAME, SPECS
from engine.migrate_data.writer import advance_sequences, write_rows

logger = logging.getLogger(__name__)

Feed = Iterable[tuple[str, Iterable[Mapping[str, Any]]]]


def _run(pool: ConnectionPool, report: Report, feed: Callable[[], Feed], origin: str) -> Report:
    with pool.connection() as conn:
        try:
            with conn.transaction() as tx:
                # One import at a time; concurrent runs would race on natural keys.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('engine.migrate_data'))")
                for table, rows in feed():
                    write_rows(conn, SPEC_BY_NAME[table], rows, report,
                               origin=f"{origin}:{table}")
                advance_sequences(conn, report, apply=not report.dry_run)
                if report.dry_run:
                    raise psycopg.Rollback(tx)
        except BaseException:
            logger.warning("import of %s failed; nothing was committed", origin)
            raise
    return report


def import_sqlite(pool: ConnectionPool, path: str | Path, dry_run: bool = False) -> Report:
    """Import a legacy SQLite database (tables named as in the seeds) into PostgreSQL.

    Rows are read oldest id first, so among historical duplicate closes (same trading day and
    tag) the earliest is kept and the others are counted as skipped — the same outcome as
    running :func:`dedupe_closed_trades` on the file first, without modifying it.

    Args:
        pool: Pool on the target (migrated) database.
        path: The legacy ``arb_bot_records.sqlite3`` (opened read-only).
        dry_run: Roll everything back and only report.

    Returns:
        Per-table counts (read/inserted/updated/skipped) and advanced sequences.
    """
    file = Path(path)
    report = Report(source=str(file), dry_run=dry_run)
    with open_sqlite(file) as legacy:
        present = table_names(legacy)
        unknown = sorted(set(present) - set(SPEC_BY_NAME))
        if unknown:
            report.note(f"legacy tables not imported (no target table): {', '.join(unknown)}")
        if "closed_trades" in present:
            duplicates = find_sqlite_duplicates(legacy)
            if duplicates:
                report.note(f"closed_trades: {len(duplicates)} historical duplicate close(s) by "
                            "(trade_date, tag) skipped; the earliest id of each is kept")

        def feed() -> Feed:
            for spec in SPECS:
                if spec.name in present:
                    yield spec.name, read_rows(legacy, spec.name)

        return _run(pool, report, feed, file.name)


def import_json(pool: ConnectionPool, root: str | Path, dry_run: bool = False) -> Report:
    """Import the legacy JSON records under ``root`` (layout in :mod:`.json_source`).

    Args:
        pool: Pool on the target (migrated) database.
        root: Directory holding ``open_trades.json``, ``metrics.json``, ... (all optional).
        dry_run: Roll everything back and only report.

    Returns:
        Per-table counts and advanced sequences; missing files are listed in ``notes``.
    """
    base = Path(root)
    report = Report(source=str(base), dry_run=dry_run)
    tables, notes = read_json_tree(base)
    for note in notes:
        report.note(note)
    return _run(pool, report, lambda: tables, base.name or str(base))
