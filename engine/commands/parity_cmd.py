"""``python -m engine parity run|show``: the daily backtest-vs-live parity report
(``engine.backtest.parity``): the day's recorded snapshots replayed through the backtester
with the engine's stored parameters, diffed against what the engine did; stored in
``parity_reports`` and its summary queued to chat."""

from __future__ import annotations

import argparse
import json
import sys

from engine.commands import iso_day
from engine.settings import Settings
from engine.store.pool import get_pool
from engine.timeutil import now_ist


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parity", help="daily backtest-vs-live parity report",
                       description="Replay a day's recorded snapshots through the backtester "
                       "with the engine's parameters and diff against what the engine did.")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    r = s.add_parser("run", help="build, store and send the report of a day")
    r.add_argument("--date", type=iso_day, default=None, help="trading day (default: today, IST)")
    r.add_argument("--strategies", default=None,
                   help="comma-separated (default: the PARITY_STRATEGIES setting)")
    r.add_argument("--every-minutes", type=int, default=1,
                   help="replay decision spacing in minutes (default 1: every scan cycle)")
    r.add_argument("--no-notify", action="store_true", help="store it, send nothing to chat")
    r.set_defaults(handler=_run)
    show = s.add_parser("show", help="print a stored report as JSON")
    show.add_argument("--date", type=iso_day, default=None, help="trading day (default: latest)")
    show.set_defaults(handler=_show)


def _run(args: argparse.Namespace) -> int:
    from engine.backtest import parity  # scipy and the replay: only when a report runs

    pool = get_pool()
    settings = Settings(pool)
    names = args.strategies or str(settings.get("PARITY_STRATEGIES"))
    strategies = [n.strip().upper() for n in names.split(",") if n.strip()]
    if not strategies:
        print("refused: --strategies names no strategy", file=sys.stderr)
        return 2
    if args.every_minutes < 1:
        print(f"refused: --every-minutes must be >= 1, got {args.every_minutes}",
              file=sys.stderr)
        return 2
    day = args.date or now_ist().date()
    try:
        report = parity.run(pool, day, strategies=strategies,
                            params=parity.engine_params(settings),
                            every_minutes=args.every_minutes)
    except (ValueError, LookupError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    rid = parity.store(pool, report, notify=not args.no_notify)
    print(parity.summary_text(report))
    print(f"stored as parity_reports {rid}")
    return 0 if report["status"] in ("match", "no_data") else 1


def _show(args: argparse.Namespace) -> int:
    with get_pool().connection() as conn:
        row = conn.execute(
            "SELECT * FROM parity_reports WHERE (%(d)s::date IS NULL OR trade_date = %(d)s)"
            " ORDER BY trade_date DESC, id DESC LIMIT 1", {"d": args.date}).fetchone()
    if row is None:
        print("no parity report stored" + (f" for {args.date}" if args.date else ""),
              file=sys.stderr)
        return 1
    print(json.dumps(row["report"], indent=2, default=str))
    return 0
