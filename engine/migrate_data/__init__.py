"""Legacy data migration: the old bot's SQLite database and JSON records -> PostgreSQL.

Public API:
    import_sqlite(pool, path, dry_run) -> Report
    import_json(pool, root, dry_run) -> Report
    dedupe_closed_trades(pool_or_sqlite_path, dry_run) -> Report
    add_cli(subparsers)  # import-sqlite / import-json / dedupe-closed-trades
"""

from engine.migrate_data.cli import add_cli
from engine.migrate_data.convert import LegacyDataError
from engine.migrate_data.dedupe import dedupe_closed_trades
from engine.migrate_data.importer import import_json, import_sqlite
from engine.migrate_data.report import Report, TableCounts

__all__ = [
    "LegacyDataError",
    "Report",
    "TableCounts",
    "add_cli",
    "dedupe_closed_trades",
    "import_json",
    "import_sqlite",
]
