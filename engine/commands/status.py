"""``python -m engine status``: database server, schema version, tables."""

from __future__ import annotations

import argparse

import psycopg

from engine.store.migrate import schema_version
from engine.store.server import database_url, describe


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the database, schema version and tables",
                       description="Print the database server, the schema version and every "
                       "table with its row count.")
    p.set_defaults(handler=run)


def status_table(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    lines = [
        f"{'server':<16} PostgreSQL {server} at {describe(url)}",
        f"{'schema version':<16} {schema_version(url) or '(none applied)'}",
        f"{'tables':<16} {len(tables)}",
        "",
        f"  {'table':<28} {'rows':>10}",
        f"  {'-' * 28} {'-' * 10}",
    ]
    lines += [f"  {t:<28} {counts[t]:>10}" for t in tables]
    return "\n".join(lines)


def run(_args: argparse.Namespace) -> int:
    print(status_table(database_url()))
    return 0
