"""MonitorActor: marks open positions to market every monitor cycle and closes them on the
exit rules (profit target, stop loss, time, expiry day). MFE/MAE ride on MarkedToMarket
events, which the executor persists. A close that got lost (executor restarted) is sent
again on a later cycle while the trade is still open: a close can be delayed, never lost.

With a ``positions`` service (``BROKER=dhan``) it also reconciles the live trades against the
broker's net positions every ``RECON_EVERY_CYCLES`` cycles (``engine.execution.reconcile``),
per security and product, over every open live trade (a trade's product from its order
intents): new findings are appended to reconciliation_audit, confirmed mismatches and orphans
are published as ``AlertRaised`` naming the position, and pause new entries (a position the
books do not explain). Auto-heal (``engine.execution.recon_heal``, booked by the executor
with its audit row in one transaction): a confirmed orphan NIFTY F&O position is sent as
``AdoptPosition`` (``RECON_ADOPT_ORPHANS``; otherwise alerted only), a confirmed mismatch the
trade book explains as a partial exit by hand as ``HealPartialExit``. A check that cannot
read the broker changes nothing and is retried; until the first checks after start have
reconciled (books and broker agree, or the differences are recorded on the second check), the
start-up gate keeps live entries out (the RiskActor asks it).

Closes the broker makes (``engine.execution.broker_closes``): on each check, a live trade
whose every leg the broker closed by itself — an RMS square-off, a P&L exit, the 15:20
square-off of an INTRADAY position (trades in ``GET /trades`` that are not the engine's
orders) or the settlement of an expired contract (gone from ``/positions``; priced from the
settlement-price source) — is sent to the executor as ``BookBrokerClose`` once the same
decision holds on two checks; a trade only partly closed at the broker (or sharing a security
whose netting cannot say whose quantity went) is sent ``HoldTrade`` with the exposure named.
A confirmed surplus short at the broker (no unsettled order on the security) is sent as
``FlattenSurplus`` (the executor buys it back); a surplus long is alerted only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.execution import recon_heal
from engine.execution import repository as trades_repo
from engine.execution.broker_closes import BrokerCloses, BrokerFill, CloseState, decide
from engine.execution.paper import NoQuote
from engine.execution.reconcile import (
    CONFIRM_AFTER,
    DEFAULT_PRODUCT,
    ORPHAN,
    PENDING,
    ReconState,
    book_positions,
    broker_net,
    reconcile,
)
from engine.execution.settlement import session_close_of, settlement_source
from engine.execution.trades import Trade
from engine.market.calendar import NseCalendar
from engine.messages.commands import (
    AdoptPosition,
    BookBrokerClose,
    ClosePosition,
    FlattenSurplus,
    HealPartialExit,
    HoldTrade,
    MonitorTick,
    PauseEntries,
    SuspendExits,
)
from engine.messages.events import AlertRaised, MarkedToMarket, PositionClosed
from engine.settings import all_knobs
from engine.store.tx import transaction
from engine.strategies import registry
from engine.strategies.exits import exit_reason, mark_to_market
from engine.strategies.market_view import MarketView
from engine.strategies.registry import specs
from engine.strategies.view_cache import shared as snapshot_views
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)

#: what the exit rules read: every strategy's own knobs and the shared expiry-day time
EXIT_KEYS = sorted({k for spec in specs() for k in spec.param_keys}
                   | {"EXPIRY_DAY_EXIT_TIME", "DC_FAMILY_SLOTS"}
                   | {k.key for k in all_knobs() if k.key.endswith("_PCT")})
RESEND_AFTER_CYCLES = 2
HEARTBEAT_EVERY = timedelta(seconds=2)  # wall clock; an accelerated market ticks far faster
_UNAVAILABLE = object()  # the broker's trade book could not be read


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
        self._live = self.ctx.services.get("live_broker")
        # the start-up gate (BROKER=dhan): shut until this process has reconciled
        self._gate = recon_heal.gate_of(self.ctx.services) if self._positions is not None \
            else None
        self._recon_clean = 0
        self._gate_alerted = False
        self._last_check: dict[str, Any] = {}
        self._calendar = self.ctx.services.get("calendar")
        self._closes = CloseState()
        self._settlement = self.ctx.services.get("settlement_price") or settlement_source(
            self._market, calendar=self._calendar, now=self.clock.now)

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
        open_trades = trades_repo.load_open(self._pool)
        view = self._view(at) if open_trades else None
        params["_calendar"] = self._current_calendar()
        for tag, trade in open_trades.items():
            gone = [x.leg for x in trade.legs if x.leg.expiry is not None
                    and at >= self._session_close(x.leg.expiry)]
            if gone and trade.mode != "live" and not trade.hold:
                # paper / shadow: the executor settles the expired legs (a live trade's
                # settlement is the broker's, booked from its positions below)
                self._request_close(tag, "expiry settlement: " + ", ".join(sorted(
                    {f"{leg.expiry} expiry" for leg in gone})))
                continue
            try:
                mtm = mark_to_market(trade, self._market.quote)
            except NoQuote as exc:
                logger.warning("cannot mark %s: %s", tag, exc)
                self._unmarkable(trade, at, str(exc))
                continue
            self.publish(self.new(MarkedToMarket, trade_id=0, tag=tag, mtm=mtm))
            reason = self._exit_reason(trade, mtm, view, at, params)
            if reason is None or trade.hold:  # a held trade waits for the operator
                continue
            if tag in self._closes.seen:  # the broker seems to have closed it: no new orders
                logger.warning("exit of %s (%s) not sent: the broker seems to have closed it by "
                               "itself (being confirmed)", tag, reason)
                continue
            self._request_close(tag, reason)
        if self._positions is not None:
            self._maybe_reconcile()

    def _request_close(self, tag: str, reason: str) -> None:
        """Ask the executor to close ``tag``; again only after RESEND_AFTER_CYCLES cycles
        without its PositionClosed."""
        waited = self._closing.get(tag)
        if waited is None or waited >= RESEND_AFTER_CYCLES:
            if waited is not None:
                logger.warning("close of %s not confirmed after %d cycles: sending again",
                               tag, waited)
            self._closing[tag] = 0
            self.send("executor", self.new(ClosePosition, tag=tag, reason=reason))
        else:
            self._closing[tag] = waited + 1

    def _current_calendar(self) -> NseCalendar:
        cal = self._calendar
        cal = cal.current() if hasattr(cal, "current") else cal
        return cal or NseCalendar()

    def _view(self, at: datetime) -> MarketView | None:
        """The market as the strategies' exit rules see it (chains, exit-side quotes)."""
        try:
            # the scanner's view when it is the same snapshot (engine.strategies.view_cache)
            return snapshot_views.view(self._market.snapshot(), self._current_calendar())
        except Exception as exc:  # no view, no rule fires on a stale mark (time rules wait)
            logger.warning("no market view for the exit rules at %s: %s", at, exc)
            return None

    @staticmethod
    def _exit_reason(trade: Trade, mtm, view: MarketView | None, at: datetime,
                     params: dict[str, Any]) -> str | None:
        """The trade's own strategy's exit rule (a trade of a strategy no longer registered,
        e.g. imported history: the generic target/stop/time rule)."""
        try:
            spec = registry.get(trade.strategy)
        except registry.UnknownStrategy:
            return exit_reason(trade, mtm, at, params)
        if view is None:
            return None
        try:
            return spec.exit_rule(trade, view, at, params)
        except (ValueError, KeyError, LookupError) as exc:
            logger.warning("exit rule of %s (%s) cannot judge %s: %s", trade.strategy,
                           type(exc).__name__, trade.tag, exc)
            return None

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
        """Every RECON_EVERY_CYCLES cycles (every cycle until the start-up reconciliation is
        done): broker positions vs the live trades in the books, then the heals
        (``engine.execution.recon_heal``).

        Everything the check needs from the broker is read first — positions, then (when the
        books and the broker differ) the trade book; a broker error skips the whole check: it
        changes nothing, does not count as a check, and is retried next cycle.
        """
        gate = self._gate
        self._recon_wait += 1
        every = 1 if gate is not None and not gate.done else int(
            self._settings.get("RECON_EVERY_CYCLES"))
        if self._recon_wait < every:
            return
        self._recon_wait = 0
        try:
            broker = self._positions()
        except Exception as exc:
            self._recon_failed("broker positions unavailable", exc)
            return
        # after the positions: an order that had filled when they were read was written
        # (intent first) before, so it shows here as unsettled or is booked by now
        with self._pool.connection() as conn:  # the product each trade's orders were sent as
            products = {r["trade_tag"]: r["product"] for r in conn.execute(
                "SELECT DISTINCT ON (trade_tag) trade_tag, product FROM order_intents WHERE"
                " purpose = 'entry' ORDER BY trade_tag, id").fetchall()}
            unsettled = [(r["trade_tag"], r["security_id"]) for r in conn.execute(
                "SELECT trade_tag, security_id FROM order_intents WHERE settled_at IS NULL"
                " AND NOT sliced").fetchall()]
            # securities of the engine's own orders whose trade is not in the books yet (an
            # entry in flight or in doubt, a fill not recorded): never an orphan to adopt
            in_flight = {r["security_id"] for r in conn.execute(
                "SELECT DISTINCT i.security_id FROM order_intents i WHERE i.trade_date >="
                " (SELECT max(trade_date) FROM order_intents) - 7 AND NOT EXISTS (SELECT 1 FROM open_trades o WHERE"
                " o.tag = i.trade_tag) AND (i.settled_at IS NULL OR NOT EXISTS (SELECT 1 FROM"
                " closed_trades c WHERE c.tag = i.trade_tag))").fetchall()}
        open_trades = trades_repo.load_open(self._pool)
        for tag, trade in open_trades.items():  # an adopted trade has no entry intents
            if tag not in products and trade.context.get("product"):
                products[tag] = str(trade.context["product"])
        fills = self._trade_book_if_needed(open_trades, broker, products)
        if fills is _UNAVAILABLE:
            return
        busy = {sid for _, sid in unsettled}
        result = reconcile(open_trades.values(), broker, self._recon, products=products,
                           busy=busy)
        adopt = self._adoptable(result) if result.state.sightings else {}
        adopt = {k: v for k, v in adopt.items() if k[0] not in in_flight}
        heals = self._partial_heals(open_trades, broker, fills, products, result, unsettled)
        healed = {h.tag for h in heals}
        audited = [f for f in result.findings
                   if not (f.action == ORPHAN and (f.security_id, f.product) in adopt)]
        if audited:
            with transaction(self._pool) as conn:
                for f in audited:
                    conn.execute(
                        "INSERT INTO reconciliation_audit (action, trade_tag, security_id,"
                        " details) VALUES (%s, %s, %s, %s)",
                        (f.action, ",".join(f.trade_tags) or None, f.security_id,
                         Jsonb(f.details())))
        self._recon = result.state  # only once audited: a failed write is retried next check
        for heal in heals:  # the executor books it with its audit row (one transaction)
            logger.warning("reconciliation: %s: %s (healing)", heal.tag, heal.reason)
            self.send("executor", self.new(HealPartialExit, tag=heal.tag, reason=heal.reason,
                                           legs=heal.legs, books=heal.books))
        for (sid, product), (leg, details) in adopt.items():
            self.send("executor", self.new(
                AdoptPosition, tag=recon_heal.adopted_tag(sid, self.clock.now()), legs=(leg,),
                product=product, details=details,
                reason=(f"reconciliation: broker holds {details['broker']:+d} of security {sid} "
                        f"({product}) that no live trade holds ({details['checks']} checks)")))
        closes = self._broker_closes({t: x for t, x in open_trades.items() if t not in healed},
                                     broker, products, unsettled, fills or [])
        handled = set(closes.decided + closes.pending) if closes is not None else set()
        # a surplus is said in the alert of its confirmed mismatch (one alert per event)
        surplus_of = {(x.security_id, x.product): x for x in
                      result.buy_backs + result.surplus_longs}
        for f in audited:
            logger.log(logging.INFO if f.action == PENDING else logging.WARNING,
                       "reconciliation %s: %s", f.action, f.text())
            if f.action != PENDING and not (f.trade_tags and set(f.trade_tags) <= healed):
                extra = surplus_of.pop((f.security_id, f.product), None)
                text = f.text() + (f"; {extra.text()}" if extra is not None else "")
                self.publish(self.new(AlertRaised, source="reconciliation", text=text))
                # no new entry while a broker position is unexplained
                self.send("risk", self.new(PauseEntries, reason=f"reconciliation: {f.text()}",
                                           source="reconciliation"))
        for surplus in result.surplus_longs:
            logger.warning("reconciliation: %s", surplus.text())
            if (surplus.security_id, surplus.product) in surplus_of:
                self.publish(self.new(AlertRaised, source="reconciliation",
                                      text=surplus.text()))
        for surplus in result.buy_backs:  # the executor checks again, buys, and says so
            logger.warning("reconciliation: %s", surplus.text())
            self.send("executor", self.new(
                FlattenSurplus, security_id=surplus.security_id, product=surplus.product,
                quantity=surplus.quantity, expected=surplus.expected, broker=surplus.broker,
                reason=surplus.text()))
        for tag in result.flat_candidates:
            if tag in handled:  # a broker close booked or held: said there
                continue
            text = (f"trade {tag} is flat at the broker on every leg (2 checks) but still open in "
                    "the books, and the broker's trade book does not explain it: not removed "
                    "(any close would send new orders); settle it by hand")
            logger.warning("reconciliation: %s", text)
            self.publish(self.new(AlertRaised, source="reconciliation", text=text))
        for sid in result.resolved:
            logger.info("reconciliation: security %s agrees with the broker again", sid)
        self._recon_done(result, closes, heals, adopt)

    def _trade_book_if_needed(self, open_trades: dict[str, Trade], broker: dict,
                              products: dict) -> Any:
        """The broker's trade book as ``BrokerFill`` rows when the books and the broker
        differ (``None`` when they agree or no trade book is available); ``_UNAVAILABLE``
        when it could not be read (the check is skipped)."""
        live = [t for t in open_trades.values() if t.mode == "live"]
        now = self.clock.now()
        expected, _ = book_positions(live, products)
        net = broker_net(broker)
        differs = any(net.get(k, 0) != expected.get(k, 0) for k in set(net) | set(expected)) \
            or any(x.leg.expiry is not None and now >= self._session_close(x.leg.expiry)
                   for t in live for x in t.legs)
        book = getattr(self._live, "trade_book", None)
        if not differs or book is None:
            return None
        try:
            return [BrokerFill.from_trade(t) for t in book()]
        except Exception as exc:
            self._recon_failed("broker trade book unavailable", exc)
            return _UNAVAILABLE

    def _recon_failed(self, what: str, exc: Exception) -> None:
        """A check that could not read the broker: nothing changed; retried next cycle."""
        logger.warning("reconciliation skipped: %s (%s: %s)", what, exc.__class__.__name__, exc)
        gate = self._gate
        if gate is not None and not gate.done:
            why = (f"start-up reconciliation failed ({what}: {exc.__class__.__name__}); "
                   "retrying every monitor cycle")
            gate.waiting(why)
            self._recon_clean = 0
            if not self._gate_alerted:
                self._gate_alerted = True
                self.publish(self.new(AlertRaised, source="reconciliation",
                                      text=f"{why}: no live entry until it succeeds"))
            self._save_gate(why)

    def _adoptable(self, result: Any) -> dict[tuple[str, str], tuple[Any, dict[str, Any]]]:
        """Confirmed orphans (two checks or more) to adopt: NIFTY F&O, of the product the
        live broker sends, with ``RECON_ADOPT_ORPHANS`` on. ``{(sid, product): (leg, audit
        details)}``; an orphan that cannot be adopted stays an ``ORPHAN_ALERT``."""
        orphans = {k: v for k, v in result.state.sightings.items()
                   if v.kind == "orphan" and v.count >= CONFIRM_AFTER}
        if not orphans or not bool(self._settings.get("RECON_ADOPT_ORPHANS")):
            return {}
        rows_of = getattr(self._positions, "rows", None)
        product_sent = getattr(self._live, "product_type", DEFAULT_PRODUCT)
        if rows_of is None:
            return {}
        try:
            rows = {(p.security_id, p.product_type or DEFAULT_PRODUCT): p for p in rows_of()}
        except Exception as exc:
            logger.warning("orphan adoption not decided: positions unavailable (%s)", exc)
            return {}
        out: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
        for name, seen in orphans.items():
            sid, product = name.rsplit(":", 1)
            row = rows.get((sid, product))
            if row is None or product != product_sent or int(row.net_qty) != seen.broker:
                continue
            try:
                leg, price = recon_heal.adoption_legs(row)
            except ValueError as exc:
                logger.info("orphan %s not adoptable: %s", name, exc)
                continue
            out[(sid, product)] = (leg, {
                "security_id": sid, "product": product, "broker": seen.broker,
                "checks": seen.count, "average_price": str(price),
                "trading_symbol": row.trading_symbol, "kind": leg.kind.value,
                "option_type": leg.option_type.value if leg.option_type else None,
                "strike": str(leg.strike) if leg.strike is not None else None,
                "expiry": leg.expiry.isoformat() if leg.expiry else None})
        return out

    def _partial_heals(self, open_trades: dict[str, Trade], broker: dict, fills: Any,
                       products: dict, result: Any, unsettled: list[tuple[str, str]]) -> list:
        """Confirmed mismatches the trade book explains as partial exits by hand."""
        confirmed = [k for k, v in result.state.sightings.items()
                     if v.kind == "mismatch" and v.count >= CONFIRM_AFTER]
        if not confirmed or not fills:
            return []
        live = [t for t in open_trades.values() if t.mode == "live"]
        return recon_heal.partial_heals(
            live, broker_net(broker), fills, known_order_ids=self._known_order_ids(live),
            products=products, confirmed=confirmed,
            busy={x for pair in unsettled for x in pair})

    def _known_order_ids(self, live: list[Trade]) -> set[str]:
        if not live:
            return set()
        since = min(t.trade_date for t in live)
        with self._pool.connection() as conn:
            return {r["order_id"] for r in conn.execute(
                "SELECT order_id FROM order_intents WHERE order_id IS NOT NULL AND trade_date"
                " >= %s UNION SELECT unnest(string_to_array(order_id, ',')) FROM executions"
                " WHERE order_id IS NOT NULL AND trade_date >= %s", (since, since)).fetchall()}

    def _recon_done(self, result: Any, closes: Any, heals: list, adopt: dict) -> None:
        """A successful check: the start-up gate opens when the books and the broker agree,
        or on the second check in a row (the differences are recorded by then)."""
        self._last_check = {"at": self.clock.now().isoformat(), "findings": len(
            result.findings), "heals": len(heals), "adoptions": len(adopt),
            "differences": sorted(result.state.sightings)}
        gate = self._gate
        if gate is None or gate.done:
            if gate is not None:  # the Risk page shows the last check, not only start-up's
                self._save_gate(None)
            return
        self._recon_clean += 1
        agreed = not result.state.sightings and not result.state.flat and not (
            closes is not None and (closes.pending or closes.decided))
        if not agreed and self._recon_clean < CONFIRM_AFTER:
            gate.waiting("start-up reconciliation: differences with the broker are being "
                         "confirmed (second check)")
            self._save_gate("confirming differences")
            return
        details = {"agreed": agreed, "checks": self._recon_clean,
                   "differences": sorted(result.state.sightings),
                   "flat_at_broker": sorted(result.state.flat)}
        try:
            with transaction(self._pool) as conn:
                recon_heal.audit(conn, recon_heal.STARTUP, None, None, details)
        except Exception as exc:  # not recorded: stays shut, the next check tries again
            logger.warning("start-up reconciliation not recorded (%s); retrying", exc)
            return
        gate.open()
        self._save_gate(None)
        logger.warning("start-up reconciliation done (%s): live entries allowed",
                       "books and broker agree" if agreed else "differences recorded")

    def _save_gate(self, waiting: str | None) -> None:
        try:
            recon_heal.save_gate_state(self._pool, {
                "startup_done": waiting is None, "waiting": waiting,
                "last_check": self._last_check, "updated_at": self.clock.now().isoformat()})
        except Exception as exc:
            logger.debug("reconciliation state not saved (%s)", exc)

    # ------------------------------------------------------------------ broker closes
    def _session_close(self, d) -> datetime:
        return session_close_of(self._calendar, d)

    def _broker_closes(self, open_trades: dict[str, Trade], broker: dict, products: dict,
                       unsettled: list[tuple[str, str]], fills: list[BrokerFill]
                       ) -> BrokerCloses | None:
        """Did the broker close live trades by itself? Book or hold them (module docstring).
        ``fills``: the broker's trade book, read by the caller."""
        live = [t for t in open_trades.values() if t.mode == "live"]
        now = self.clock.now()
        expected, _ = book_positions(live, products)
        net = broker_net(broker)
        changed = any(net.get((str(x.leg.security_id), products.get(t.tag, DEFAULT_PRODUCT)), 0)
                      != expected.get((str(x.leg.security_id),
                                       products.get(t.tag, DEFAULT_PRODUCT)), 0)
                      or (x.leg.expiry is not None and now >= self._session_close(x.leg.expiry))
                      for t in live for x in t.legs)
        if not changed:
            self._closes = CloseState()
            return BrokerCloses(state=self._closes, closes=(), holds=(), decided=(), pending=())
        since = min(t.trade_date for t in live)
        with self._pool.connection() as conn:
            known = {r["order_id"] for r in conn.execute(
                "SELECT order_id FROM order_intents WHERE order_id IS NOT NULL AND trade_date"
                " >= %s UNION SELECT unnest(string_to_array(order_id, ',')) FROM executions"
                " WHERE order_id IS NOT NULL AND trade_date >= %s", (since, since)).fetchall()}
        decision = decide(live, broker, fills, self._closes, now=now, known_order_ids=known,
                          products=products, busy_tags={tag for tag, _ in unsettled},
                          busy_securities={sid for _, sid in unsettled},
                          session_close=self._session_close, settlement_price=self._settlement)
        self._closes = decision.state
        for tag in decision.pending + decision.decided:  # no automatic exit meanwhile
            self.send("executor", self.new(
                SuspendExits, tag=tag, reason="a close by the broker is being confirmed",
                seconds=max(300, 45 * int(self._settings.get("RECON_EVERY_CYCLES")))))
        for close in decision.closes:  # the executor books it with its CONFIRMED_FLAT_REMOVAL
            logger.warning("broker close of %s: %s", close.tag, close.reason)
            self.send("executor", self.new(BookBrokerClose, tag=close.tag, reason=close.reason,
                                           kind=close.kind, legs=close.legs))
        for hold in decision.holds:
            logger.warning("broker closed part of %s: %s", hold.tag, hold.reason)
            self.send("executor", self.new(HoldTrade, tag=hold.tag, reason=hold.reason))
        return decision
