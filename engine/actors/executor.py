"""ExecutorActor: turns approved intents into positions and closes them.

Owns open_trades, executions, closed_trades, metrics_days, trade_journal, go_live_state and
(through the live broker) order_intents. Each open and each close is one database
transaction, which also settles the order intents it books; a close for a tag that is not
open (or already closed today) is ignored, so a repeated ClosePosition can never
double-count. Stages: paper and shadow fill on the paper broker (shadow also logs the order
it would have sent); live goes to the configured live broker, and is refused when none is
configured.

Live orders whose outcome is not known yet (``OrdersUnresolved``), fills not yet booked, and
exits in progress live on as unsettled rows of ``order_intents``. The executor finishes them
in *resolution rounds* — on start (a restarted executor rebuilds in-flight orders from the
table and resumes tracking them, never re-sending them) and from a back-off timer that tells
it ``ResolveIntents`` — until each group is booked, refused with its known fills unwound, or
handed to the operator: an entry whose fills are all known is recorded (adopted into its tag
at the broker's prices); an exit rolls forward; an order still unresolved at the deadline
(15 minutes before the session close, 45 on an expiry day of one of its contracts) is alerted
again, its trade put on hold, and waits for the operator's ``resolve_order`` command
(mark filled at a price / mark not filled / flatten a quantity). Entries stay blocked
meanwhile (the RiskActor checks ``order_intents``).

A trade on hold is closed by the operator in terms of what the broker holds: the manual
close sends, per leg, only this trade's share of the broker's position (never opening a new
one), and what the broker no longer holds is recorded with ``ClosePosition(mode=
"record_from_broker")`` (confirmed by the operator): closed at the broker's trade-book prices
with model charges, nothing sent.

Closes the broker made by itself (the monitor's reconciliation, ``engine.execution.
broker_closes``): ``BookBrokerClose`` records a live trade closed at the broker's trade-book
prices or settlement values in one transaction (``record_close``, settling its intents),
sending nothing, and publishes ``PositionClosed``; ``HoldTrade`` holds a trade only part of
which the broker closed; ``SuspendExits`` refuses automatic closes of a trade while such a
close is being confirmed; ``FlattenSurplus`` buys back a surplus short at the market through
the live broker's operator-order path, after checking the broker and the books again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.execution import broker_closes, recon_heal
from engine.execution import repository as repo
from engine.execution.charges import order_charges, sum_charges
from engine.execution.expiry import expired, settlement_fill
from engine.execution.intents import IntentStore, exposure_text, group_of
from engine.execution.journal import build_journal_row, capture_market
from engine.execution.paper import (
    ExecutionRefused,
    ExitIncomplete,
    Fill,
    OrdersUnresolved,
    UnhedgedExposure,
)
from engine.execution.reconcile import book_positions, broker_net, surplus_short
from engine.execution.settlement import session_close_of, settlement_source
from engine.execution.trades import OpenLeg, Trade
from engine.market.calendar import NseCalendar
from engine.market.snapshot import price_decimal
from engine.messages.base import new
from engine.messages.commands import (
    AdoptPosition,
    BookBrokerClose,
    ClosePosition,
    EndOfDayTick,
    FlattenSurplus,
    GetStatus,
    HealPartialExit,
    HoldTrade,
    OpenPosition,
    PauseEntries,
    ResolveIntents,
    ResolveOrder,
    SetGoLiveStage,
    SuspendExits,
)
from engine.messages.events import AlertRaised, MarkedToMarket, OrderRejected, PositionClosed, PositionOpened
from engine.messages.legs import Leg, Side
from engine.strategies.market_view import build_market_view
from engine.timeutil import IST

logger = logging.getLogger(__name__)

RESOLVE_BACKOFF_S = (0.5, 30.0)   # real seconds between resolution rounds (doubling)
DEADLINE_BEFORE_CLOSE = timedelta(minutes=15)
EXPIRY_DAY_DEADLINE_BEFORE_CLOSE = timedelta(minutes=45)


class ExecutorActor(SupervisedActor):
    def setup(self) -> None:
        s = self.ctx.services
        self._pool = s["pool"]
        self._paper = s["paper_broker"]
        self._live = s.get("live_broker")
        self._market = s["market"]
        self._calendar = s.get("calendar")
        self._settlement = s.get("settlement_price") or settlement_source(
            self._market, calendar=self._calendar, now=self.clock.now)
        self._intents: IntentStore = getattr(self._live, "intents", None) or IntentStore(self._pool)
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._backoff = RESOLVE_BACKOFF_S[0]
        self._announced: set[tuple[str, str]] = set()
        self._past_deadline: set[tuple[str, str]] = set()
        self._escalated: set[tuple[str, str]] = set()
        self._suspended: dict[str, tuple[datetime, str]] = {}  # SuspendExits: until, why
        self._stages = repo.seed_go_live(self._pool, s.get("dry_run_flags", {}))
        self._open: dict[str, Trade] = repo.load_open(self._pool)
        pending = self._intents.pending_groups()
        # A live close in flight when the engine stopped: its intents say what was sent, and
        # the resolution rounds follow them. Without any intent (nothing recorded as sent, or
        # an engine version that did not record intents) it is never sent again
        # automatically: hold the trade and tell the operator.
        for tag, trade in list(self._open.items()):
            if trade.closing and not trade.hold and (tag, "exit") not in pending:
                self._open[tag] = replace(trade, hold="a live close was in flight when the engine "
                                          f"stopped ({trade.closing}); check the broker")
                self._alert_hold(self._open[tag])
        # the seeds' save semantics: open_trades replaced transactionally from our state
        repo.replace_open_trades(self._pool, self._open.values())
        if pending:
            if self._live is None:
                text = (f"order intents of live trades are not settled ({pending}) and no live "
                        "broker is configured (BROKER=dhan?): they cannot be resolved; entries "
                        "paused")
                self._alert(text)
                self.send("risk", self.new(PauseEntries, reason=text, source="executor"))
            else:
                logger.warning("resuming %d group(s) of unsettled order intents: %s",
                               len(pending), pending)
                self._schedule(0.0)

    def on_stop(self) -> None:
        with self._timer_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def handle(self, message: Any) -> Any:
        match message:
            case OpenPosition():
                self._open_position(message)
            case ClosePosition(tag=tag, reason=reason) if tag is not None and \
                    self._exits_suspended(message):
                logger.warning("automatic close of %s (%s) refused: the broker seems to have "
                               "closed it by itself (%s)", tag, reason, self._suspended[tag][1])
            case ClosePosition(tag=tag, reason=reason) if tag is not None:
                self._close_position(message, tag, reason)
            case MarkedToMarket(tag=tag, mtm=mtm) if tag in self._open:
                marked = self._open[tag].marked(mtm)
                if marked != self._open[tag]:
                    self._open[tag] = marked
                    repo.save_marks(self._pool, marked)
            case MarkedToMarket():
                pass  # a mark for a trade closed meanwhile
            case SetGoLiveStage(strategy=strategy, stage=stage, reason=reason):
                old = repo.set_stage(self._pool, strategy, stage, reason or "operator", self.clock.now())
                self._stages[strategy] = stage
                logger.warning("go-live stage of %s changed %s -> %s", strategy, old, stage)
            case EndOfDayTick():
                self._end_of_day(message.trading_day)
            case ResolveIntents():
                self._resolve_round()
            case ResolveOrder():
                self._operator_resolve(message)
            case BookBrokerClose():
                self._book_broker_close(message)
            case HoldTrade(tag=tag, reason=reason):
                self._hold_for_broker(tag, reason)
            case FlattenSurplus():
                self._flatten_surplus(message)
            case AdoptPosition():  # reconciliation auto-heal (engine.execution.recon_heal)
                self._adopt_position(message)
            case HealPartialExit():
                self._heal_partial_exit(message)
            case SuspendExits(tag=tag, reason=reason, seconds=seconds):
                self._suspended[tag] = (self.clock.now() + timedelta(seconds=seconds), reason)
            case GetStatus():
                return {"open": sorted(self._open), "stages": dict(self._stages),
                        "pending_intents": [list(g) for g in self._intents.pending_groups()]}
            case _:
                return super().handle(message)
        return None

    def _broker(self, stage: str):
        if stage in ("paper", "shadow"):
            return self._paper
        if stage == "live" and self._live is not None:
            return self._live
        return None

    # ------------------------------------------------------------------ entries
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
        direction = str(intent.params.get("direction", ""))
        params = {k: v for k, v in intent.params.items() if k != "direction"}
        if intent.entry_context:  # the journal's entry half (engine.execution.journal)
            params["journal_entry"] = dict(intent.entry_context)
        context = {"strategy": intent.strategy, "stage": stage, "direction": direction,
                   "params": params, "opened_at": now.isoformat(),
                   "trade_date": now.date().isoformat(), "reason": intent.reason}
        try:
            fills = broker.execute(intent.legs, correlation_base=intent.tag, trade_date=now.date(),
                                   purpose="entry", tag=intent.tag, context=context)
        except OrdersUnresolved as exc:
            # not refused, not filled: unresolved. Nothing is unwound on an assumption; the
            # resolution rounds finish it (and entries are blocked meanwhile)
            self._announce(intent.tag, "entry", exc)
            self._schedule(self._backoff)
            return
        except ExecutionRefused as exc:
            self._reject(intent, f"not executed: {exc}")
            return
        except UnhedgedExposure as exc:
            self._escalated.add((intent.tag, "entry"))
            self._unhedged(intent.tag, exc)
            self._reject(intent, f"UNHEDGED EXPOSURE: {exc}")
            return
        if stage == "shadow":
            logger.info("SHADOW %s would send: %s", intent.tag,
                        [(f.leg.side.value, f.leg.security_id, f.leg.quantity) for f in fills])
        self._book_open(self._trade_of(intent.tag, context, fills), fills, now, intent)

    @staticmethod
    def _trade_of(tag: str, ctx: dict[str, Any], fills) -> Trade:
        return Trade(tag=tag, strategy=str(ctx.get("strategy", "")),
                     mode=str(ctx.get("stage", "live")),
                     trade_date=date.fromisoformat(str(ctx["trade_date"])),
                     opened_at=datetime.fromisoformat(str(ctx["opened_at"])),
                     direction=str(ctx.get("direction", "")),
                     legs=tuple(OpenLeg(f.leg, f.price, f.charges.total) for f in fills),
                     context=dict(ctx.get("params") or {}))

    def _book_open(self, trade: Trade, fills, now: datetime, intent: OpenPosition | None) -> bool:
        """Record an entry (and settle its intents); False when the write failed (a live
        entry is then retried from order_intents by the resolution rounds)."""
        try:
            recorded = repo.record_open(self._pool, trade, fills, now)
        except Exception as exc:
            if trade.mode != "live":
                raise
            key = (trade.tag, "booking")
            if key not in self._announced:
                self._announced.add(key)
                text = (f"entry {trade.tag} FILLED at the broker ("
                        f"{exposure_text([(f.leg.security_id, f.leg.side.value, f.leg.quantity) for f in fills])}"
                        f") but could not be recorded ({type(exc).__name__}); recording it again "
                        "from order_intents, entries blocked meanwhile")
                self._alert(text)
            self._schedule(self._backoff)
            return False
        self._announced.discard((trade.tag, "booking"))
        if not recorded:
            return True
        self._open[trade.tag] = trade
        fields = dict(trade_id=0, strategy=trade.strategy, tag=trade.tag,
                      legs=tuple(f.leg for f in fills), stage=trade.mode,
                      entry_premium=trade.entry_price)
        self.publish(self.reply(PositionOpened, intent, **fields) if intent is not None
                     else self.new(PositionOpened, **fields))
        return True

    # ------------------------------------------------------------------ exits
    @staticmethod
    def _exit_legs(trade: Trade) -> tuple[Leg, ...]:
        return tuple(
            Leg(security_id=x.leg.security_id, side=Side.SELL if x.leg.side is Side.BUY else Side.BUY,
                quantity=x.leg.quantity, kind=x.leg.kind, option_type=x.leg.option_type,
                expiry=x.leg.expiry, strike=x.leg.strike) for x in trade.legs)

    def _open_rows(self, tag: str, group: str) -> list:
        return [r for r in self._intents.group(tag, group) if r.is_order and not r.terminal]

    def _close_position(self, msg: ClosePosition, tag: str, reason: str) -> None:
        trade = self._open.get(tag)
        if trade is None:
            logger.info("close for %s ignored: not open (already closed?)", tag)
            return
        if msg.mode == "record_from_broker":
            self._record_from_broker(msg, trade, reason)
            return
        manual = reason.startswith("manual close")
        if trade.mode == "live" and self._intents.has_open(tag, "exit"):
            doubt = self._open_rows(tag, "exit")
            if doubt:
                logger.warning("close of %s (%s) ignored: its exit orders %s are unresolved; "
                               "they are looked up until resolved (or decide with "
                               "resolve_order)", tag, reason, [r.correlation_id for r in doubt])
                return
            if not manual and not trade.hold:
                logger.warning("close of %s (%s) ignored: an exit of it is in progress", tag,
                               reason)
                return
        if trade.hold and not manual:
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
        exit_legs = self._exit_legs(trade)
        now = self.clock.now()
        live = trade.mode == "live"
        limits: dict[int, int] | None = None
        unsent: list[str] = []
        if live and trade.hold and manual:
            plan = self._held_close_plan(trade, exit_legs)
            if isinstance(plan, str):
                self._alert(f"manual close of {tag} refused: {plan}")
                return
            limits, unsent = plan
            if unsent and not any(limits.values()):
                self._alert(f"manual close of {tag} refused: nothing to send — the broker holds "
                            f"none of the rest for this trade ({'; '.join(unsent)}). "
                            + self._record_hint(tag))
                return
            if not hasattr(broker, "exit_within"):
                self._alert(f"manual close of {tag} refused: the live broker cannot limit an "
                            "exit to what the broker holds")
                return
        if live:  # written before any order leaves, so a crash cannot lead to a second close
            trade = replace(trade, closing=now.isoformat())
            repo.save_marks(self._pool, trade)
            self._open[tag] = trade
        try:
            # an exit of a trade whose earlier exit filled partly sends only what is left; a
            # held trade's manual close only this trade's share of what the broker holds
            settle = [] if live else [i for i, x in enumerate(trade.legs)
                                      if expired(x.leg, now, self._session_close)]
            if settle:  # paper / shadow: expired legs settle, the rest fill at the touch
                settled = self._settled_fills(broker, trade, exit_legs, settle, now, reason)
                if settled is None:
                    return
                fills = settled
            elif limits is not None:
                fills = broker.exit_within(exit_legs, correlation_base=f"{tag}-X",
                                           trade_date=now.date(), tag=tag, limits=limits)
            else:
                fills = broker.execute(exit_legs, correlation_base=f"{tag}-X",
                                       trade_date=now.date(), purpose="exit", tag=tag,
                                       context={"reason": reason})
        except OrdersUnresolved as exc:
            self._announce(tag, "exit", exc)
            self._schedule(self._backoff)
            return
        except ExecutionRefused as exc:
            # an exit the broker refuses leaves the risk it was closing: tell the operator
            # every time (an entry refusal backs off instead, in the RiskActor)
            self.publish(self.new(AlertRaised, source="executor", text=(
                f"EXIT REFUSED for {tag} ({reason}): {exc}. The position is still open; the "
                "monitor will try again at its next cycle")))
            logger.error("cannot close %s now (%s); the monitor will retry", tag, exc)
            if live:  # nothing was left open: the close may be tried again
                self._open[tag] = replace(trade, closing=None)
                repo.save_marks(self._pool, self._open[tag])
            return
        except ExitIncomplete as exc:
            self._escalated.add((tag, "exit"))
            if unsent:
                self._hold(trade, f"manual close sent only this trade's share of what the broker "
                                  f"holds; neither sent nor at the broker: {'; '.join(unsent)}. "
                                  f"{self._record_hint(tag)} ({exc})")
            else:
                self._hold(trade, f"exit incomplete: {exc}")
            return
        except UnhedgedExposure as exc:
            self._unhedged(tag, exc)
            self._hold(trade, f"close left unhedged legs: {exposure_text(exc.open_legs)}")
            return
        self._book_close(trade, fills, now, reason, msg)

    def _session_close(self, day: date) -> datetime:
        return session_close_of(self._calendar, day)

    def _settled_fills(self, broker: Any, trade: Trade, exit_legs: tuple[Leg, ...],
                       settle: list[int], now: datetime, reason: str) -> list[Fill] | None:
        """The exit of a paper/shadow trade some of whose legs have expired: those settle at
        their intrinsic value against the expiry's NIFTY close (exercise STT on a long in the
        money; ``engine.execution.expiry``), the others fill on the paper broker. ``None``:
        the settlement price is not known yet (the close waits; the monitor asks again)."""
        spots: dict[date, Decimal] = {}
        for i in settle:
            expiry = trade.legs[i].leg.expiry
            assert expiry is not None  # expired() checked it
            spot = self._settlement(expiry)
            if spot is None:
                logger.warning("close of %s (%s) waits: the settlement price of the %s expiry "
                               "(the NIFTY close) is not known yet", trade.tag, reason, expiry)
                return None
            spots[expiry] = spot
        rest = [i for i in range(len(exit_legs)) if i not in settle]
        filled = broker.execute(tuple(exit_legs[i] for i in rest),
                                correlation_base=f"{trade.tag}-X", trade_date=now.date(),
                                purpose="exit", tag=trade.tag,
                                context={"reason": reason}) if rest else []
        by_index: dict[int, Fill] = dict(zip(rest, filled, strict=True))
        for i in settle:
            held = trade.legs[i].leg
            by_index[i] = settlement_fill(held, spots[held.expiry])  # type: ignore[index]
        logger.info("%s: %d expired leg(s) settled at the NIFTY close %s", trade.tag,
                    len(settle), ", ".join(f"{d}: {p}" for d, p in sorted(spots.items())))
        return [by_index[i] for i in range(len(exit_legs))]

    @staticmethod
    def _record_hint(tag: str) -> str:
        return ("If the rest was closed at the broker, record the close at the broker's "
                "trade-book prices: close_trade with mode record_from_broker and confirm true "
                f"(python -m engine close {tag} --record-from-broker --confirm)")

    def _held_close_plan(self, trade: Trade, exit_legs: tuple[Leg, ...]
                         ) -> tuple[dict[int, int], list[str]] | str:
        """What the manual close of a trade on hold sends, in terms of what the broker holds.

        Per leg: min(the leg's remaining exit quantity, the trade's share at the broker in the
        same direction). The share of a security is the broker's net (in the trade's product)
        less what the other open live trades hold there; what an earlier, unsettled exit of
        the trade already filled is not sent again. A leg the broker no longer holds for the
        trade is not sent, so the close never opens a new position.

        Returns:
            ``(units to send by leg index, notes on what is neither sent nor at the
            broker)``, or the refusal text (the broker's positions cannot be read).
        """
        positions = self.ctx.services.get("positions")
        if positions is None:
            return ("the broker's positions cannot be read (no positions service), so the "
                    "close cannot tell what the broker still holds. Flatten at the broker by "
                    "hand; then record the close at the broker's trade-book prices: close_trade "
                    "with mode record_from_broker and confirm true (python -m engine close "
                    f"{trade.tag} --record-from-broker --confirm)")
        try:
            broker = positions()
        except Exception as exc:
            return f"broker positions unavailable ({type(exc).__name__}); try again"
        done: dict[int, int] = {}
        for r in self._intents.group(trade.tag, "exit"):
            if r.is_order:
                done[r.leg_index] = done.get(r.leg_index, 0) + r.filled_qty
        with self._pool.connection() as conn:
            row = conn.execute("SELECT product FROM order_intents WHERE trade_tag = %s AND"
                               " purpose = 'entry' ORDER BY id LIMIT 1", (trade.tag,)).fetchone()
        product = row["product"] if row else getattr(self._live, "product_type", "MARGIN")
        limits: dict[int, int] = {}
        unsent: list[str] = []
        for i, (held, leg) in enumerate(zip(trade.legs, exit_legs, strict=True)):
            rest = leg.quantity - done.get(i, 0)
            if rest <= 0:
                limits[i] = 0
                continue
            sid = leg.security_id
            net = sum(q for k, q in broker.items()
                      if (k == (sid, product) if isinstance(k, tuple) else k == sid))
            others = sum((x.leg.quantity if x.leg.side is Side.BUY else -x.leg.quantity)
                         for t in self._open.values() if t.tag != trade.tag and t.mode == "live"
                         for x in t.legs if x.leg.security_id == sid)
            share = net - others
            held_units = share if held.leg.side is Side.BUY else -share  # in the trade's direction
            limits[i] = max(0, min(rest, held_units))
            if limits[i] < rest:
                unsent.append(f"leg {i} {leg.side.value} {rest - limits[i]} of security {sid} "
                              f"(the broker holds {share:+d} for this trade: net {net:+d}, other "
                              f"trades {others:+d}; sending it would open a new position)")
        return limits, unsent

    # ------------------------------------------------------------------ record from broker
    def _record_from_broker(self, msg: ClosePosition, trade: Trade, reason: str) -> None:
        """Record ``trade`` closed at the broker's trade-book prices, sending nothing (the
        operator closed it at the broker and confirmed). Each exit leg is priced at the VWAP
        of the broker's trades on its security in the exit direction since the trade opened
        — this trade's own exit orders first — leaving out orders known to belong to another
        trade (and this trade's entry), for exactly the leg's quantity; charges come from the
        charges model and are marked so in the journal (``charges_source: model``)."""
        tag = trade.tag

        def refuse(why: str) -> None:
            self._alert(f"record_from_broker close of {tag} refused: {why}. Nothing was "
                        "recorded or sent")

        if trade.mode != "live":
            refuse(f"it is a {trade.mode} trade; only a live trade is closed at the broker")
            return
        if self._live is None or not hasattr(self._live, "trade_book"):
            refuse("no live broker is configured to read the trade book from")
            return
        doubt = self._open_rows(tag, "exit") + self._open_rows(tag, "operator")
        if doubt:
            refuse("its orders " + ", ".join(r.correlation_id for r in doubt) + " are not "
                   "terminal yet (they may still fill): resolve them first (resolve_order)")
            return
        try:
            book = list(self._live.trade_book())
        except Exception as exc:
            refuse(f"the broker's trade book could not be read ({type(exc).__name__}: {exc}); "
                   "try again")
            return
        own, foreign = self._known_order_ids(trade)
        since = trade.opened_at.replace(microsecond=0)  # exchange times are whole seconds
        left = [t.traded_quantity for t in book]
        fills, missing = [], []
        now = self.clock.now()
        for i, leg in enumerate(self._exit_legs(trade)):
            found = [k for k, t in enumerate(book)
                     if t.security_id == leg.security_id and t.transaction_type == leg.side.value
                     and t.order_id not in foreign and left[k] > 0
                     and (t.exchange_time is None or t.exchange_time >= since)]
            found.sort(key=lambda k: (book[k].order_id not in own, book[k].exchange_time or since,
                                      k))
            need, parts = leg.quantity, []
            for k in found:
                take = min(need, left[k])
                left[k] -= take
                need -= take
                parts.append((book[k].order_id, take, Decimal(book[k].traded_price)))
                if need == 0:
                    break
            if need > 0:
                have = leg.quantity - need
                orders = sorted({o for o, _, _ in parts})
                missing.append(f"leg {i} {leg.side.value} {leg.quantity} of security "
                               f"{leg.security_id}: the trade book has only {have} "
                               f"{leg.side.value} since {since.astimezone(IST):%Y-%m-%d %H:%M:%S}"
                               f" IST not known to belong to another trade"
                               + (f" (orders {', '.join(orders)})" if orders else ""))
                continue
            fills.append(self._book_fill(leg, parts, own, now.date()))
        if missing:
            refuse("the broker's trade book does not cover " + "; ".join(missing))
            return
        recorded = replace(trade, context={**trade.context, "charges_source": "model",
                                           "exit_prices_source": "broker_trade_book",
                                           "close_mode": "record_from_broker"})
        why = f"{reason} (recorded from the broker's trade book)"
        try:
            result = repo.record_close(self._pool, recorded, fills, now, why,
                                       self._journal(recorded, fills, now))
        except Exception as exc:
            refuse(f"the close could not be written ({type(exc).__name__}: {exc}); send it again")
            return
        self._open.pop(tag, None)
        self._forget((tag, "exit"))
        logger.warning("%s recorded closed from the broker's trade book: %s", tag,
                       [(f.leg.side.value, f.leg.security_id, f.leg.quantity, str(f.price),
                         f.order_id) for f in fills])
        self._closed(recorded, result, why, msg)

    def _known_order_ids(self, trade: Trade) -> tuple[set[str], set[str]]:
        """``(this trade's exit and operator order ids, order ids known to belong elsewhere:
        another trade's, or this trade's entry)`` since the trade's first trading day."""
        own: set[str] = set()
        foreign: set[str] = set()
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT tag, action, order_id FROM executions WHERE order_id IS NOT NULL AND"
                " trade_date >= %s", (trade.trade_date,)).fetchall()
            intents = conn.execute(
                "SELECT trade_tag, purpose, order_id FROM order_intents WHERE order_id IS NOT"
                " NULL AND trade_date >= %s", (trade.trade_date,)).fetchall()
        for r in rows:
            ids = {x for x in str(r["order_id"]).split(",") if x}
            if r["tag"] != trade.tag or r["action"] == "OPEN":
                foreign |= ids
        for r in intents:
            if r["trade_tag"] == trade.tag and r["purpose"] in ("exit", "operator"):
                own.add(str(r["order_id"]))
            else:
                foreign.add(str(r["order_id"]))
        return own, foreign - own

    def _book_fill(self, leg: Leg, parts: list[tuple[str, int, Decimal]], own: set[str],
                   day: date) -> Fill:
        """One exit leg's fill from trade-book parts ``(order id, quantity, price)``: the
        VWAP, and the model's charges per broker order."""
        qty = sum(q for _, q, _ in parts)
        price = (sum((px * q for _, q, px in parts), Decimal(0)) / qty).quantize(Decimal("0.01"))
        per_order: dict[str, list[tuple[int, Decimal]]] = {}
        for oid, q, px in parts:
            per_order.setdefault(oid, []).append((q, px))
        charges = [order_charges(kind=leg.kind.value, side=leg.side.value, quantity=sum(
                       q for q, _ in ps), price=sum((px * q for q, px in ps), Decimal(0))
                       / sum(q for q, _ in ps), on=day) for ps in per_order.values()]
        total = sum_charges(charges)
        cid = None
        if own & set(per_order):
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT correlation_id FROM order_intents WHERE order_id = ANY(%s) AND"
                    " security_id = %s AND purpose = 'exit' ORDER BY id LIMIT 1",
                    (sorted(own & set(per_order)), leg.security_id)).fetchone()
            cid = row["correlation_id"] if row else None
        return Fill(leg=leg, price=price, charges=total, order_id=",".join(per_order),
                    correlation_id=cid)  # type: ignore[arg-type]  # no engine order: no id

    def _book_close(self, trade: Trade, fills, now: datetime, reason: str,
                    msg: ClosePosition | None) -> bool:
        tag = trade.tag
        live = trade.mode == "live"
        try:
            result = repo.record_close(self._pool, trade, fills, now, reason,
                                       self._journal(trade, fills, now))
        except Exception as exc:
            if not live:
                raise
            logger.critical("exit of %s filled at the broker but could not be recorded (%s: %s)",
                            tag, type(exc).__name__, exc)
            if not trade.hold:
                self._hold(trade, "exit filled at the broker but was not recorded; recording it "
                                  "again from order_intents")
            self._schedule(self._backoff)
            return False
        self._open.pop(tag, None)
        self._escalated.discard((tag, "exit"))
        self._closed(trade, result, reason, msg)
        return True

    def _journal(self, trade: Trade, fills, now: datetime, *,
                 exit_spot: Decimal | None = None) -> dict[str, Any]:
        """The trade_journal columns of a close (``engine.execution.journal``): the exit
        market from one market snapshot now (spot, IVs, skew, the quotes of the trade's legs
        and of the rejected MDC variants' legs); ``exit_spot`` (a settlement's) overrides
        the snapshot's spot. Never fails a close: what cannot be built is left out."""
        entry = dict(trade.context.get("journal_entry") or {})
        sids = [x.leg.security_id for x in trade.legs] + [
            leg["security_id"] for v in entry.get("rejected_variants") or ()
            for leg in v.get("legs") or ()]
        market: dict[str, Any] = {}
        snap = None
        try:
            snap = self._market.snapshot()
            market = capture_market(build_market_view(snap, self._view_calendar()), sids)
        except Exception as exc:
            logger.debug("no market view for the journal of %s (%s)", trade.tag, exc)
            if snap is not None:
                market = {"at": now.isoformat(), "spot": str(price_decimal(snap.spot))}
        if exit_spot is not None:
            market["spot"] = str(exit_spot)
        extra = {k: trade.context[k] for k in ("charges_source", "exit_prices_source",
                                               "close_mode", "broker_close")
                 if k in trade.context}
        try:
            return build_journal_row(trade, fills, now, market, extra=extra)
        except Exception:
            logger.exception("journal row of %s could not be built; recording the basics",
                             trade.tag)
            spot = market.get("spot")
            return {"exit_spot": Decimal(spot).quantize(Decimal("0.01")) if spot else None,
                    "selection_context": {**trade.context, **extra}}

    def _view_calendar(self) -> NseCalendar:
        cal = self._calendar
        cal = cal.current() if hasattr(cal, "current") else cal
        return cal if isinstance(cal, NseCalendar) else NseCalendar()

    def _closed(self, trade: Trade, result: Any, reason: str, msg: ClosePosition | None) -> None:
        """Publish PositionClosed for a close the books recorded."""
        if result.recorded:
            fields = dict(trade_id=0, strategy=trade.strategy, tag=trade.tag, reason=reason,
                          realized_pnl=result.realized_pnl.quantize(Decimal("0.01")))
            self.publish(self.reply(PositionClosed, msg, **fields) if msg is not None
                         else self.new(PositionClosed, **fields))

    # ------------------------------------------------------------------ closes the broker made
    def _book_broker_close(self, msg: BookBrokerClose) -> None:
        """Record a live trade the broker closed by itself (the monitor's decision, see
        ``engine.execution.broker_closes``) at the broker's prices, in one transaction, sending
        nothing: charges from the charges model, marked so in the journal. A trade no longer
        open is ignored (the monitor may send a close again)."""
        tag = msg.tag
        trade = self._open.get(tag)
        if trade is None:
            logger.info("broker close of %s ignored: not open (already booked?)", tag)
            return
        if trade.mode != "live":
            logger.error("broker close of %s ignored: a %s trade has no broker position", tag,
                         trade.mode)
            return
        groups = [g for t, g in self._intents.pending_groups() if t == tag]
        if groups:
            logger.warning("broker close of %s not booked: its %s order intents are not settled "
                           "(the monitor decides again once they are)", tag, groups)
            return
        now = self.clock.now()
        try:
            fills = broker_closes.close_fills(trade, msg.legs, now.date())
        except ValueError as exc:
            self._alert(f"broker close of {tag} not booked: {exc}")
            return
        detail = {"kind": msg.kind, "reason": msg.reason, "legs": [
            {"security_id": x.security_id, "quantity": x.quantity, "price": str(x.price),
             "how": x.how, "order_ids": list(x.order_ids),
             "settlement_spot": str(x.settlement_spot) if x.settlement_spot is not None
             else None} for x in msg.legs]}
        hows = {x.how for x in msg.legs}
        booked = replace(trade, context={
            **trade.context, "close_mode": "broker_close", "charges_source": "model",
            "exit_prices_source": "+".join(sorted(
                "settlement" if h == "settlement" else "broker_trade_book" for h in hows)),
            "broker_close": detail})
        spots = [x.settlement_spot for x in msg.legs if x.settlement_spot is not None]
        exit_spot = spots[-1] if spots else None
        try:
            # the close and its CONFIRMED_FLAT_REMOVAL audit row: one transaction
            result = recon_heal.record_close_audited(
                self._pool, booked, fills, now, msg.reason,
                self._journal(booked, fills, now, exit_spot=exit_spot),
                {"booked_as": "broker close", **detail})
        except Exception as exc:
            self._alert(f"{tag} was closed at the broker ({msg.reason}) but the close could not "
                        f"be recorded ({type(exc).__name__}: {exc}); the monitor sends it again")
            return
        self._open.pop(tag, None)
        self._forget((tag, "exit"))
        if not result.recorded:
            return
        pnl = result.realized_pnl.quantize(Decimal("0.01"))
        logger.warning("%s booked closed by the broker: %s (net %s)", tag, msg.reason, pnl)
        self.publish(self.reply(PositionClosed, msg, trade_id=0, strategy=trade.strategy,
                                tag=tag, reason=msg.reason, realized_pnl=pnl))
        self.publish(self.new(AlertRaised, source="executor", text=(
            f"{tag} was closed by the broker, not by the engine — booked closed: {msg.reason}. "
            f"Net P&L {pnl} (exit charges estimated from the charges model)")))

    # ------------------------------------------------------------------ reconciliation heals
    def _adopt_position(self, msg: AdoptPosition) -> None:
        """Adopt a broker position no trade holds (``engine.execution.recon_heal``): a live
        trade of strategy ADOPTED at the broker's average price, model entry charges, opened
        and audited in one transaction; ``PositionOpened`` and an alert."""
        held = {x.leg.security_id for t in self._open.values() for x in t.legs}
        if msg.tag in self._open or held & {leg.security_id for leg in msg.legs}:
            logger.info("adoption %s ignored: already open or held by a trade", msg.tag)
            return
        now = self.clock.now()
        fills = [recon_heal.adoption_fill(leg, now.date()) for leg in msg.legs]
        trade = Trade(tag=msg.tag, strategy=recon_heal.ADOPTED, mode="live",
                      trade_date=now.date(), opened_at=now,
                      legs=tuple(OpenLeg(f.leg, f.price, f.charges.total) for f in fills),
                      context={"product": msg.product, "adopted": dict(msg.details),
                               "charges_source": "model",
                               "entry_prices_source": "broker_average_price"})
        try:
            recorded = recon_heal.record_open_audited(self._pool, trade, fills, now,
                                                      {**msg.details, "tag": msg.tag})
        except Exception as exc:
            logger.warning("adoption %s not recorded (%s: %s); the monitor tries again", msg.tag,
                           type(exc).__name__, exc)
            return
        if not recorded:
            return
        self._open[msg.tag] = trade
        self.publish(self.reply(PositionOpened, msg, trade_id=0, strategy=trade.strategy,
                                tag=trade.tag, legs=tuple(f.leg for f in fills), stage="live",
                                entry_premium=trade.entry_price))
        self.publish(self.new(AlertRaised, source="executor", text=(
            f"{msg.reason}: ADOPTED as live trade {msg.tag} at the broker's average price "
            f"({exposure_text([(f.leg.security_id, f.leg.side.value, f.leg.quantity) for f in fills])}"
            "), watched with the ADOPTED stop loss / profit target")))

    def _heal_partial_exit(self, msg: HealPartialExit) -> None:
        """Book the part of a live trade closed by hand at the broker (``engine.execution.
        recon_heal``): split off as ``<tag>~<n>`` and closed at the trade-book prices, the rest
        kept open with the smaller legs, audited: one transaction; ``PositionClosed``."""
        tag = msg.tag
        trade = self._open.get(tag)
        if trade is None or trade.mode != "live" or \
                tuple(x.leg.quantity for x in trade.legs) != msg.books:
            logger.info("heal of %s ignored: not open, or changed since it was decided", tag)
            return
        if [g for t, g in self._intents.pending_groups() if t == tag]:
            logger.warning("heal of %s not booked: its order intents are not settled", tag)
            return
        now = self.clock.now()
        try:
            part, rest, fills = recon_heal.split_partial(
                trade, msg.legs, recon_heal.next_part_tag(self._pool, tag), now.date())
            result = recon_heal.record_partial_heal(
                self._pool, part, rest, fills, now, msg.reason, self._journal(part, fills, now),
                {"reason": msg.reason, "legs": [
                    {"security_id": x.security_id, "quantity": x.quantity, "price": str(x.price),
                     "order_ids": list(x.order_ids)} for x in msg.legs],
                 "books_before": list(msg.books),
                 "books_after": [x.leg.quantity for x in rest.legs]})
        except Exception as exc:
            self._alert(f"part of {tag} was closed by hand at the broker ({msg.reason}) but it "
                        f"could not be booked ({type(exc).__name__}: {exc}); the monitor tries "
                        "again")
            return
        self._open[tag] = rest
        if not result.recorded:
            return
        pnl = result.realized_pnl.quantize(Decimal("0.01"))
        self.publish(self.reply(PositionClosed, msg, trade_id=0, strategy=part.strategy,
                                tag=part.tag, reason=msg.reason, realized_pnl=pnl))
        self.publish(self.new(AlertRaised, source="executor", text=(
            f"{tag}: {msg.reason} — healed: booked as {part.tag} (net {pnl}), {tag} stays open "
            f"with {exposure_text([(x.leg.security_id, x.leg.side.value, x.leg.quantity) for x in rest.legs])}")))

    def _exits_suspended(self, msg: ClosePosition) -> bool:
        """An automatic close of a trade the broker seems to have closed by itself (the
        monitor's ``SuspendExits``, still in force)? A manual close is never suspended."""
        entry = self._suspended.get(msg.tag or "")
        if entry is None:
            return False
        if self.clock.now() >= entry[0]:
            self._suspended.pop(msg.tag or "", None)
            return False
        return not msg.reason.startswith("manual close") and getattr(msg, "mode", "send") == "send"

    def _hold_for_broker(self, tag: str, reason: str) -> None:
        """The monitor found part of ``tag`` closed at the broker: no automatic exit (it
        would open new positions); the operator decides."""
        trade = self._open.get(tag)
        if trade is None:
            logger.info("hold of %s ignored: not open", tag)
            return
        if trade.hold and reason in trade.hold:
            return
        self._hold(trade, f"{trade.hold}; {reason}" if trade.hold else reason)

    def _flatten_surplus(self, msg: FlattenSurplus) -> None:
        """Buy back short units the broker holds beyond the books (a confirmed mismatch the
        monitor found), through the live broker's operator-order path (intent first). Checked
        again here, against the broker's positions now and the books: never while an order on
        the security is unsettled, never more than the surplus still there."""
        sid, product = msg.security_id, msg.product

        def refuse(why: str) -> None:
            self._alert(f"surplus SHORT {msg.quantity} of security {sid} ({product}) at the "
                        f"broker NOT bought back: {why}. Buy it back by hand")

        live = self._live
        if live is None or not hasattr(live, "send_operator_order"):
            refuse("no live broker is configured")
            return
        if product != getattr(live, "product_type", "MARGIN"):
            refuse(f"the position is {product} and the live broker sends "
                   f"{getattr(live, 'product_type', 'MARGIN')} orders")
            return
        doubt = [r for r in self._intents.unsettled() if r.security_id == sid]
        if doubt:
            refuse("an order on that security is not settled yet ("
                   + ", ".join(r.correlation_id for r in doubt) + "): it may explain the "
                   "difference")
            return
        positions = self.ctx.services.get("positions")
        if positions is None:
            refuse("the broker's positions cannot be read")
            return
        try:
            broker = broker_net(positions())
        except Exception as exc:
            refuse(f"the broker's positions could not be read ({type(exc).__name__})")
            return
        with self._pool.connection() as conn:
            products = {r["trade_tag"]: r["product"] for r in conn.execute(
                "SELECT DISTINCT ON (trade_tag) trade_tag, product FROM order_intents WHERE"
                " purpose = 'entry' ORDER BY trade_tag, id").fetchall()}
        expected, _ = book_positions(self._open.values(), products)
        exp, brk = expected.get((sid, product), 0), broker.get((sid, product), 0)
        qty = min(msg.quantity, surplus_short(exp, brk))
        if qty <= 0:
            logger.warning("surplus short of %s (%s) not bought back: the broker (%+d) is no "
                           "longer short beyond the books (%+d)", sid, product, brk, exp)
            return
        why = (f"reconciliation: surplus short {qty} of security {sid} ({product}): books "
               f"{exp:+d}, broker {brk:+d}")
        try:
            done = live.send_operator_order(tag=f"SURPLUS-{sid}", security_id=sid,
                                            side=Side.BUY, quantity=qty, reason=why)
        except Exception as exc:
            refuse(f"the order could not be sent ({type(exc).__name__}: {exc})")
            self._schedule(self._backoff)
            return
        text = (f"surplus SHORT {qty} of security {sid} ({product}) at the broker beyond the "
                f"books (books {exp:+d}, broker {brk:+d}): bought back at the market, order "
                f"{done.order_id or '(no id)'} {done.status}, {done.filled} filled at "
                f"{done.price}")
        if done.status == "TRADED" and done.filled == qty:
            logger.warning("%s", text)
            self.publish(self.new(AlertRaised, source="executor", text=text))
        else:
            self._alert(text + ": NOT fully bought back — check the broker")
        self._schedule(0.0)  # a resolution round settles the operator intent once terminal

    # ------------------------------------------------------------------ resolution rounds
    def _schedule(self, delay: float) -> None:
        """Tell myself ``ResolveIntents`` in ``delay`` real seconds (one timer at a time)."""
        with self._timer_lock:
            if self._timer is not None and self._timer.is_alive():
                return
            timer = threading.Timer(max(0.0, delay), self._wake)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _wake(self) -> None:
        with self._timer_lock:
            self._timer = None
        # its own id scope: the timer must not disturb the executor's deterministic ids
        msg = new(ResolveIntents, self.ctx.clock, ids=self.ctx.ids, scope="executor-timer",
                  reason="resolution round")
        # to this instance, not to the role: a restarted executor schedules its first round
        # in on_start, before the supervisor has registered it, when the role still names
        # the dead one (the round was a dead letter and the entry stayed unresolved)
        self.ctx.directory.send("executor", msg, sender="executor-timer", to=self.actor_ref)

    def _resolve_round(self) -> None:
        if self._live is None:
            return
        waiting = False
        try:
            groups = self._intents.pending_groups()
        except Exception as exc:  # the database is away: try again later
            logger.warning("order intents unreadable (%s); retrying", exc)
            groups, waiting = [], True
        for tag, group in groups:
            try:
                waiting = self._resume_group(tag, group) or waiting
            except Exception:
                logger.exception("resolving the %s orders of %s failed; retrying", group, tag)
                waiting = True
        if waiting:
            self._schedule(self._backoff)
            self._backoff = min(self._backoff * 2, RESOLVE_BACKOFF_S[1])
        else:
            self._backoff = RESOLVE_BACKOFF_S[0]

    def _resume_group(self, tag: str, group: str) -> bool:
        """One step on one group of unsettled intents; True while it still needs rounds."""
        key = (tag, group)
        if group == "entry":
            if tag in self._open:
                self._intents.settle(tag, "entry", "trade already open in the books")
                return False
            if key in self._escalated and not self._open_rows(tag, group):
                return False  # an unwind that failed: the operator's
            try:
                fills = self._live.resume(tag, "entry")
            except OrdersUnresolved as exc:
                self._still_unresolved(tag, group, exc)
                return True
            except ExecutionRefused as exc:
                self._forget(key)
                text = f"entry {tag} refused after its orders were resolved: {exc}"
                logger.error("%s", text)
                ctx = self._entry_context(tag, settled=True)
                self.publish(self.new(OrderRejected, strategy=str(ctx.get("strategy", "")),
                                      tag=tag, reason=text))
                self.publish(self.new(AlertRaised, source="executor", text=text))
                return False
            except UnhedgedExposure as exc:
                if key not in self._escalated:
                    self._escalated.add(key)
                    self._unhedged(tag, exc)
                    self.publish(self.new(AlertRaised, source="executor", text=str(exc)))
                return False
            ctx = self._entry_context(tag)
            if key in self._announced:
                self.publish(self.new(AlertRaised, source="executor", text=(
                    f"{tag}: the entry's orders are resolved: every leg filled; recorded at "
                    "the broker's prices")))
            self._forget(key)
            return not self._book_open(self._trade_of(tag, ctx, fills), fills,
                                       self.clock.now(), None)
        if group == "exit":
            trade = self._open.get(tag)
            if trade is None:
                self._intents.settle(tag, "exit", "trade no longer open in the books")
                return False
            if key in self._escalated and not self._open_rows(tag, group):
                return False  # on hold: the operator's
            try:
                fills = self._live.resume(tag, "exit", exit_legs=self._exit_legs(trade),
                                          roll=not trade.hold)
            except OrdersUnresolved as exc:
                self._still_unresolved(tag, group, exc)
                return True
            except ExitIncomplete as exc:
                self._escalated.add(key)
                if not trade.hold:
                    self._hold(trade, f"exit incomplete: {exc}")
                return False
            except ExecutionRefused as exc:
                self._forget(key)
                logger.error("exit of %s not filled (%s); the monitor will retry", tag, exc)
                self._open[tag] = replace(trade, closing=None)
                repo.save_marks(self._pool, self._open[tag])
                return False
            except UnhedgedExposure as exc:
                self._escalated.add(key)
                self._unhedged(tag, exc)
                if not trade.hold:
                    self._hold(trade, f"close left unhedged legs: {exposure_text(exc.open_legs)}")
                return False
            if key in self._announced:
                self.publish(self.new(AlertRaised, source="executor", text=(
                    f"{tag}: the exit's orders are resolved: every leg filled; trade closed")))
            self._forget(key)
            reason = self._exit_reason(tag)
            return not self._book_close(trade, fills, self.clock.now(), reason, None)
        try:
            self._live.resume(tag, group)
        except OrdersUnresolved as exc:
            self._still_unresolved(tag, group, exc)
            return True
        return False

    def _forget(self, key: tuple[str, str]) -> None:
        self._announced.discard(key)
        self._past_deadline.discard(key)
        self._escalated.discard(key)

    def _entry_context(self, tag: str, *, settled: bool = False) -> dict[str, Any]:
        sql = ("SELECT payload FROM order_intents WHERE trade_tag = %s AND purpose = 'entry'"
               + ("" if settled else " AND settled_at IS NULL") + " ORDER BY id DESC LIMIT 1")
        with self._pool.connection() as conn:
            row = conn.execute(sql, (tag,)).fetchone()
        return dict((row["payload"] or {}).get("context") or {}) if row else {}

    def _exit_reason(self, tag: str) -> str:
        rows = self._intents.group(tag, "exit")
        for r in rows:
            reason = (r.payload.get("context") or {}).get("reason")
            if reason:
                return str(reason)
        return "exit resolved"

    def _announce(self, tag: str, group: str, exc: OrdersUnresolved) -> None:
        key = (tag, group)
        if key in self._announced:
            return
        self._announced.add(key)
        deadline = self._deadline(tag, group)
        text = (f"ORDER OUTCOME UNKNOWN — {exc}. Nothing was reversed or re-sent; the engine keeps "
                "looking it up and blocks new entries until it is resolved"
                + (f" (deadline {deadline.astimezone(IST):%H:%M} IST: then the trade goes on "
                   "hold and you decide with resolve_order)" if deadline else ""))
        self._alert(text)

    def _still_unresolved(self, tag: str, group: str, exc: OrdersUnresolved) -> None:
        self._announce(tag, group, exc)
        key = (tag, group)
        deadline = self._deadline(tag, group)
        if deadline is None or self.clock.now() < deadline or key in self._past_deadline:
            return
        self._past_deadline.add(key)
        cids = ", ".join(cid for cid, _, _, _ in exc.unresolved)
        text = (f"DEADLINE {deadline.astimezone(IST):%H:%M} IST passed with orders of {tag} "
                f"({group}) unresolved: {exc}. New entries stay blocked. Check the position at "
                f"the broker and decide with resolve_order for {cids}: action 'filled' with "
                "the price (and quantity), 'not_filled', or 'flatten' with a quantity")
        self._alert(text)
        trade = self._open.get(tag)
        if group == "exit" and trade is not None and not trade.hold:
            self._hold(trade, f"exit orders unresolved past the deadline: {exc}")

    def _deadline(self, tag: str, group: str) -> datetime | None:
        """When an unresolved order needs the operator: 15 minutes before the session close
        of its trading date (45 on the expiry day of one of its contracts)."""
        rows = self._intents.group(tag, group)
        if not rows:
            return None
        day = rows[0].trade_date
        close = self._session_close(day)
        expiries = {r.leg.expiry for r in rows if r.leg is not None and r.leg.expiry}
        margin = EXPIRY_DAY_DEADLINE_BEFORE_CLOSE if day in expiries else DEADLINE_BEFORE_CLOSE
        return close - margin

    # ------------------------------------------------------------------ operator
    def _operator_resolve(self, msg: ResolveOrder) -> None:
        """The operator's decision on an unresolved order, then a resolution round."""
        row = self._intents.by_correlation_id(msg.correlation_id)
        who = f"operator {msg.by}"
        if row is None or not row.is_order or row.settled_at is not None or (
                row.terminal and msg.action != "flatten"):
            logger.warning("resolve_order %s refused: not an unresolved order intent (%s)",
                           msg.correlation_id, row.state if row else "unknown")
            return
        if msg.action == "filled":
            qty = msg.quantity or row.quantity
            if msg.price is None or msg.price <= 0 or not 0 < qty <= row.quantity:
                logger.warning("resolve_order %s refused: 'filled' needs a price and a quantity "
                               "of at most %d", msg.correlation_id, row.quantity)
                return
            self._intents.update(row.id, state="TRADED" if qty == row.quantity else "CANCELLED",
                                 filled_qty=qty, avg_price=msg.price,
                                 resolution=f"{who}: marked filled {qty} at {msg.price}")
        elif msg.action == "not_filled":
            self._intents.update(row.id, state="CANCELLED",
                                 resolution=f"{who}: marked not filled")
        elif msg.action == "flatten":
            qty = msg.quantity or 0
            if qty <= 0 or self._live is None:
                logger.warning("resolve_order %s refused: 'flatten' needs a quantity and a live "
                               "broker", msg.correlation_id)
                return
            why = f"{who}: flatten {qty} for {row.correlation_id}"
            if group_of(row.purpose) == "entry":  # netted out by the entry's own books
                done = self._live.flatten_entry_leg(row.trade_tag, row.leg_index, qty,
                                                    reason=why)
            else:
                side = Side.BUY if row.side == "SELL" else Side.SELL
                done = self._live.send_operator_order(
                    tag=row.trade_tag, security_id=row.security_id, side=side, quantity=qty,
                    leg=row.leg, reason=why)
            if not row.terminal:
                self._intents.update(row.id, state="CANCELLED", resolution=(
                    f"{who}: flattened {qty} with an opposite order ({done.status} "
                    f"{done.filled} at {done.price}); the intent is taken as not filled"))
        else:
            logger.warning("resolve_order %s refused: unknown action %r", msg.correlation_id,
                           msg.action)
            return
        if row.parent_id is not None and self._live is not None:
            self._live.roll_up(self._intents.get(row.parent_id))
        logger.warning("order %s resolved by %s: %s", msg.correlation_id, who, msg.action)
        self._forget((row.trade_tag, group_of(row.purpose)))
        self._resolve_round()

    # ------------------------------------------------------------------ holds and alerts
    def _alert(self, text: str) -> None:
        """Something the operator must act on: CRITICAL in the log and an alert."""
        logger.critical("%s", text)
        self.publish(self.new(AlertRaised, source="executor", text=text))

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
                                   "position is checked (the close sends only this trade's "
                                   "share of what the broker holds; what the broker no longer "
                                   "holds is recorded with close mode record_from_broker, "
                                   "confirmed)."))
        self.send("risk", self.new(PauseEntries, reason=f"{trade.tag} on hold: {trade.hold}",
                                   source="executor"))

    def _unhedged(self, tag: str, exc: UnhedgedExposure) -> None:
        """Legs may be open at the broker outside our books: stop entries, tell a human."""
        logger.critical("NAKED LEG(S) for %s at the broker: %s — close them by hand", tag,
                        exposure_text(exc.open_legs))
        self.send("risk", self.new(PauseEntries, reason=f"unhedged legs for {tag}: "
                                   f"{exposure_text(exc.open_legs)}", source="executor"))

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


__all__ = ["ExecutorActor"]
