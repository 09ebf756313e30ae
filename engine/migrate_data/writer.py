"""Write mapped legacy rows into PostgreSQL idempotently, and advance id sequences.

Inserts are ``INSERT ... SELECT ... WHERE NOT EXISTS (natural key) ON CONFLICT DO NOTHING``:
a row already present under its id, under any unique constraint, or under its natural key is
skipped, so an import can be re-run safely. Keyed state tables use an upsert that only
replaces older or untouched rows (see :mod:`engine.migrate_data.tables`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from engine.migrate_data.convert import Column, map_row
from engine.migrate_data.report import Report
from engine.migrate_data.tables import TableSpec

logger = logging.getLogger(__name__)


def _value(row: Any, key: str, index: int) -> Any:
    return row[key] if isinstance(row, Mapping) else row[index]


def load_columns(conn: psycopg.Connection[Any], table: str) -> dict[str, Column]:
    """Read the columns of ``table`` (public schema) from the catalog."""
    rows = conn.execute(
        """
        SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
               a.attnotnull AND NOT a.atthasdef AS required,
               pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL AS serial
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum
        """,
        (table,),
    ).fetchall()
    if not rows:
        raise LookupError(f"table {table!r} does not exist in the target database "
                          "(run `python -m engine migrate` first)")
    columns = {}
    for row in rows:
        name = _value(row, "name", 0)
        columns[name] = Column(name=name, type=_value(row, "type", 1),
                               required=bool(_value(row, "required", 2)),
                               serial=bool(_value(row, "serial", 3)))
    return columns


def _placeholder(column: Column) -> sql.Composable:
    return sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(column.type))


def _insert_sql(spec: TableSpec, columns: Mapping[str, Column], names: tuple[str, ...]
                ) -> tuple[sql.Composable, tuple[str, ...]]:
    """Statement for the insert policy, and the names of its parameters in order."""
    table = sql.Identifier(spec.name)
    values = sql.SQL(", ").join(_placeholder(columns[n]) for n in names)
    key = tuple(k for k in spec.natural_key if k in columns)
    if key:
        cond = sql.SQL(" AND ").join(
            sql.SQL("t.{} IS NOT DISTINCT FROM {}").format(sql.Identifier(k),
                                                           _placeholder(columns[k]))
            for k in key)
        where = sql.SQL(" WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE {})").format(table, cond)
    else:
        where = sql.SQL("")
    stmt = sql.SQL("INSERT INTO {} ({}) SELECT {}{} ON CONFLICT DO NOTHING "
                   "RETURNING true AS inserted").format(
        table, sql.SQL(", ").join(map(sql.Identifier, names)), values, where)
    return stmt, names + key


def _upsert_sql(spec: TableSpec, columns: Mapping[str, Column], names: tuple[str, ...]
                ) -> tuple[sql.Composable, tuple[str, ...]]:
    """Statement for the upsert policy: replace only older/untouched, changed rows."""
    table = sql.Identifier(spec.name)
    values = sql.SQL(", ").join(_placeholder(columns[n]) for n in names)
    setters = [n for n in names if n not in spec.conflict_key]
    compared = [n for n in setters if n != spec.stamp]
    if not setters:
        action = sql.SQL("NOTHING")
    else:
        # A legacy row without its own timestamp never counts as newer: it only fills
        # absent or untouched rows, so a re-import cannot undo later operator changes.
        newer = [sql.SQL("cur.{0} < EXCLUDED.{0}").format(sql.Identifier(spec.stamp))
                 ] if spec.stamp and spec.stamp in names else []
        if spec.replace_when:
            newer.append(sql.SQL(spec.replace_when))
        gate = sql.SQL(" OR ").join(newer) if newer else sql.SQL("false")
        changed = sql.SQL("true") if not compared else sql.SQL(
            "({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(sql.SQL("cur.{}").format(sql.Identifier(n)) for n in compared),
            sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(n))
                               for n in compared))
        if len(compared) == 1:  # a one-element row constructor needs ROW()
            changed = sql.SQL("cur.{0} IS DISTINCT FROM EXCLUDED.{0}").format(
                sql.Identifier(compared[0]))
        action = sql.SQL("UPDATE SET {} WHERE ({}) AND {}").format(
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n))
                               for n in setters), gate, changed)
    stmt = sql.SQL("INSERT INTO {} AS cur ({}) VALUES ({}) ON CONFLICT ({}) DO {} "
                   "RETURNING (xmax = 0) AS inserted").format(
        table, sql.SQL(", ").join(map(sql.Identifier, names)), values,
        sql.SQL(", ").join(map(sql.Identifier, spec.conflict_key)), action)
    return stmt, names


def write_rows(conn: psycopg.Connection[Any], spec: TableSpec, rows: Iterable[Mapping[str, Any]],
               report: Report, *, origin: str) -> None:
    """Map, convert and write ``rows`` into ``spec.name``, counting into ``report``.

    Args:
        conn: Connection inside the import's transaction.
        spec: Target table mapping.
        rows: Legacy rows as dicts, in the order they should win (earliest first).
        report: Counts are added to ``report.counts(spec.name)``.
        origin: Prefix naming the source in error messages (``"legacy.sqlite3:closed_trades"``).
    """
    columns = load_columns(conn, spec.name)
    counts = report.counts(spec.name)
    ignored: set[str] = set()
    batches: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for number, raw in enumerate(rows, start=1):
        where = f"{origin} row {raw.get('id', number)}"
        mapped = map_row(spec, columns, raw, where=where, ignored=ignored)
        batches.setdefault(tuple(mapped), []).append(mapped)
        counts.read += 1
    if ignored:
        report.note(f"{spec.name}: legacy column(s) without a target ignored: "
                    f"{', '.join(sorted(ignored))}")
    build = _upsert_sql if spec.policy == "upsert" else _insert_sql
    with conn.cursor() as cur:
        for names, batch in batches.items():
            stmt, params = build(spec, columns, names)
            cur.executemany(stmt, [[row.get(p) for p in params] for row in batch],
                            returning=True)
            results = []
            while True:
                results.append(cur.fetchone())
                if not cur.nextset():
                    break
            for result in results:
                if result is None:
                    counts.skipped += 1
                elif _value(result, "inserted", 0) is False:
                    counts.updated += 1
                else:
                    counts.inserted += 1
    logger.info("%s -> %s: %d read, %d inserted, %d updated, %d skipped", origin, spec.name,
                counts.read, counts.inserted, counts.updated, counts.skipped)


def advance_sequences(conn: psycopg.Connection[Any], report: Report, *, apply: bool) -> None:
    """Move every serial sequence of the public schema to at least MAX(id) of its column.

    Explicit ids do not advance a BIGSERIAL sequence; without this the next ordinary insert
    collides with an imported id. Sequences are only ever moved forward. ``setval`` is not
    transactional, so with ``apply=False`` (dry run) the targets are only reported.
    """
    serials = conn.execute(
        """
        SELECT c.relname AS tbl, a.attname AS col,
               pg_get_serial_sequence(quote_ident(c.relname), a.attname) AS seq
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
           AND pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL
         ORDER BY c.relname
        """).fetchall()
    for row in serials:
        table, column, seq = (_value(row, "tbl", 0), _value(row, "col", 1),
                              _value(row, "seq", 2))
        top = conn.execute(sql.SQL("SELECT max({}) AS top FROM {}").format(
            sql.Identifier(column), sql.Identifier(table))).fetchone()
        highest = _value(top, "top", 0) if top else None
        if highest is None:
            continue
        state = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
            sql.SQL(seq))).fetchone()
        last, called = _value(state, "last_value", 0), _value(state, "is_called", 1)
        if called and last >= highest:
            continue
        if apply:
            conn.execute("SELECT setval(%s, %s, true)", (seq, highest))
        report.sequences[seq] = int(highest)
