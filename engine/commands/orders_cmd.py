"""``python -m engine orders list|resolve`` and ``python -m engine close``: the money path's
operator commands from the command line.

``orders list`` shows the unsettled order intents (what blocks new entries). ``orders
resolve`` and ``close`` are queued in ``engine_commands`` exactly like the dashboard's forms
(``resolve_order``, ``close_trade``), so the running engine's executor carries them out once;
the engine checks them again when it runs them. Both reduce risk, so they run even if the
engine picks them up late.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.bus.commands import CommandError, enqueue_command
from engine.store.pool import get_pool
from engine.store.tx import transaction
from engine.timeutil import IST

ACTIONS = ("filled", "not_filled", "flatten")
TERMINAL_STATES = ("TRADED", "REJECTED", "CANCELLED", "EXPIRED")


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "orders", help="unsettled live order intents; the operator's decision on one (queued)",
        description="Live order intents the engine has not settled yet (in flight, unresolved, "
        "filled but not booked, an exit on hold): while any is listed, new entries are denied. "
        "'resolve' queues the operator's decision on an unresolved order for the running "
        "engine, like the dashboard's resolve form.")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    s.add_parser("list", help="unsettled order intents: correlation id, trade, leg, side, "
                 "quantity, state, age").set_defaults(handler=_list)
    r = s.add_parser(
        "resolve", help="decide an unresolved order: filled, not_filled or flatten (queued)",
        description="Decide an order whose outcome the engine could not establish, after "
        "checking it at the broker: 'filled' at --price (for --quantity units, default the "
        "whole order), 'not_filled', or 'flatten' --quantity units with an opposite MARKET "
        "order (the intent is then taken as not filled). Needs --confirm.",
        epilog="example: python -m engine orders resolve DC-20250203-100600-X-1 --action filled "
        "--price 101.5 --confirm")
    r.add_argument("correlation_id", metavar="CID",
                   help="the order intent's correlation id (python -m engine orders list)")
    r.add_argument("--action", required=True, choices=ACTIONS,
                   help="filled: it filled (give --price); not_filled: it did not; flatten: "
                   "send an opposite MARKET order of --quantity units")
    r.add_argument("--price", default=None, help="the broker's fill price (filled)")
    r.add_argument("--quantity", type=int, default=None,
                   help="units filled (filled; default the whole order) or to flatten "
                   "(flatten, required)")
    r.add_argument("--confirm", action="store_true",
                   help="required: you checked the order at the broker")
    r.add_argument("--by", default=None, help="who (default: $USER@cli)")
    r.set_defaults(handler=_resolve)

    c = sub.add_parser(
        "close", help="close an open trade (queued); --record-from-broker to book a close "
        "done at the broker",
        description="Queue the close of an open trade for the running engine, like the "
        "dashboard's close button. By default the engine sends the closing orders (for a "
        "trade on hold only this trade's share of what the broker still holds, so the close "
        "never opens a new position). --record-from-broker sends nothing: the trade is "
        "recorded closed at the prices of the broker's trade book (model charges) — for legs "
        "already closed at the broker; it needs --confirm and is refused when the trade book "
        "does not cover every leg.",
        epilog="examples: python -m engine close DC-20250203-100600 | python -m engine close "
        "DC-20250203-100600 --record-from-broker --confirm")
    c.add_argument("tag", metavar="TAG", help="the open trade's tag")
    c.add_argument("--record-from-broker", action="store_true",
                   help="send nothing; record the trade closed at the broker's trade-book prices")
    c.add_argument("--confirm", action="store_true",
                   help="required with --record-from-broker: you checked the broker")
    c.add_argument("--by", default=None, help="who (default: $USER@cli)")
    c.set_defaults(handler=_close)


def _refuse(text: str) -> int:
    print(f"refused: {text}", file=sys.stderr)
    return 2


def _who(args: argparse.Namespace) -> str | None:
    if args.by is None:
        return f"{getpass.getuser()}@cli"
    return args.by.strip() or None


def _queue(kind: str, payload: dict[str, Any], args: argparse.Namespace, then: str) -> int:
    who = _who(args)
    if who is None:
        return _refuse("--by must name who is acting (or leave it out)")
    try:
        with transaction(get_pool()) as conn:
            command_id = enqueue_command(conn, kind, payload, requested_by=who)
    except CommandError as exc:
        return _refuse(str(exc))
    print(f"queued {kind} as command {command_id}; the running engine executes it ({then})")
    return 0


def _age(created: datetime) -> str:
    seconds = max(0, int((datetime.now(IST) - created).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _list(_args: argparse.Namespace) -> int:
    with get_pool().connection() as conn:
        rows = conn.execute(
            "SELECT correlation_id, trade_tag, purpose, leg_index, side, quantity, filled_qty,"
            " security_id, state, created_at FROM order_intents WHERE settled_at IS NULL AND"
            " NOT sliced ORDER BY id").fetchall()
    if not rows:
        print("no unsettled order intents: nothing blocks new entries on the money path")
        return 0
    print(f"{'cid':<25} {'tag':<22} {'leg':<9} {'side':<4} {'qty':>6} {'filled':>6} "
          f"{'security':<10} {'state':<11} age")
    for r in rows:
        leg = f"{r['purpose']}/{r['leg_index']}"
        print(f"{r['correlation_id']:<25} {r['trade_tag']:<22} {leg:<9} {r['side']:<4} "
              f"{r['quantity']:>6} {r['filled_qty']:>6} {r['security_id']:<10} "
              f"{r['state']:<11} {_age(r['created_at'])}")
    unresolved = [r["correlation_id"] for r in rows if r["state"] == "unresolved"]
    if unresolved:
        print(f"\n{len(unresolved)} unresolved: check them at the broker, then decide with "
              "python -m engine orders resolve CID --action filled|not_filled|flatten ... "
              "--confirm")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    cid = args.correlation_id.strip()
    if not args.confirm:
        return _refuse("--confirm is required: check the order at the broker first")
    price = None
    if args.price is not None:
        try:
            price = Decimal(str(args.price))
        except InvalidOperation:
            return _refuse(f"--price {args.price!r} is not a number")
        if not price.is_finite() or price <= 0:
            return _refuse(f"--price must be a positive price, got {args.price}")
    if args.quantity is not None and args.quantity <= 0:
        return _refuse(f"--quantity must be a positive number of units, got {args.quantity}")
    if args.action == "filled" and price is None:
        return _refuse("--action filled needs --price (the price the broker filled at)")
    if args.action == "flatten" and args.quantity is None:
        return _refuse("--action flatten needs --quantity (the units to flatten)")
    if args.action != "filled" and price is not None:
        return _refuse(f"--price goes with --action filled, not {args.action}")
    with get_pool().connection() as conn:
        row = conn.execute("SELECT state, quantity, settled_at, sliced FROM order_intents WHERE"
                           " correlation_id = %s", (cid,)).fetchone()
    if row is None or row["sliced"]:
        return _refuse(f"no order intent with correlation id {cid!r} (python -m engine orders "
                       "list shows the unsettled ones)")
    if row["settled_at"] is not None:
        return _refuse(f"{cid} is already settled")
    if args.action != "flatten" and row["state"] in TERMINAL_STATES:
        return _refuse(f"{cid} is {row['state']}, not unresolved (only 'flatten' applies)")
    if args.action == "filled" and args.quantity is not None and args.quantity > row["quantity"]:
        return _refuse(f"--quantity {args.quantity}: the order is for {row['quantity']} units")
    payload: dict[str, Any] = {"correlation_id": cid, "action": args.action, "confirm": True}
    if price is not None:
        payload["price"] = str(price)
    if args.quantity is not None:
        payload["quantity"] = args.quantity
    return _queue("resolve_order", payload, args, "python -m engine orders list shows what "
                  "is still unsettled")


def _close(args: argparse.Namespace) -> int:
    tag = args.tag.strip()
    if not tag or any(ord(ch) < 32 for ch in tag):
        return _refuse("TAG must be a trade tag (plain text)")
    if args.record_from_broker and not args.confirm:
        return _refuse("--record-from-broker needs --confirm: the trade is recorded closed at "
                       "the broker's trade-book prices and no order is sent")
    with get_pool().connection() as conn:
        row = conn.execute("SELECT mode, payload->>'hold' AS hold FROM open_trades WHERE"
                           " tag = %s", (tag,)).fetchone()
        closed = None if row else conn.execute(
            "SELECT 1 FROM closed_trades WHERE tag = %s LIMIT 1", (tag,)).fetchone()
    if row is None:
        return _refuse(f"trade {tag!r} is already closed" if closed else
                       f"no open trade with tag {tag!r}")
    if args.record_from_broker and row["mode"] != "live":
        return _refuse(f"--record-from-broker is for live trades; {tag} is a {row['mode']} "
                       "trade (close it without the flag)")
    payload: dict[str, Any] = {"tag": tag}
    if args.record_from_broker:
        payload.update(mode="record_from_broker", confirm=True)
    return _queue("close_trade", payload, args, "the engine's alerts and the dashboard's "
                  "Trades page show the outcome")
