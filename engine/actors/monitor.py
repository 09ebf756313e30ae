"""MonitorActor: marks open positions to market every monitor cycle and closes them on the
exit rules (profit target, stop loss, time, expiry day). MFE/MAE ride on MarkedToMarket
events, which the executor persists. A close that got lost (executor restarted) is sent
again on a later cycle while the trade is still open: a close can be delayed, never lost.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from engine.actors.base import SupervisedActor
from engine.execution import repository as trades_repo
from engine.execution.paper import NoQuote
from engine.execution.trades import Trade
from engine.messages.commands import ClosePosition, EndOfDayTick, MonitorTick
from engine.messages.events import MarkedToMarket, PositionClosed, PositionOpened
from engine.settings import all_knobs
from engine.strategies.exits import exit_reason, mark_to_market
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)

EXIT_KEYS = [k.key for k in all_knobs() if k.key.endswith(("_PCT", "_MAX_HOLD_MINUTES"))
             or k.key == "EXPIRY_DAY_EXIT_TIME"]
RESEND_AFTER_CYCLES = 2


class MonitorActor(SupervisedActor):
    def setup(self) -> None:
        self._pool = self.ctx.services["pool"]
        self._market = self.ctx.services["market"]
        self._settings = self.ctx.services["settings"]
        self._heartbeat = self.ctx.services.get("heartbeat")
        self._trades: dict[str, Trade] = trades_repo.load_open(self._pool)
        self._closing: dict[str, int] = {}

    def handle(self, message: Any) -> Any:
        match message:
            case MonitorTick(at=at):
                self._cycle(at)
            case PositionOpened(tag=tag):
                self._trades = trades_repo.load_open(self._pool) | {}
                if tag not in self._trades:
                    logger.warning("opened trade %s not found in open_trades", tag)
            case PositionClosed(tag=tag):
                self._trades.pop(tag, None)
                self._closing.pop(tag, None)
            case EndOfDayTick():
                self._trades = trades_repo.load_open(self._pool)
            case _:
                return super().handle(message)
        return None

    def _cycle(self, at: datetime) -> None:
        if self._heartbeat is not None:
            self._heartbeat(now_ist())  # liveness is wall-clock, even on a simulated market
        # open_trades is the source of truth: a PositionOpened lost to a crash cannot hide a trade
        self._trades = trades_repo.load_open(self._pool)
        params = self._settings.snapshot(EXIT_KEYS)
        for tag, trade in list(self._trades.items()):
            try:
                mtm = mark_to_market(trade, self._market.quote)
            except NoQuote as exc:
                logger.warning("cannot mark %s: %s", tag, exc)
                continue
            self._trades[tag] = trade.marked(mtm)
            self.publish(self.new(MarkedToMarket, trade_id=0, tag=tag, mtm=mtm))
            reason = exit_reason(trade, mtm, at, params)
            if reason is None:
                continue
            waited = self._closing.get(tag)
            if waited is None or waited >= RESEND_AFTER_CYCLES:
                if waited is not None:
                    logger.warning("close of %s not confirmed after %d cycles: sending again",
                                   tag, waited)
                self._closing[tag] = 0
                self.send("executor", self.new(ClosePosition, tag=tag, reason=reason))
            else:
                self._closing[tag] = waited + 1
