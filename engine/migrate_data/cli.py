"""argparse subcommands for the legacy import, registered by ``python -m engine``.

    python -m engine import-sqlite PATH [--dry-run]
    python -m engine import-json --root DIR [--dry-run]
    python -m engine dedupe-closed-trades [--sqlite PATH] [--dry-run]

Each subparser sets ``handler``: a callable taking the parsed namespace and returning the process
exit status (0 = done, 1 = bad legacy data or missing file; nothing committed then).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from engine.migrate_data.convert import LegacyDataError
from engine.migrate_data.dedupe import dedupe_closed_trades
from engine.migrate_data.importer import import_json, import_sqlite
from engine.migrate_data.report import Report

logger = logging.getLogger(__name__)


def _pool() -> ConnectionPool:
    from engine.store.pool import get_pool

    return get_pool()


def _execute(action: Callable[[], Report]) -> int:
    try:
        report = action()
    except (LegacyDataError, FileNotFoundError, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.format())
    return 0


def _missing(path: Path, *, directory: bool = False) -> int | None:
    """Refuse a missing input before any database connection is opened."""
    if (path.is_dir() if directory else path.is_file()):
        return None
    print(f"error: {path} does not exist or is not a {'directory' if directory else 'file'}",
          file=sys.stderr)
    return 1


def _import_sqlite(args: argparse.Namespace) -> int:
    missing = _missing(args.path)
    if missing is not None:
        return missing
    return _execute(lambda: import_sqlite(_pool(), args.path, dry_run=args.dry_run))


def _import_json(args: argparse.Namespace) -> int:
    missing = _missing(args.root, directory=True)
    if missing is not None:
        return missing
    return _execute(lambda: import_json(_pool(), args.root, dry_run=args.dry_run))


def _dedupe(args: argparse.Namespace) -> int:
    if args.sqlite is not None:
        missing = _missing(args.sqlite)
        if missing is not None:
            return missing
        return _execute(lambda: dedupe_closed_trades(args.sqlite, dry_run=args.dry_run))
    return _execute(lambda: dedupe_closed_trades(_pool(), dry_run=args.dry_run))


def add_cli(subparsers: Any) -> None:
    """Register ``import-sqlite``, ``import-json`` and ``dedupe-closed-trades``.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers()``.
    """
    dry = {"action": "store_true",
           "help": "run everything in one transaction, print the report, roll back"}

    p = subparsers.add_parser("import-sqlite", help="import a legacy arb_bot_records.sqlite3",
                              description="Import a legacy SQLite database into PostgreSQL "
                              "(idempotent; safe to re-run).")
    p.add_argument("path", type=Path, help="legacy SQLite file (opened read-only)")
    p.add_argument("--dry-run", **dry)
    p.set_defaults(handler=_import_sqlite)

    p = subparsers.add_parser("import-json", help="import legacy JSON records",
                              description="Import open_trades.json, metrics.json, "
                              "go_live_state.json, ... from a directory (idempotent).")
    p.add_argument("--root", type=Path, required=True, help="directory with the JSON files")
    p.add_argument("--dry-run", **dry)
    p.set_defaults(handler=_import_json)

    p = subparsers.add_parser("dedupe-closed-trades",
                              help="remove duplicate closes per (trade_date, tag)",
                              description="Keep the earliest close of each (trading day, tag) "
                              "in a legacy SQLite file (--sqlite) or in PostgreSQL.")
    p.add_argument("--sqlite", type=Path, default=None, help="legacy SQLite file to repair")
    p.add_argument("--dry-run", **dry)
    p.set_defaults(handler=_dedupe)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m engine.migrate_data <subcommand> ...``."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m engine.migrate_data")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))
