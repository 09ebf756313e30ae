"""The one chat command parser and the commands' answers (Telegram and Cliq alike).

:func:`parse` turns ``/name arg ...`` (also ``/name@bot``) into a :class:`Parsed`; each
command is a function ``(ctx, args) -> str`` reading the database through ``ctx.conn`` and
reaching the actors only by queueing an ``engine_commands`` row (the dashboard's one path:
the CommandBus hands it to the Dispatcher), recorded with ``requested_by`` =
``<channel>:<user>``. Commands never raise to the caller: a problem is the reply.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from engine.bus.commands import CommandError, enqueue_command
from engine.timeutil import IST

logger = logging.getLogger(__name__)

MAX_LOG_LINES = 50
MAX_LOG_CHARS = 3500
MAX_TRADES = 50
MAX_EVENT_DAYS = 90
MAX_TAIL_BYTES = 256 * 1024
STAGES = ("paper", "shadow", "live")
AI_MARKET_TASK = "ai_market"


class Refused(Exception):
    """A command the user must fix (the message is the reply)."""


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sent a chat message: the channel, the user, the chat (Telegram chat id)."""

    channel: str          # telegram | cliq
    user_id: str
    chat_id: str = ""
    name: str = ""
    is_group: bool = False

    @property
    def who(self) -> str:
        """``requested_by`` / ``updated_by`` for what this sender does."""
        label = self.name or self.user_id
        return f"{self.channel}:{label}"[:100]

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class Parsed:
    name: str
    args: tuple[str, ...]
    text: str


@dataclass
class Ctx:
    """What a command runs with."""

    conn: Any
    sender: Sender
    settings: Any
    log_path: Path | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(IST))
    followups: list[tuple[int, int | None]] = field(default_factory=list)

    def enqueue(self, kind: str, payload: dict[str, Any], run_id: int | None = None) -> int:
        try:
            cid = enqueue_command(self.conn, kind, payload, requested_by=self.sender.who)
        except CommandError as exc:
            raise Refused(str(exc)) from None
        self.followups.append((cid, run_id))
        return cid


def parse(text: str) -> Parsed | None:
    """``/name args`` -> Parsed (name lower-cased, ``@bot`` suffix dropped); None when the
    text is not a command."""
    stripped = (text or "").strip()
    if not stripped.startswith("/") or len(stripped) < 2:
        return None
    words = stripped.split()
    name = words[0][1:].split("@", 1)[0].lower()
    if not name:
        return None
    return Parsed(name=name, args=tuple(words[1:]), text=stripped)


# ---------------------------------------------------------------- helpers
def _money(value: Any) -> str:
    if value is None:
        return "-"
    d = Decimal(str(value)).quantize(Decimal("0.01"))
    return f"₹{d:,}"


def _one(ctx: Ctx, sql: str, params: Any = None) -> dict[str, Any] | None:
    return ctx.conn.execute(sql, params).fetchone()


def _all(ctx: Ctx, sql: str, params: Any = None) -> list[dict[str, Any]]:
    return ctx.conn.execute(sql, params).fetchall()


def _state(ctx: Ctx, key: str) -> dict[str, Any]:
    row = _one(ctx, "SELECT value, updated_at FROM runtime_state WHERE key = %s", (key,))
    return dict(row["value"] or {}) if row else {}


def _int_arg(args: tuple[str, ...], default: int, lo: int, hi: int, what: str) -> int:
    if not args:
        return default
    text = args[0]
    if not text.isascii() or not text.isdigit():
        raise Refused(f"{what}: expected a whole number between {lo} and {hi}, got {text!r}")
    return max(lo, min(hi, int(text)))


def _strategies() -> tuple[str, ...]:
    from engine.bus.dispatch import GO_LIVE_STRATEGIES

    return GO_LIVE_STRATEGIES


# ---------------------------------------------------------------- read-only
def cmd_help(ctx: Ctx, args: tuple[str, ...]) -> str:
    width = max(len(usage) for usage, _ in HELP.values())
    lines = ["Commands:"] + [f"{usage.ljust(width)}  {text}" for usage, text in HELP.values()]
    lines.append("Dangerous commands (/golive … live, /close all, /rerun_ai_market, "
                 "/killswitch) wait for "
                 "/confirm <TOTP code> within 60 s.")
    return "\n".join(lines)


def cmd_status(ctx: Ctx, args: tuple[str, ...]) -> str:
    from engine.bus.events import HEARTBEAT_KEY

    beat = _state(ctx, HEARTBEAT_KEY)
    lines = []
    ts = beat.get("ts")
    if ts:
        age = (ctx.now() - datetime.fromisoformat(ts)).total_seconds()
        lines.append(f"Engine: heartbeat {age:.0f} s ago" + (" (STALE)" if age > 120 else "")
                     + (f", engine time {beat['engine_time'][:16]}" if beat.get("engine_time")
                        else ""))
    else:
        lines.append("Engine: no heartbeat yet (is it running?)")
    stages = _all(ctx, "SELECT strategy, stage FROM go_live_state ORDER BY strategy")
    lines.append("Stages: " + (", ".join(f"{r['strategy']}={r['stage']}" for r in stages)
                               or "none seeded yet"))
    slots = _state(ctx, "strategy_slots")
    if slots:
        lines.append("Slots: " + ", ".join(
            f"{fam} {v.get('used', 0)}/{v.get('limit', 0)}" for fam, v in sorted(slots.items())
            if isinstance(v, dict)))
    risk = _one(ctx, "SELECT * FROM risk_envelope_state WHERE id = 1") or {}
    paused = risk.get("pause_reason")
    lines.append(f"Risk: today {_money(risk.get('daily_pnl'))}, week "
                 f"{_money(risk.get('weekly_pnl'))}, month {_money(risk.get('monthly_pnl'))}, "
                 f"loss streak {risk.get('loss_streak', 0)}; entries "
                 + (f"PAUSED ({paused})" if paused else "allowed"))
    for row in _all(ctx, "SELECT stage, pause_reason FROM risk_envelope_stages"
                         " WHERE pause_reason IS NOT NULL ORDER BY stage"):
        lines.append(f"  {row['stage']} entries paused: {row['pause_reason']}")
    token = _state(ctx, "dhan_token")
    expires = next((token.get(k) for k in ("expires_at", "expiry", "token_expiry")
                    if token.get(k)), None)
    lines.append(f"Token: valid until {expires}" if expires else "Token: none recorded")
    count = _one(ctx, "SELECT count(*) AS n FROM open_trades")["n"]
    lines.append(f"Open positions: {count}")
    return "\n".join(lines)


def _period_start(period: str, today: date) -> date:
    if period == "today":
        return today
    if period == "week":
        return today - timedelta(days=today.weekday())
    if period == "month":
        return today.replace(day=1)
    raise Refused(f"/pnl {period}: expected today, week or month")


def cmd_pnl(ctx: Ctx, args: tuple[str, ...]) -> str:
    period = (args[0].lower() if args else "today")
    today = ctx.now().astimezone(IST).date()
    start = _period_start(period, today)
    row = _one(ctx, "SELECT count(*) AS n, coalesce(sum(realized_pnl), 0) AS pnl,"
                    " coalesce(sum(charges), 0) AS charges,"
                    " count(*) FILTER (WHERE realized_pnl > 0) AS wins FROM closed_trades"
                    " WHERE trade_date BETWEEN %s AND %s", (start, today))
    by = _all(ctx, "SELECT strategy, count(*) AS n, sum(realized_pnl) AS pnl FROM closed_trades"
                   " WHERE trade_date BETWEEN %s AND %s GROUP BY strategy ORDER BY strategy",
              (start, today))
    lines = [f"P&L {period} ({start} .. {today}): {_money(row['pnl'])} net over {row['n']} "
             f"closed trade(s), {row['wins']} won, charges {_money(row['charges'])}"]
    lines += [f"  {r['strategy']}: {_money(r['pnl'])} ({r['n']})" for r in by]
    return "\n".join(lines)


def cmd_positions(ctx: Ctx, args: tuple[str, ...]) -> str:
    rows = _all(ctx, "SELECT tag, strategy, mode, opened_at, entry_price, payload FROM"
                     " open_trades ORDER BY opened_at")
    if not rows:
        return "No open positions."
    lines = []
    for r in rows:
        p = r["payload"] or {}
        hold = " HOLD" if p.get("hold") else ""
        lines.append(f"{r['tag']} [{r['strategy']}, {r['mode']}]{hold} opened "
                     f"{r['opened_at'].astimezone(IST):%d %b %H:%M}, MTM {_money(p.get('mtm'))}")
        for leg in p.get("legs", []):
            strike = f" {leg.get('strike')}{leg.get('option_type') or ''}" \
                if leg.get("strike") else ""
            lines.append(f"  {leg.get('side')} {leg.get('quantity')} {leg.get('kind')}{strike}"
                         f" {leg.get('expiry') or ''} @ {leg.get('entry_price')}")
    return "\n".join(lines)


def cmd_trades(ctx: Ctx, args: tuple[str, ...]) -> str:
    n = _int_arg(args, 10, 1, MAX_TRADES, "/trades N")
    rows = _all(ctx, "SELECT tag, strategy, mode, closed_at, realized_pnl, exit_reason FROM"
                     " closed_trades ORDER BY closed_at DESC, id DESC LIMIT %s", (n,))
    if not rows:
        return "No closed trades yet."
    return "\n".join(f"{r['closed_at'].astimezone(IST):%d %b %H:%M} {r['tag']} "
                     f"[{r['strategy']}, {r['mode']}] {_money(r['realized_pnl'])} — "
                     f"{r['exit_reason']}" for r in rows)


def cmd_get(ctx: Ctx, args: tuple[str, ...]) -> str:
    from engine.settings import SettingError, knob

    if len(args) != 1:
        raise Refused("usage: /get KEY")
    try:
        k = knob(args[0].upper())
    except SettingError as exc:
        raise Refused(str(exc)) from None
    value = ctx.settings.get(k.key)
    return (f"{k.key} = {k.render(value)} (default {k.render(k.default)}; "
            f"allowed: {k.allowed()})\n{k.description}")


def cmd_settings(ctx: Ctx, args: tuple[str, ...]) -> str:
    views = ctx.settings.list()
    lines = [f"{v.key} = {_render(v.value)}" + (f"  (set by {v.updated_by})" if v.overridden
                                                else "") for v in views]
    changed = sum(1 for v in views if v.overridden)
    return f"{len(views)} settings, {changed} changed from the default:\n" + "\n".join(lines)


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmd_events(ctx: Ctx, args: tuple[str, ...]) -> str:
    days = _int_arg(args, 14, 1, MAX_EVENT_DAYS, "/events days")
    today = ctx.now().astimezone(IST).date()
    end = today + timedelta(days=days)
    try:
        from engine.events.store import read_events
    except ImportError:  # the events package is not installed: the table directly
        rows = _all(ctx, "SELECT event_date, event_time, name, category, risk_level FROM"
                         " market_events WHERE event_date BETWEEN %s AND %s ORDER BY"
                         " event_date, event_time NULLS FIRST", (today, end))
        items = [(r["event_date"], r["event_time"], r["category"], r["name"],
                  str(r["risk_level"]).upper()) for r in rows]
    else:
        items = [(e.date, e.time, e.kind, e.title, e.impact)
                 for e in read_events(ctx.conn, today, end)]
    if not items:
        return f"No market events in the next {days} day(s)."
    lines = [f"Market events {today} .. {end}:"]
    lines += [f"{d:%a %d %b}{' ' + t.strftime('%H:%M') if t else ''} [{impact}] {title}"
              f" ({kind})" for d, t, kind, title, impact in items]
    return "\n".join(lines)


def cmd_why_blocked(ctx: Ctx, args: tuple[str, ...]) -> str:
    try:
        from engine.events.why import why_blocked
    except ImportError:
        why_blocked = None
    if why_blocked is not None:
        from engine.strategies import registry

        names = [args[0].upper()] if args else list(registry.names())
        pool = _ConnPool(ctx.conn)
        lines = []
        for name in names:
            try:
                info = why_blocked(pool, name, ctx.now())
            except Exception as exc:  # UnknownStrategy names the valid ones
                raise Refused(str(exc)) from None
            last = info.get("last_cycle") or {}
            reasons = list(info["reasons"]) + [f"last cycle: {r}" for r in
                                               last.get("reasons") or []]
            lines.append(f"{name}: " + ("; ".join(reasons) if reasons else "not blocked"))
        return "\n".join(lines)
    row = _one(ctx, "SELECT created_at, selected_strategy, rejections FROM strategy_battle_log"
                    " ORDER BY created_at DESC LIMIT 1")
    if row is None:
        return "No scan cycle has run yet."
    rejections = row["rejections"] or {}
    names = [args[0].upper()] if args else sorted(rejections)
    lines = [f"Last cycle {row['created_at'].astimezone(IST):%d %b %H:%M}, selected "
             f"{row['selected_strategy'] or 'none'}:"]
    lines += [f"{n}: " + ("; ".join(rejections.get(n) or []) or "not blocked") for n in names]
    return "\n".join(lines)


class _ConnPool:
    """A pool-like wrapper so pool-taking readers run on the command's connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def connection(self, *_a: Any, **_k: Any) -> Any:
        import contextlib

        return contextlib.nullcontext(self._conn)


def tail(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (reads at most MAX_TAIL_BYTES from the end)."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        start = max(0, size - MAX_TAIL_BYTES)
        fh.seek(start)
        data = fh.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]
    return lines[-count:]


def cmd_logs(ctx: Ctx, args: tuple[str, ...]) -> str:
    from engine.redact import redact

    n = _int_arg(args, 20, 1, MAX_LOG_LINES, "/logs N")
    if ctx.log_path is None or not ctx.log_path.is_file():
        return "No engine log file here (LOG_DIR)."
    lines = [redact(x) for x in tail(ctx.log_path, n)]
    text = "\n".join(lines)
    if len(text) > MAX_LOG_CHARS:
        text = "…" + text[-MAX_LOG_CHARS:]
    return text or "(the log is empty)"


# ---------------------------------------------------------------- changing things
def cmd_set(ctx: Ctx, args: tuple[str, ...]) -> str:
    from engine.settings import SettingError

    if len(args) < 2:
        raise Refused("usage: /set KEY VALUE")
    key, value = args[0].upper(), " ".join(args[1:])
    try:
        change = ctx.settings.set(key, value, updated_by=ctx.sender.who)
    except SettingError as exc:
        raise Refused(f"refused, nothing changed: {exc}") from None
    return f"{change.key}: {change.old_value or '(default)'} -> {change.new_value}"


def cmd_pause(ctx: Ctx, args: tuple[str, ...]) -> str:
    reason = " ".join(args)[:300] or f"paused from {ctx.sender.channel}"
    cid = ctx.enqueue("pause_entries", {"reason": reason})
    return f"Pausing new entries (command #{cid})."


def cmd_resume(ctx: Ctx, args: tuple[str, ...]) -> str:
    cid = ctx.enqueue("resume_entries", {})
    return f"Resuming entries (command #{cid})."


def golive_payload(args: tuple[str, ...]) -> dict[str, Any]:
    from engine.bus.dispatch import strategy_problem

    if len(args) != 2 or args[1].lower() not in STAGES:
        raise Refused("usage: /golive STRATEGY paper|shadow|live")
    strategy, stage = args[0].upper(), args[1].lower()
    problem = strategy_problem(strategy)
    if problem is not None:
        raise Refused(problem)
    return {"strategy": strategy, "stage": stage, "confirm": True}


def cmd_golive(ctx: Ctx, args: tuple[str, ...]) -> str:
    payload = golive_payload(args)
    cid = ctx.enqueue("set_go_live_stage", payload)
    return f"Setting {payload['strategy']} to {payload['stage']} (command #{cid})."


def cmd_close(ctx: Ctx, args: tuple[str, ...]) -> str:
    if len(args) != 1:
        raise Refused("usage: /close TAG|all")
    if args[0].lower() == "all":
        tags = [r["tag"] for r in _all(ctx, "SELECT tag FROM open_trades ORDER BY opened_at")]
        if not tags:
            return "No open positions to close."
        ids = [ctx.enqueue("close_trade", {"tag": t}) for t in tags]
        return f"Closing {len(tags)} position(s): " + ", ".join(
            f"{t} (#{i})" for t, i in zip(tags, ids, strict=True))
    tag = args[0]
    if _one(ctx, "SELECT 1 AS x FROM open_trades WHERE tag = %s", (tag,)) is None:
        raise Refused(f"no open trade with tag {tag!r} (see /positions)")
    cid = ctx.enqueue("close_trade", {"tag": tag})
    return f"Closing {tag} (command #{cid})."


def backtest_request(args: tuple[str, ...]) -> tuple[str, date, date, dict[str, Any]]:
    """Check ``/backtest STRATEGY FROM TO [KEY=V …]`` as the dashboard's API does."""
    from engine.settings import SettingError, knob
    from engine.strategies.registry import get, names

    if len(args) < 3:
        raise Refused("usage: /backtest STRATEGY FROM TO [KEY=VALUE ...] (dates YYYY-MM-DD)")
    strategy = args[0].upper()
    if strategy not in names():
        raise Refused(f"no backtest for strategy {strategy!r}; the backtester runs "
                      f"{', '.join(names())}")
    try:
        start, end = date.fromisoformat(args[1]), date.fromisoformat(args[2])
    except ValueError:
        raise Refused("FROM and TO: expected dates as YYYY-MM-DD") from None
    if end < start:
        raise Refused("TO must not be before FROM")
    if (end - start).days > 3 * 366:
        raise Refused("a backtest spans at most 1098 days")
    params: dict[str, Any] = {}
    for item in args[3:]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Refused(f"{item!r}: expected KEY=VALUE")
        try:
            k = knob(key.upper())
            params[k.key] = k.render(k.coerce(value))
        except SettingError as exc:
            raise Refused(str(exc)) from None
    params.setdefault("BT_DATA", "bhavcopy")
    params.setdefault("BT_FILL_MODEL", "close")
    if params["BT_DATA"] == "bhavcopy" and not get(strategy).eod_backtest:
        raise Refused(f"{strategy} cannot be backtested on end-of-day bhavcopy data: add "
                      "BT_DATA=sim")
    if params["BT_DATA"] == "snapshots" and get(strategy).needs != "options":
        raise Refused(f"{strategy} cannot be replayed on iv_snapshots (no futures quotes are "
                      "recorded in them): add BT_DATA=sim")
    return strategy, start, end, params


def cmd_backtest(ctx: Ctx, args: tuple[str, ...]) -> str:
    strategy, start, end, params = backtest_request(args)
    run = _one(ctx, "INSERT INTO backtest_runs (strategy, start_date, end_date, config_snapshot)"
                    " VALUES (%s, %s, %s, %s) RETURNING run_id",
               (strategy, start, end, Jsonb(params)))
    cid = ctx.enqueue("run_backtest", {"run_id": run["run_id"]}, run_id=run["run_id"])
    return (f"Backtest run {run['run_id']} of {strategy} {start} .. {end} queued (command "
            f"#{cid}); I will answer when it completes.")


def cmd_killswitch(ctx: Ctx, args: tuple[str, ...]) -> str:
    reason = " ".join(args)[:300] or f"asked from {ctx.sender.channel}"
    cid = ctx.enqueue("kill_switch", {"reason": reason, "confirm": True})
    return (f"Pausing entries and arming Dhan's kill switch (command #{cid}); Dhan activates "
            "it once the account is flat, and I will tell you when it is.")


def ai_market_problem() -> str | None:
    from engine.bus.dispatch import task_problem

    if task_problem(AI_MARKET_TASK) is None:
        return None
    return "AI flows are not configured in this engine (no ai_market task to rerun)."


def cmd_rerun_ai_market(ctx: Ctx, args: tuple[str, ...]) -> str:
    problem = ai_market_problem()
    if problem is not None:
        raise Refused(problem)
    cid = ctx.enqueue("rerun_task", {"task": AI_MARKET_TASK})
    return f"Re-running the AI market analysis (command #{cid})."


#: name -> (usage, one line of help); /help lists them in this order.
HELP: dict[str, tuple[str, str]] = {
    "help": ("/help", "this list"),
    "status": ("/status", "engine, stages, slots, risk, token, heartbeat"),
    "pnl": ("/pnl [today|week|month]", "realised P&L of the period"),
    "positions": ("/positions", "open positions with legs and MTM"),
    "trades": ("/trades [N]", "the last N closed trades (default 10)"),
    "get": ("/get KEY", "one setting's value, default and allowed values"),
    "set": ("/set KEY VALUE", "change a setting (validated; audited with your name)"),
    "settings": ("/settings", "every setting's value"),
    "events": ("/events [days]", "market events ahead (default 14 days)"),
    "why_blocked": ("/why_blocked [STRATEGY]", "what keeps a strategy from entering"),
    "logs": ("/logs N", f"the engine log's last N lines (at most {MAX_LOG_LINES}, redacted)"),
    "pause": ("/pause [reason]", "pause new entries"),
    "resume": ("/resume", "resume entries (also resets an escalation)"),
    "golive": ("/golive STRATEGY paper|shadow|live", "change a go-live stage (live: confirm)"),
    "close": ("/close TAG|all", "close a position (all: confirm)"),
    "backtest": ("/backtest STRATEGY FROM TO [KEY=V…]", "queue a backtest; answered when done"),
    "rerun_ai_market": ("/rerun_ai_market", "re-run the AI market analysis (confirm)"),
    "killswitch": ("/killswitch [reason]", "pause entries + Dhan's kill switch once flat "
                                           "(confirm)"),
    "confirm": ("/confirm CODE", "confirm the pending dangerous command with your TOTP code"),
}

HANDLERS: dict[str, Callable[[Ctx, tuple[str, ...]], str]] = {
    "help": cmd_help, "start": cmd_help, "status": cmd_status, "pnl": cmd_pnl,
    "positions": cmd_positions, "trades": cmd_trades, "get": cmd_get, "set": cmd_set,
    "settings": cmd_settings, "events": cmd_events, "why_blocked": cmd_why_blocked,
    "logs": cmd_logs, "pause": cmd_pause, "resume": cmd_resume, "golive": cmd_golive,
    "close": cmd_close, "backtest": cmd_backtest, "rerun_ai_market": cmd_rerun_ai_market,
    "killswitch": cmd_killswitch,
}


def dangerous(parsed: Parsed) -> bool:
    """Commands that wait for a TOTP confirmation."""
    a = tuple(x.lower() for x in parsed.args)
    return ((parsed.name == "golive" and len(a) == 2 and a[1] == "live")
            or (parsed.name == "close" and a == ("all",))
            or parsed.name in ("rerun_ai_market", "killswitch"))


def precheck(parsed: Parsed) -> None:
    """Refuse a dangerous command that could not run anyway, before asking for a code."""
    if parsed.name == "golive":
        golive_payload(parsed.args)
    elif parsed.name == "rerun_ai_market" and (problem := ai_market_problem()) is not None:
        raise Refused(problem)
