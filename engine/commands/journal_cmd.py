"""``python -m engine journal backfill [--from DATE] [--to DATE]``: fill ``trade_journal``
for closed trades that lack rows or fields (``engine.execution.journal_backfill``);
idempotent, safe to run again."""

from __future__ import annotations

import argparse
import sys

from engine.commands import iso_day
from engine.execution.journal_backfill import backfill
from engine.store.pool import get_pool


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("journal", help="trade journal maintenance (backfill)",
                       description="The trade journal (trade_journal): one row per closed trade.")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    b = s.add_parser("backfill", help="fill missing journal rows and fields from closed_trades, "
                     "iv_snapshots, strategy_battle_log and ai_market_analysis (idempotent)")
    b.add_argument("--from", dest="start", type=iso_day, default=None,
                   help="first close date (YYYY-MM-DD; default: the first close)")
    b.add_argument("--to", dest="end", type=iso_day, default=None,
                   help="last close date (YYYY-MM-DD; default: the last close)")
    b.set_defaults(handler=_backfill)


def _backfill(args: argparse.Namespace) -> int:
    try:
        result = backfill(get_pool(), args.start, args.end)
    except ValueError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(result.text())
    for tag in result.inserted:
        print(f"  inserted {tag}")
    for tag, cols in sorted(result.filled.items()):
        print(f"  filled {tag}: {', '.join(cols)}")
    return 0
