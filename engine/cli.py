"""Command-line interface. Each command lives in ``engine/commands/<name>.py`` and registers
itself with ``add_parser(subparsers)``; its handler returns the process exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from engine.config import ConfigError

COMMAND_MODULES = (
    "engine.commands.migrate",
    "engine.commands.status",
    "engine.commands.settings_cmd",
    "engine.commands.risk_cmd",
    "engine.commands.orders_cmd",
    "engine.commands.backtest",
    "engine.commands.events_cmd",
    "engine.commands.journal_cmd",
    "engine.commands.parity_cmd",
)
OPTIONAL_COMMAND_MODULES = (
    "engine.commands.run",
    "engine.commands.token_refresher",
    "engine.commands.dhan_sim",
    "engine.commands.auth",
    "engine.commands.web",
    "engine.migrate_data",
)

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="NIFTY index-options trading engine for Dhan. "
        "Database: DATABASE_URL, or an embedded PostgreSQL under ./var when unset.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_cli(sub)
    for name in OPTIONAL_COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the engine is not installed in this build
            raise
        add_cli = getattr(module, "add_cli", None)
        if add_cli is not None:
            add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from engine.dotenv import load_dotenv

        load_dotenv(os.environ.get("ENGINE_ENV_FILE", ".env"))
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
