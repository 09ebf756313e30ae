"""RiskActor: owns risk_envelope_state and runtime_state 'strategy_slots'.

Every entry intent passes through here: forwarded to the executor, or denied with a reason
(EntryDenied, which the scanner writes into the battle log). Every close updates the
counters; a breached limit pauses entries (RiskPaused) and the pause survives a restart.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.execution import repository as trades_repo
from engine.messages.commands import EndOfDayTick, OpenPosition, PauseEntries, ResumeEntries
from engine.messages.events import (
    EntryDenied,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    RiskPaused,
    RiskResumed,
)
from engine.risk import repository
from engine.risk.envelope import EnvelopeState, after_close, entry_denial
from engine.settings import all_knobs
from engine.store.tx import transaction

logger = logging.getLogger(__name__)

PENDING_TTL = timedelta(minutes=5)
LIMIT_KEYS = [k.key for k in all_knobs() if k.key.startswith("RISK_")]


class RiskActor(SupervisedActor):
    def setup(self) -> None:
        self._pool = self.ctx.services["pool"]
        self._settings = self.ctx.services["settings"]
        self._state: EnvelopeState = repository.load(self._pool)
        # open positions are always read from open_trades (the executor's table), never kept here
        trades = trades_repo.load_open(self._pool)
        held = sorted(t.tag for t in trades.values() if t.hold)
        if held and self._state.pause_reason is None:
            # the executor may have put a trade on hold before this actor was running
            self._set_pause(f"executor: trades on hold {held}; check the broker")
        # approved intents not yet confirmed by PositionOpened/OrderRejected, with approval time
        self._pending: dict[str, datetime] = {}
        self._save_slots(trades)

    def handle(self, message: Any) -> Any:
        match message:
            case OpenPosition():
                self._on_intent(message)
            case PositionOpened(tag=tag):
                self._pending.pop(tag, None)
                self._save_slots()
            case PositionClosed(tag=tag, realized_pnl=pnl):
                self._pending.pop(tag, None)
                if pnl is not None:
                    self._on_close(pnl)
                self._save_slots()
            case OrderRejected(tag=tag):
                self._pending.pop(tag, None)
            case PauseEntries(reason=reason, source=source):
                self._set_pause(f"{source}: {reason}")
            case ResumeEntries(reason=reason):
                self._resume(reason)
            case EndOfDayTick():
                self._pending.clear()
            case _:
                return super().handle(message)
        return None

    def _limits(self) -> dict[str, Any]:
        return self._settings.snapshot(LIMIT_KEYS)

    def _on_intent(self, intent: OpenPosition) -> None:
        now = self.clock.now()
        # count from open_trades (the source of truth) so a lost event cannot over-admit
        open_tags = set(trades_repo.load_open(self._pool))
        # an intent lost with a crashed executor must not hold a slot for the rest of the day
        self._pending = {tag: at for tag, at in self._pending.items()
                         if tag not in open_tags and now - at < PENDING_TTL}
        occupied = len(open_tags) + len(self._pending)
        reason = entry_denial(self._state, now, occupied, self._limits())
        if reason is None and (intent.tag in open_tags or intent.tag in self._pending):
            reason = f"tag {intent.tag} is already open"
        if reason is not None:
            logger.info("entry %s denied: %s", intent.tag, reason)
            self.publish(self.reply(EntryDenied, intent, strategy=intent.strategy, tag=intent.tag,
                                    reason=reason))
            return
        if not self.send("executor", intent):
            self.publish(self.reply(EntryDenied, intent, strategy=intent.strategy, tag=intent.tag,
                                    reason="executor unavailable (restarting); entry dropped"))
            return
        self._pending[intent.tag] = now

    def _on_close(self, pnl) -> None:
        before = self._state.paused(self.clock.now())
        self._state = after_close(self._state, pnl, self.clock.now(), self._limits())
        self._persist()
        after = self._state.paused(self.clock.now())
        if after and after != before:
            logger.warning("risk envelope paused entries: %s", after)
            self.publish(self.new(RiskPaused, reason=after, paused_until=self._state.paused_until))

    def _set_pause(self, reason: str) -> None:
        self._state = replace(self._state, pause_reason=reason, paused_until=None)
        self._persist()
        self.publish(self.new(RiskPaused, reason=reason, source="operator"))

    def _resume(self, reason: str) -> None:
        self._state = replace(self._state, pause_reason=None, paused_until=None)
        self._persist()
        self.publish(self.new(RiskResumed, reason=reason or "resumed"))

    def _persist(self) -> None:
        with transaction(self._pool) as conn:
            repository.save(conn, self._state)

    def _save_slots(self, trades: dict | None = None) -> None:
        """runtime_state 'strategy_slots', recomputed from open_trades (as the seeds say)."""
        trades = trades_repo.load_open(self._pool) if trades is None else trades
        used = sorted(t.tag for t in trades.values()
                      if t.strategy.startswith("DC") or t.strategy == "MDC")
        limit = self._settings.get("DC_FAMILY_SLOTS")
        value = {"dc_family": {"used": len(used), "limit": limit, "tags": used},
                 "open_positions": len(trades)}
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO runtime_state (key, value, updated_at) VALUES ('strategy_slots', %s,"
                " now()) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                (Jsonb(value),))
