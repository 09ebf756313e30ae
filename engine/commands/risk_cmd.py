"""``python -m engine risk status|pause|resume``: the risk envelope from the command line.

``pause`` and ``resume`` are queued in ``engine_commands`` exactly like the dashboard's
buttons, so the running engine (the RiskActor) executes them once; a resume also resets a
supervisor escalation. They are risk commands like any other: a resume expires if the engine
does not pick it up within 5 minutes, a pause runs whenever it does.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from engine.bus.commands import enqueue_command
from engine.risk import repository
from engine.store.pool import get_pool
from engine.store.tx import transaction
from engine.timeutil import IST


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("risk", help="show the risk envelope; pause or resume new entries",
                       description="The risk envelope per go-live stage and the global pause. "
                       "pause/resume are queued for the running engine, like the dashboard's "
                       "Risk page buttons.")
    s = p.add_subparsers(dest="action", metavar="<action>", required=True)
    s.add_parser("status", help="pauses and P&L counters per stage").set_defaults(handler=_status)
    pause = s.add_parser("pause", help="pause new entries of every strategy (queued)")
    pause.add_argument("reason", help="why (shown in the battle log and on the dashboard)")
    pause.add_argument("--by", default=None, help="who (default: $USER@cli)")
    pause.set_defaults(handler=_pause)
    resume = s.add_parser("resume", help="lift every pause and reset an escalation (queued)")
    resume.add_argument("--by", default=None, help="who (default: $USER@cli)")
    resume.set_defaults(handler=_resume)


def _who(args: argparse.Namespace) -> str | None:
    if args.by is None:
        return f"{getpass.getuser()}@cli"
    return args.by.strip() or None


def _queue(kind: str, payload: dict, args: argparse.Namespace) -> int:
    who = _who(args)
    if who is None:
        print("refused: --by must name who is acting (or leave it out)", file=sys.stderr)
        return 2
    with transaction(get_pool()) as conn:
        command_id = enqueue_command(conn, kind, payload, requested_by=who)
    print(f"queued {kind} as command {command_id}; the running engine executes it "
          f"(python -m engine risk status shows the result)")
    return 0


def _pause(args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    if not reason or any(ord(c) < 32 for c in reason):
        print("refused: the reason must be plain text", file=sys.stderr)
        return 2
    return _queue("pause_entries", {"reason": reason[:300]}, args)


def _resume(args: argparse.Namespace) -> int:
    return _queue("resume_entries", {}, args)


def _status(_args: argparse.Namespace) -> int:
    stages = repository.stage_rows(get_pool())
    with get_pool().connection() as conn:
        glob = conn.execute("SELECT * FROM risk_envelope_state WHERE id = 1").fetchone()
        recent = conn.execute(
            "SELECT id, kind, status, error, created_at FROM engine_commands WHERE kind IN"
            " ('pause_entries', 'resume_entries') ORDER BY id DESC LIMIT 3").fetchall()
    print(f"all stages: {'PAUSED: ' + glob['pause_reason'] if glob['pause_reason'] else 'entries allowed'}")
    print(f"\n  {'stage':<7} {'last close':<10} {'day ₹':>12} {'week ₹':>12} {'month ₹':>12} "
          f"{'lifetime ₹':>13} {'streak':>6}  pause")
    for r in stages:
        until = f" (until {r['paused_until'].astimezone(IST):%Y-%m-%d %H:%M} IST)" \
            if r["paused_until"] else ""
        pause = f"{r['pause_reason']}{until}" if r["pause_reason"] else "-"
        last = r["last_close_date"].isoformat() if r["last_close_date"] else "-"
        print(f"  {r['stage']:<7} {last:<10} {r['daily_pnl']:>12} {r['weekly_pnl']:>12} "
              f"{r['monthly_pnl']:>12} {r['lifetime_pnl']:>13} {r['loss_streak']:>6}  {pause}")
    if recent:
        print("\nrecent pause/resume commands:")
        for c in recent:
            extra = f" — {c['error']}" if c["error"] else ""
            print(f"  #{c['id']} {c['kind']} {c['status']} "
                  f"({c['created_at'].astimezone(IST):%Y-%m-%d %H:%M} IST){extra}")
    return 0
