"""NotifierActor: turns the events worth telling into chat messages and delivers the outbox.

Every message is a ``chat_outbox`` row (engine.chat.outbox): an event is queued once (its
``message_id`` is the de-duplication key, so a redelivered event is not told twice), then the
outbox is drained through the channel registry — primary channel (CHAT_PRIMARY), then the
fallback when the primary is unreachable or fails; the row records which channel delivered,
and an undelivered row is retried on the next drain (monitor tick or NOTIFY 'chat_outbox').
Login-code rows from the web are bound to one channel and scrubbed after one try.

How loud each kind of event is comes from the settings NOTIFY_<KIND> (on / silent / off):
opens, closes (P&L, reason), risk pauses and resumes, alerts (holds, naked legs, ...),
rejected orders, token problems, restarts and escalations, finished backtests, and the daily
summary after the close (EndOfDayTick). A failing channel never takes the actor down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from engine.actors.base import SupervisedActor
from engine.chat import outbox
from engine.chat.outbox import DELIVERED_TEXT, OUTBOX_MAX_AGE, UNDELIVERED_TEXT  # noqa: F401
from engine.chat.registry import ChannelRegistry
from engine.messages.commands import EndOfDayTick, MonitorTick
from engine.messages.events import (
    ActorEscalated,
    ActorRestarted,
    AlertRaised,
    BacktestFinished,
    EntryDenied,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    RiskPaused,
    RiskResumed,
    TokenRefreshed,
    TokenRefreshFailed,
)
from engine.notify.channels import ChatError, LogChannel

logger = logging.getLogger(__name__)

LEVELS = ("on", "silent", "off")


def describe(event: Any) -> str | None:
    """The one-line text for an event, or None when it is not worth telling."""
    match event:
        case PositionOpened(tag=tag, strategy=s, stage=stage, entry_premium=p):
            return f"OPENED {tag} [{s}, {stage}] net entry {p}"
        case PositionClosed(tag=tag, strategy=s, reason=r, realized_pnl=pnl):
            return f"CLOSED {tag} [{s}] P&L ₹{pnl} — {r}"
        case RiskPaused(reason=r, stage=stage):
            return f"RISK PAUSED new {stage + ' ' if stage else ''}entries: {r}"
        case RiskResumed(reason=r):
            return f"RISK RESUMED entries: {r}"
        case OrderRejected(tag=tag, reason=r):
            return f"ORDER REJECTED {tag}: {r}"
        case ActorRestarted(name=n, attempt=a):
            return f"actor {n} restarted (attempt {a})"
        case ActorEscalated(name=n, level=lvl, reason=r):
            return f"ESCALATION level {lvl} by {n}: {r}"
        case TokenRefreshed(expires_at=e):
            return f"Dhan token refreshed, valid until {e:%Y-%m-%d %H:%M} IST" if e else None
        case TokenRefreshFailed(reason=r):
            return f"Dhan token refresh FAILED: {r}"
        case AlertRaised(source=source, text=text):
            return f"ALERT [{source}] {text}"
        case BacktestFinished(status=status, run_id=run_id, job_id=job_id, strategy=s,
                              start=start, end=end, summary=summary):
            what = f"run {run_id}" if run_id is not None else f"grid job {job_id}"
            net = summary.get("net_pnl") if summary else None
            return (f"BACKTEST {what} {s} {start} .. {end}: {status}"
                    + (f", net P&L ₹{net}" if net is not None else ""))
        case EntryDenied():
            return None
    return None


#: event class -> the NOTIFY_<KIND> setting that decides how loud it is
KINDS: dict[type, str] = {
    PositionOpened: "OPENS", PositionClosed: "CLOSES", RiskPaused: "RISK",
    RiskResumed: "RISK", AlertRaised: "ALERTS", OrderRejected: "ORDERS",
    TokenRefreshed: "TOKEN", TokenRefreshFailed: "TOKEN", ActorRestarted: "RESTARTS",
    ActorEscalated: "RESTARTS", BacktestFinished: "BACKTEST",
}


KEEP_DAYS = 30
PRUNE_SQL = (
    "DELETE FROM chat_outbox WHERE created_at < now() - make_interval(days => %s)"
    " AND (sent_at IS NOT NULL OR error IS NOT NULL)",
    "DELETE FROM chat_inbound WHERE received_at < now() - make_interval(days => %s)",
    "DELETE FROM chat_confirmations WHERE created_at < now() - make_interval(days => %s)"
    " AND status <> 'pending'",
    "DELETE FROM chat_followups WHERE created_at < now() - make_interval(days => %s)"
    " AND done_at IS NOT NULL",
)


@dataclass(frozen=True, slots=True)
class DrainOutbox:
    """Deliver pending chat_outbox rows now (told on NOTIFY 'chat_outbox')."""


def daily_summary(conn: Any, day: date) -> str:
    """The after-the-close message: the day's closes, P&L, what is still open, any pause."""
    row = conn.execute(
        "SELECT count(*) AS n, coalesce(sum(realized_pnl), 0) AS pnl,"
        " count(*) FILTER (WHERE realized_pnl > 0) AS wins FROM closed_trades"
        " WHERE trade_date = %s", (day,)).fetchone()
    opened = conn.execute("SELECT count(*) AS n FROM open_trades").fetchone()["n"]
    risk = conn.execute("SELECT pause_reason FROM risk_envelope_state WHERE id = 1").fetchone()
    pnl = Decimal(str(row["pnl"])).quantize(Decimal("0.01"))
    text = (f"DAILY SUMMARY {day}: {row['n']} trade(s) closed, {row['wins']} won, net P&L "
            f"₹{pnl}; {opened} position(s) open")
    if risk and risk["pause_reason"]:
        text += f"; entries paused: {risk['pause_reason']}"
    return text


class NotifierActor(SupervisedActor):
    def setup(self) -> None:
        self._channels = list(self.ctx.services.get("chat_channels") or [LogChannel()])
        self._pool = self.ctx.services.get("pool")
        self._settings = self.ctx.services.get("settings")
        self._registry = self.ctx.services.get("chat_registry") or ChannelRegistry(
            self._channels, primary=self._primary)

    def _primary(self) -> str:
        return str(self._settings.get("CHAT_PRIMARY")) if self._settings else "telegram"

    def level(self, kind: str) -> str:
        if self._settings is None:
            return "on"
        try:
            value = str(self._settings.get(f"NOTIFY_{kind}"))
        except Exception as exc:
            logger.warning("notification level NOTIFY_%s unreadable (%s): on", kind, exc)
            return "on"
        return value if value in LEVELS else "on"

    def handle(self, message: Any) -> Any:
        if isinstance(message, DrainOutbox | MonitorTick):
            self._drain()
            return None
        if isinstance(message, EndOfDayTick):
            self._daily_summary(message.trading_day)
            self._prune()
            return None
        text = describe(message)
        if text is None:
            return None
        level = self.level(KINDS.get(type(message), "ALERTS"))
        if level == "off":
            return None
        # the event's id and time: a redelivered event is told once, while seeded ids that
        # repeat in a later (simulated) run still get their own rows
        key = f"event:{type(message).__name__}:{message.message_id}:{message.ts.isoformat()}"
        self._tell(text, dedup_key=key[:300], silent=level == "silent")
        return None

    def _tell(self, text: str, *, dedup_key: str, silent: bool) -> None:
        if self._pool is None:  # no database (unit wiring): straight to the registry
            try:
                self._registry.deliver(text, silent=silent)
            except ChatError as exc:
                logger.error("chat delivery failed: %s", exc)
            return
        try:
            with self._pool.connection() as conn, conn.transaction():
                outbox.queue(conn, text, channel=self._registry.primary() or "log",
                             dedup_key=dedup_key, silent=silent)
        except Exception as exc:
            logger.error("chat outbox unavailable (%s); sending directly", type(exc).__name__)
            try:
                self._registry.deliver(text, silent=silent)
            except ChatError as err:
                logger.error("chat delivery failed: %s", err)
            return
        self._drain()

    def _daily_summary(self, day: date) -> None:
        level = self.level("DAILY_SUMMARY")
        if level == "off" or self._pool is None:
            return
        with self._pool.connection() as conn:
            text = daily_summary(conn, day)
        self._tell(text, dedup_key=f"daily-summary:{day.isoformat()}", silent=level == "silent")

    def _prune(self) -> None:
        """Forget chat rows older than KEEP_DAYS that are finished (delivered or given up)."""
        if self._pool is None:
            return
        with self._pool.connection() as conn, conn.transaction():
            for sql in PRUNE_SQL:
                conn.execute(sql, (KEEP_DAYS,))

    def _drain(self) -> None:
        if self._pool is None:
            return
        outbox.drain(self._pool, self._registry)
