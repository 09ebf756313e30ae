"""ExecutorActor: turns approved intents into positions and closes them.

Owns open_trades, executions, closed_trades, metrics_days, trade_journal, go_live_state.
Each open and each close is one database transaction; a close for a tag that is not open
(or already closed today) is ignored, so a repeated ClosePosition can never double-count.
Stages: paper and shadow fill on the paper broker (shadow also logs the order it would have
sent); live goes to the configured live broker, and is refused when none is configured.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.execution import repository as repo
from engine.execution.paper import ExecutionRefused, UnhedgedExposure
from engine.execution.trades import OpenLeg, Trade
from engine.messages.commands import (
    ClosePosition,
    EndOfDayTick,
    GetStatus,
    OpenPosition,
    PauseEntries,
    SetGoLiveStage,
)
from engine.messages.events import AlertRaised, MarkedToMarket, OrderRejected, PositionClosed, PositionOpened
from engine.messages.legs import Leg, Side

logger = logging.getLogger(__name__)


class ExecutorActor(SupervisedActor):
    def setup(self) -> None:
        s = self.ctx.services
        self._pool = s["pool"]
        self._paper = s["paper_broker"]
        self._live = s.get("live_broker")
        self._market = s["market"]
        self._stages = repo.seed_go_live(self._pool, s.get("dry_run_flags", {}))
        self._open: dict[str, Trade] = repo.load_open(self._pool)
        # A live close that was in flight when the engine stopped may have filled at the broker:
        # never send it again automatically — hold the trade and tell the operator.
        for tag, trade in list(self._open.items()):
            if trade.closing and not trade.hold:
                self._open[tag] = replace(trade, hold="a live close was in flight when the engine "
                                          f"stopped ({trade.closing}); check the broker")
                self._alert_hold(self._open[tag])
        # the seeds' save semantics: open_trades replaced transactionally from our state
        repo.replace_open_trades(self._pool, self._open.values())

    def handle(self, message: Any) -> Any:
        match message:
            case OpenPosition():
                self._open_position(message)
            case ClosePosition(tag=tag, reason=reason) if tag is not None:
                self._close_position(message, tag, reason)
            case MarkedToMarket(tag=tag, mtm=mtm) if tag in self._open:
                marked = self._open[tag].marked(mtm)
                if marked != self._open[tag]:
                    self._open[tag] = marked
                    repo.save_marks(self._pool, marked)
            case SetGoLiveStage(strategy=strategy, stage=stage, reason=reason):
                old = repo.set_stage(self._pool, strategy, stage, reason or "operator", self.clock.now())
                self._stages[strategy] = stage
                logger.warning("go-live stage of %s changed %s -> %s", strategy, old, stage)
            case EndOfDayTick():
                self._end_of_day(message.trading_day)
            case GetStatus():
                return {"open": sorted(self._open), "stages": dict(self._stages)}
            case _:
                return super().handle(message)
        return None

    def _broker(self, stage: str):
        if stage in ("paper", "shadow"):
            return self._paper
        if stage == "live" and self._live is not None:
            return self._live
        return None

    def _open_position(self, intent: OpenPosition) -> None:
        stage = self._stages.get(intent.strategy, "paper")
        broker = self._broker(stage)
        if intent.tag in self._open:
            logger.info("ignoring duplicate open for %s", intent.tag)
            return
        if broker is None:
            self._reject(intent, f"strategy {intent.strategy} is in stage {stage!r}: no broker")
            return
        now = self.clock.now()
        try:
            fills = broker.execute(intent.legs, correlation_base=intent.tag, trade_date=now.date())
        except ExecutionRefused as exc:
            self._reject(intent, f"not executed: {exc}")
            return
        except UnhedgedExposure as exc:
            self._unhedged(intent.tag, exc)
            self._reject(intent, f"UNHEDGED EXPOSURE: {exc}")
            return
        if stage == "shadow":
            logger.info("SHADOW %s would send: %s", intent.tag,
                        [(f.leg.side.value, f.leg.security_id, f.leg.quantity) for f in fills])
        trade = Trade(tag=intent.tag, strategy=intent.strategy, mode=stage, trade_date=now.date(),
                      opened_at=now, direction=str(intent.params.get("direction", "")),
                      legs=tuple(OpenLeg(f.leg, f.price, f.charges.total) for f in fills),
                      context={k: v for k, v in intent.params.items() if k != "direction"})
        try:
            recorded = repo.record_open(self._pool, trade, fills, now)
        except Exception as exc:
            if stage != "live":
                raise
            self._unhedged(trade.tag, UnhedgedExposure(
                f"entry filled at the broker but could not be recorded ({type(exc).__name__})",
                open_legs=tuple((f.leg.security_id, f.leg.side.value, f.leg.quantity)
                                for f in fills)))
            return
        if not recorded:
            return
        self._open[trade.tag] = trade
        self.publish(self.reply(PositionOpened, intent, trade_id=0, strategy=trade.strategy,
                                tag=trade.tag, legs=tuple(f.leg for f in fills), stage=stage,
                                entry_premium=trade.entry_price))

    def _close_position(self, msg: ClosePosition, tag: str, reason: str) -> None:
        trade = self._open.get(tag)
        if trade is None:
            logger.info("close for %s ignored: not open (already closed?)", tag)
            return
        if trade.hold and not reason.startswith("manual close"):
            logger.warning("automatic close of %s (%s) refused: on hold — %s", tag, reason,
                           trade.hold)
            return
        broker = self._broker(trade.mode)
        if broker is None:
            # a live trade must never be "closed" on paper: the position would stay at the broker
            logger.critical("cannot close %s: no %s broker configured (BROKER=%s?)", tag,
                            trade.mode, "dhan" if trade.mode == "live" else trade.mode)
            self._hold(trade, f"no {trade.mode} broker configured to close it")
            return
        exit_legs = tuple(
            Leg(security_id=x.leg.security_id, side=Side.SELL if x.leg.side is Side.BUY else Side.BUY,
                quantity=x.leg.quantity, kind=x.leg.kind, option_type=x.leg.option_type,
                expiry=x.leg.expiry, strike=x.leg.strike) for x in trade.legs)
        now = self.clock.now()
        live = trade.mode == "live"
        if live:  # written before any order leaves, so a crash cannot lead to a second close
            trade = replace(trade, closing=now.isoformat())
            repo.save_marks(self._pool, trade)
            self._open[tag] = trade
        try:
            fills = broker.execute(exit_legs, correlation_base=f"{tag}-X", trade_date=now.date())
        except ExecutionRefused as exc:
            logger.error("cannot close %s now (%s); the monitor will retry", tag, exc)
            if live:  # nothing was left open: the close may be tried again
                self._open[tag] = replace(trade, closing=None)
                repo.save_marks(self._pool, self._open[tag])
            return
        except UnhedgedExposure as exc:
            self._unhedged(tag, exc)
            self._hold(trade, f"close left unhedged legs: {exc.open_legs}")
            return
        spot = None
        try:
            spot = Decimal(repr(self._market.snapshot().spot)).quantize(Decimal("0.01"))
        except Exception:
            logger.debug("no spot for the journal of %s", tag)
        try:
            result = repo.record_close(self._pool, trade, fills, now, reason, {"exit_spot": spot})
        except Exception as exc:
            if not live:
                raise
            self._unhedged(tag, UnhedgedExposure(
                f"exit filled at the broker but could not be recorded ({type(exc).__name__})",
                open_legs=()))
            self._hold(trade, "exit filled at the broker but was not recorded; check the broker")
            return
        del self._open[tag]
        if result.recorded:
            self.publish(self.reply(PositionClosed, msg, trade_id=0, strategy=trade.strategy,
                                    tag=tag, reason=reason, realized_pnl=result.realized_pnl
                                    .quantize(Decimal("0.01"))))

    def _hold(self, trade: Trade, why: str) -> None:
        """Suspend automatic closes of ``trade`` until an operator closes it by hand."""
        held = replace(trade, hold=why)
        self._open[trade.tag] = held
        try:
            repo.save_marks(self._pool, held)
        except Exception:
            logger.exception("could not persist the hold on %s", trade.tag)
        self._alert_hold(held)

    def _alert_hold(self, trade: Trade) -> None:
        logger.critical("trade %s on hold: %s", trade.tag, trade.hold)
        self.publish(self.new(AlertRaised, source="executor",
                              text=f"{trade.tag} on hold: {trade.hold}. Automatic exits are "
                                   "suspended; close it from the dashboard once the broker "
                                   "position is checked."))
        self.send("risk", self.new(PauseEntries, reason=f"{trade.tag} on hold: {trade.hold}",
                                   source="executor"))

    def _unhedged(self, tag: str, exc: UnhedgedExposure) -> None:
        """Legs may be open at the broker outside our books: stop entries, tell a human."""
        logger.critical("NAKED LEG(S) for %s at the broker: %s — close them by hand", tag,
                        exc.open_legs)
        self.send("risk", self.new(PauseEntries, reason=f"unhedged legs for {tag}: {exc.open_legs}",
                                   source="executor"))

    def _reject(self, intent: OpenPosition, reason: str) -> None:
        logger.warning("order for %s rejected: %s", intent.tag, reason)
        self.publish(self.reply(OrderRejected, intent, strategy=intent.strategy, tag=intent.tag,
                                reason=reason))

    def _end_of_day(self, day) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO metrics_days (trade_date, session_stats) VALUES (%s, %s)"
                " ON CONFLICT (trade_date) DO UPDATE SET session_stats = EXCLUDED.session_stats,"
                " updated_at = now()",
                (day, Jsonb({"open_positions_at_close": sorted(self._open),
                             "stages": self._stages})))
