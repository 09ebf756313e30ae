"""EventBridgeActor: engine events out to other processes as small NOTIFY payloads
(channel 'engine_events'); the web's WebActor fans them out to WebSocket clients.

An observer: a failed NOTIFY is logged and dropped, never allowed to crash the engine.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.actors.base import SupervisedActor
from engine.bus.events import publish_event
from engine.messages.codec import message_fields
from engine.messages.events import (
    ActorEscalated,
    ActorRestarted,
    AlertRaised,
    BacktestFinished,
    EntryDenied,
    MarkedToMarket,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    RiskPaused,
    RiskResumed,
)

logger = logging.getLogger(__name__)

KINDS: dict[type, str] = {
    PositionOpened: "position_opened", PositionClosed: "position_closed", MarkedToMarket: "mtm",
    RiskPaused: "risk_paused", RiskResumed: "risk_resumed", ActorRestarted: "actor_restarted",
    ActorEscalated: "actor_restarted", BacktestFinished: "backtest_progress",
    EntryDenied: "entry_denied", OrderRejected: "order_rejected",
    # what the operator must know now (a trade put on hold, reconciliation, kill switch,
    # static IP, ...): the same text the chat channels get
    AlertRaised: "alert",
}
ALERT_TEXT_MAX = 1500  # characters: an alert always fits in one NOTIFY
SUBSCRIBED = tuple(KINDS)


class EventBridgeActor(SupervisedActor):
    def setup(self) -> None:
        self._pool = self.ctx.services["pool"]

    def handle(self, message: Any) -> Any:
        kind = KINDS.get(type(message))
        if kind is None:
            return super().handle(message)
        data = message_fields(message, exclude=("message_id", "correlation_id", "legs"))
        if isinstance(message, BacktestFinished):
            data["pct"] = 100
        elif isinstance(message, AlertRaised) and len(message.text) > ALERT_TEXT_MAX:
            data["text"] = message.text[:ALERT_TEXT_MAX] + "…"
        try:
            publish_event(self._pool, kind, data)
        except Exception as exc:
            logger.warning("could not publish %s to the web: %s", kind, exc)
        return None
