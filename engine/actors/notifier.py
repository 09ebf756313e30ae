"""NotifierActor: turns the events worth telling into messages on the configured channels.

Channels are adapters with ``send(text) -> None`` (log-only always; Telegram and Zoho Cliq
when enabled). A failing channel is logged and retried on the next message; it never takes
the actor down. Owns nothing durable except the chat outbox it drains (OTP codes from the web).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.actors.base import SupervisedActor
from engine.messages.commands import MonitorTick
from engine.messages.events import (
    ActorEscalated,
    ActorRestarted,
    AlertRaised,
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
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)

def describe(event: Any) -> str | None:
    """The one-line text for an event, or None when it is not worth telling."""
    match event:
        case PositionOpened(tag=tag, strategy=s, stage=stage, entry_premium=p):
            return f"OPENED {tag} [{s}, {stage}] net entry {p}"
        case PositionClosed(tag=tag, strategy=s, reason=r, realized_pnl=pnl):
            return f"CLOSED {tag} [{s}] P&L ₹{pnl} — {r}"
        case RiskPaused(reason=r):
            return f"RISK PAUSED new entries: {r}"
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
        case EntryDenied():
            return None
    return None


OUTBOX_MAX_AGE = timedelta(minutes=5)   # a login code is useless after five minutes
DELIVERED_TEXT = "[delivered; text removed]"
UNDELIVERED_TEXT = "[not delivered; text removed]"


@dataclass(frozen=True, slots=True)
class DrainOutbox:
    """Deliver pending chat_outbox rows now (told on NOTIFY 'chat_outbox')."""


class NotifierActor(SupervisedActor):
    def setup(self) -> None:
        self._channels = list(self.ctx.services.get("chat_channels") or [LogChannel()])
        self._pool = self.ctx.services.get("pool")

    def handle(self, message: Any) -> Any:
        if isinstance(message, DrainOutbox | MonitorTick):
            self._drain_outbox()
            return None
        text = describe(message)
        if text is None:
            return None
        for channel in self._channels:
            try:
                channel.send(text)
            except Exception as exc:
                logger.error("chat channel %s failed: %s", getattr(channel, "name", channel), exc)
        return None

    def _drain_outbox(self) -> None:
        """Send queued chat messages (dashboard login codes) once each, then scrub their text.

        Every row tried is scrubbed (its text may hold a login code), and labelled with what
        really happened: delivered rows get ``sent_at``; the others keep ``sent_at`` NULL and
        an ``error`` saying why (no channel secret, no message text) for the dashboard."""
        if self._pool is None:
            return
        by_name = {getattr(c, "name", ""): c for c in self._channels}
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT id, created_at, channel, text FROM chat_outbox WHERE sent_at IS NULL AND"
                " error IS NULL ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED").fetchall()
            for row in rows:
                channel = by_name.get(row["channel"])
                error = None
                if channel is None:
                    error = f"channel {row['channel']} is not configured in the engine"
                elif now_ist() - row["created_at"] > OUTBOX_MAX_AGE:  # wall clock: rows are real
                    error = "expired before delivery"
                else:
                    try:
                        channel.send(row["text"])
                    except Exception as exc:
                        error = _delivery_error(exc)
                if error is None:
                    conn.execute("UPDATE chat_outbox SET sent_at = now(), error = NULL,"
                                 " text = %s WHERE id = %s", (DELIVERED_TEXT, row["id"]))
                else:
                    logger.warning("chat outbox row %s not delivered via %s: %s", row["id"],
                                   row["channel"], error)
                    conn.execute("UPDATE chat_outbox SET sent_at = NULL, error = %s, text = %s"
                                 " WHERE id = %s", (error, UNDELIVERED_TEXT, row["id"]))


def _delivery_error(exc: Exception) -> str:
    """Why a send failed, fit to show on the login page: a ChatError's message names the
    channel and the HTTP status, never its URL or token; anything else only by type."""
    from engine.logsetup import redact

    if isinstance(exc, ChatError):
        return redact(str(exc))[:300]
    return f"{type(exc).__name__} while sending"
