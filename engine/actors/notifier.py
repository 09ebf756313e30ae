"""NotifierActor: turns the events worth telling into messages on the configured channels.

Channels are adapters with ``send(text) -> None`` (log-only always; Telegram and Zoho Cliq
when enabled). A failing channel is logged and retried on the next message; it never takes
the actor down. Owns nothing durable except the chat outbox it drains (OTP codes from the web).
"""

from __future__ import annotations

import logging
from typing import Any

from engine.actors.base import SupervisedActor
from engine.messages.events import (
    ActorEscalated,
    ActorRestarted,
    EntryDenied,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    RiskPaused,
    RiskResumed,
    TokenRefreshed,
    TokenRefreshFailed,
)
from engine.notify.channels import LogChannel

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
        case EntryDenied():
            return None
    return None


class NotifierActor(SupervisedActor):
    def setup(self) -> None:
        self._channels = list(self.ctx.services.get("chat_channels") or [LogChannel()])
        self.sent: list[str] = []

    def handle(self, message: Any) -> Any:
        text = describe(message)
        if text is None:
            return None
        for channel in self._channels:
            try:
                channel.send(text)
            except Exception as exc:
                logger.error("chat channel %s failed: %s", getattr(channel, "name", channel), exc)
        return None
