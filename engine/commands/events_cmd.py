"""``python -m engine events fetch|list`` and ``python -m engine why-blocked``.

``events fetch`` (``make fetch-events``) loads ``data/market_events_seed.json`` first, then
the official sources (NSE holiday master, MoSPI CPI and OEA WPI release calendars), and
prints what each added, changed or failed. Offline, every source is reported unreachable
and the exit code is still 0 when the seed loaded (1 when the seed file is refused).
Source URLs: ``EVENTS_NSE_BASE_URL``, ``EVENTS_MOSPI_URL``, ``EVENTS_OEA_URL``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timedelta

from engine.store.pool import get_pool
from engine.timeutil import IST

DEFAULT_LIST_DAYS = 30


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="market events: fetch (seed + official sources) or list",
                       description="The market-event calendar the option strategies' event "
                       "guard reads (market_events).")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    f = s.add_parser("fetch", help="load the seed file, then the official sources (make fetch-events)",
                     description="Upsert data/market_events_seed.json, then the NSE holiday "
                     "master (also refreshes nse_holidays), the MoSPI CPI and the OEA WPI "
                     "release calendars. A source that fails is reported and skipped; nothing "
                     "is deleted. Exit 0 when the seed loaded.")
    f.add_argument("--seed", default=None, help="seed file (default data/market_events_seed.json)")
    f.add_argument("--seed-only", action="store_true", help="skip the network sources")
    f.set_defaults(handler=_fetch)
    ls = s.add_parser("list", help="events in a date range",
                      description=f"Events from --from (default today) to --to (default "
                      f"+{DEFAULT_LIST_DAYS} days), optionally only some impacts.")
    ls.add_argument("--from", dest="start", type=date.fromisoformat, default=None,
                    help="first date YYYY-MM-DD (default today, IST)")
    ls.add_argument("--to", dest="end", type=date.fromisoformat, default=None,
                    help="last date YYYY-MM-DD (default from + 30 days)")
    ls.add_argument("--impact", type=_impacts, default=None,
                    help="HIGH, MEDIUM, LOW or a comma-separated list (default all)")
    ls.set_defaults(handler=_list)
    w = sub.add_parser("why-blocked", help="why a strategy is not entering now",
                       description="The event guard, risk pauses, slots and the last battle-log "
                       "row for one strategy, at the wall clock.")
    w.add_argument("--strategy", required=True, help="DC, MDC, IC, ...")
    w.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    w.set_defaults(handler=_why)


def _impacts(text: str) -> tuple[str, ...]:
    from engine.events.model import IMPACTS

    got = tuple(x.strip().upper() for x in text.split(",") if x.strip())
    bad = [x for x in got if x not in IMPACTS]
    if bad or not got:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {', '.join(IMPACTS)} (comma-separated)")
    return got


def _fetch(args: argparse.Namespace) -> int:
    from engine.events.fetch import run_fetch
    from engine.events.seed import SEED_PATH

    report = run_fetch(get_pool(), seed_path=args.seed or SEED_PATH,
                       sources=() if args.seed_only else None)
    for line in report.lines:
        print(line)
    if report.seed.ok:
        failed = [n for n in report.failed if n != "seed file"]
        if failed:
            print(f"{len(failed)} source(s) skipped; the seed loaded, so this is not an error")
        return 0
    return 1


def _list(args: argparse.Namespace) -> int:
    from engine.events.store import events_between

    start = args.start or datetime.now(IST).date()
    end = args.end or start + timedelta(days=DEFAULT_LIST_DAYS)
    if end < start:
        print(f"refused: --to {end} is before --from {start}", file=sys.stderr)
        return 2
    events = events_between(get_pool(), start, end, impacts=args.impact)
    for e in events:
        when = f"{e.time:%H:%M}" if e.time else "     "
        flag = "" if e.confirmed else "  (unconfirmed)"
        print(f"{e.date} {when}  {e.impact:<6} {e.kind:<15} {e.title}{flag}")
    print(f"{len(events)} event(s) {start} .. {end}")
    return 0


def _why(args: argparse.Namespace) -> int:
    from engine.events.why import why_blocked
    from engine.strategies.registry import UnknownStrategy

    try:
        answer = why_blocked(get_pool(), args.strategy)
    except UnknownStrategy as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
        return 0
    s = answer["strategy"]
    if answer["reasons"]:
        print(f"{s} is blocked now ({answer['now']}):")
        for r in answer["reasons"]:
            print(f"  - {r}")
    else:
        print(f"{s}: nothing blocks an entry now ({answer['now']}): no event block, pause or full slot")
    last = answer["last_cycle"]
    if last:
        print(f"last scan cycle {last['created_at']}: selected {last['selected_strategy'] or 'nothing'}")
        for r in last["reasons"]:
            print(f"  - {r}")
    else:
        print("no scan cycle recorded yet")
    if answer["upcoming_events"]:
        print("upcoming HIGH/MEDIUM events:")
        for e in answer["upcoming_events"]:
            print(f"  {e['date']} {e['time'] or '':5}  {e['impact']:<6} {e['title']}")
    return 0
