"""MonitorActor: marks open positions to market every monitor cycle and closes them on the
exit rules (profit target, stop loss, time, expiry day). MFE/MAE ride on MarkedToMarket
events, which the executor persists. A close that got lost (executor restarted) is sent
again on a later cycle while the trade is still open: a close can be delayed, never lost.

With a ``positions`` service (``BROKER=dhan``) it also reconciles the live trades against the
broker's net positions every ``RECON_EVERY_CYCLES`` cycles (``engine.execution.reconcile``),
per security and product, over every open live trade (a trade's product from its order
intents): new findings are appended to reconciliation_audit, confirmed mismatches and orphans
are published as ``AlertRaised`` naming the position, and pause new entries (a position the
books do not explain). Nothing is adopted or removed from the books.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.execution import repository as trades_repo
from engine.execution.paper import NoQuote
from engine.execution.reconcile import PENDING, ReconState, reconcile
from engine.messages.commands import ClosePosition, MonitorTick, PauseEntries
from engine.messages.events import AlertRaised, MarkedToMarket, PositionClosed
from engine.settings import all_knobs
from engine.store.tx import transaction
from engine.strategies.exits import exit_reason, mark_to_market
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)

EXIT_KEYS = [k.key for k in all_knobs() if k.key.endswith(("_PCT", "_MAX_HOLD_MINUTES"))
             or k.key == "EXPIRY_DAY_EXIT_TIME"]
RESEND_AFTER_CYCLES = 2
HEARTBEAT_EVERY = timedelta(seconds=2)  # wall clock; an accelerated market ticks far faster


class MonitorActor(SupervisedActor):
    def setup(self) -> None:
        self._pool = self.ctx.services["pool"]
        self._market = self.ctx.services["market"]
        self._settings = self.ctx.services["settings"]
        self._heartbeat = self.ctx.services.get("heartbeat")
        self._closing: dict[str, int] = {}
        self._alerted_expired: set[str] = set()
        self._last_beat: datetime | None = None
        self._positions = self.ctx.services.get("positions")  # BROKER=dhan only
        self._recon = ReconState()
        self._recon_wait = 0

    def handle(self, message: Any) -> Any:
        match message:
            case MonitorTick(at=at):
                self._cycle(at)
            case PositionClosed(tag=tag):
                self._closing.pop(tag, None)
            case _:
                return super().handle(message)
        return None

    def _cycle(self, at: datetime) -> None:
        wall = now_ist()  # liveness is wall-clock, even on a simulated market
        if self._heartbeat is not None and (self._last_beat is None
                                            or wall - self._last_beat >= HEARTBEAT_EVERY):
            self._last_beat = wall
            self._heartbeat(wall, at)
        # open_trades is the source of truth: a PositionOpened lost to a crash cannot hide a trade
        params = self._settings.snapshot(EXIT_KEYS)
        for tag, trade in trades_repo.load_open(self._pool).items():
            try:
                mtm = mark_to_market(trade, self._market.quote)
            except NoQuote as exc:
                logger.warning("cannot mark %s: %s", tag, exc)
                self._unmarkable(trade, at, str(exc))
                continue
            self.publish(self.new(MarkedToMarket, trade_id=0, tag=tag, mtm=mtm))
            reason = exit_reason(trade, mtm, at, params)
            if reason is None or trade.hold:  # a held trade waits for the operator
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
        if self._positions is not None:
            self._maybe_reconcile()

    def _unmarkable(self, trade, at: datetime, why: str) -> None:
        """A trade with an expired leg has no quote any more: tell the operator once."""
        expired = any(leg.leg.expiry is not None and leg.leg.expiry < at.date()
                      for leg in trade.legs)
        if expired and trade.tag not in self._alerted_expired:
            self._alerted_expired.add(trade.tag)
            self.publish(self.new(
                AlertRaised, source="monitor",
                text=f"{trade.tag} holds a contract past its expiry and cannot be marked or "
                     f"closed automatically ({why}); settle it by hand"))

    def _maybe_reconcile(self) -> None:
        """Every RECON_EVERY_CYCLES cycles: broker positions vs the live trades in the books.

        Broker first, books second (a trade recorded in between is seen with its fills). A
        broker error skips the check; it does not count as one.
        """
        self._recon_wait += 1
        if self._recon_wait < int(self._settings.get("RECON_EVERY_CYCLES")):
            return
        self._recon_wait = 0
        try:
            broker = self._positions()
        except Exception as exc:
            logger.warning("reconciliation skipped: broker positions unavailable (%s: %s)",
                           exc.__class__.__name__, exc)
            return
        with self._pool.connection() as conn:  # the product each trade's orders were sent as
            products = {r["trade_tag"]: r["product"] for r in conn.execute(
                "SELECT DISTINCT ON (trade_tag) trade_tag, product FROM order_intents WHERE"
                " purpose = 'entry' ORDER BY trade_tag, id").fetchall()}
        result = reconcile(trades_repo.load_open(self._pool).values(), broker, self._recon,
                           products=products)
        if result.findings:
            with transaction(self._pool) as conn:
                for f in result.findings:
                    conn.execute(
                        "INSERT INTO reconciliation_audit (action, trade_tag, security_id,"
                        " details) VALUES (%s, %s, %s, %s)",
                        (f.action, ",".join(f.trade_tags) or None, f.security_id,
                         Jsonb(f.details())))
        self._recon = result.state  # only once audited: a failed write is retried next check
        for f in result.findings:
            logger.log(logging.INFO if f.action == PENDING else logging.WARNING,
                       "reconciliation %s: %s", f.action, f.text())
            if f.action != PENDING:
                self.publish(self.new(AlertRaised, source="reconciliation", text=f.text()))
                # no new entry while a broker position is unexplained
                self.send("risk", self.new(PauseEntries, reason=f"reconciliation: {f.text()}",
                                           source="reconciliation"))
        for tag in result.flat_candidates:
            text = (f"trade {tag} is flat at the broker on every leg (2 checks) but still open in "
                    "the books, where any close would send new orders. Not removed "
                    "(reconciliation is alert-only): settle it by hand")
            logger.warning("reconciliation: %s", text)
            self.publish(self.new(AlertRaised, source="reconciliation", text=text))
        for sid in result.resolved:
            logger.info("reconciliation: security %s agrees with the broker again", sid)
