"""``python -m engine migrate [--status]``."""

from __future__ import annotations

import argparse
import sys

from engine.store.migrate import MigrationError, migrate, status
from engine.store.server import database_url, describe


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply pending schema/NNN_*.sql migrations",
                       description="Apply pending schema/NNN_*.sql files in order, each in its own "
                       "transaction, under an advisory lock. Re-running is a no-op.")
    p.add_argument("--status", action="store_true", help="list applied and pending files, apply nothing")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    url = database_url()
    try:
        if args.status:
            rows = status(url)
            print(f"database: {describe(url)}")
            for row in rows:
                when = row.applied_at.isoformat(timespec="seconds") if row.applied_at else ""
                print(f"  {row.state:<8} {row.name:<40} {when}")
            return 1 if any(r.state in ("changed", "missing") for r in rows) else 0
        applied = migrate(url)
    except MigrationError as exc:
        print(f"migration refused: {exc}", file=sys.stderr)
        return 1
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("schema is up to date")
    return 0
