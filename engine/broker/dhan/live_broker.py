"""Live broker on Dhan: the PaperBroker interface (``execute`` / ``quote``) with real orders,
every order intent persisted before the call (``engine.execution.intents``).

**Order type.** A marketable LIMIT order at the touch plus/minus ``limit_ticks`` ticks (BUY at
ask + n ticks, SELL at bid - n ticks), validity DAY, product ``MARGIN`` (carry-forward: Dhan
squares INTRADAY positions off at 15:20, which would silently close a multi-day structure).
An order still open after ``fill_timeout_s`` is cancelled and its state re-checked (a cancel
can race a fill). Unwinding orders are MARKET (certainty of execution beats price).

**Intent first.** Each leg's row in ``order_intents`` (tag, purpose, leg, side, quantity in
units, product, correlation id, state ``new``) is committed *before* its order is sent, one
child row per freeze-quantity slice likewise, and every row follows its order through
Dhan's statuses. A restart rebuilds in-flight orders from the unsettled rows (:meth:`resume`)
and never re-sends them.

**Unresolved, never "not filled".** When an order's outcome cannot be established (the place
call timed out or lost its answer and the lookups within the client's grace found nothing or
failed; or the order's status cannot be read), the row becomes ``unresolved`` and is looked up
again — first in the order-update feed (:mod:`engine.broker.dhan.order_feed`: a final state
heard there is used as is, REST answers when it knows only an open state or nothing), then by
order id, by correlation id, in the order book (which lists TRANSIT orders that
``/orders/external`` answers 404 for), trades from the trade book — with back-off, for
``resolve_window_s`` inside the call, then by the executor's :meth:`resume` rounds until the
session deadline or an operator's decision. Nothing is reversed or re-sent on an assumption:
:class:`~engine.execution.paper.OrdersUnresolved` is raised and no further leg goes out. A
late order that appears is adopted into its intent (its fill is the intent's fill).

**Entries are all-or-nothing; exits roll forward.**

* Legs are sent one at a time, BUY legs first. That order follows from the invariant that the
  account never holds an unhedged short option, nor more short units than long cover on a
  structure: a wing is bought before its short is sold, and on the way out a short is bought
  back before its wing is sold.
* An entry leg that is known not (fully) filled — rejected, cancelled, timed out, or
  PART_TRADED and cancelled for the rest — makes the entry fail: every quantity *known* to
  have filled is unwound with opposite MARKET orders (BUY-backs of shorts first, and a wing is
  never sold while its short could not be bought back), and :class:`OrderRejectedError` /
  :class:`FillTimeoutError` is raised. An entry whose later leg is unresolved waits: if that
  leg did fill, the entry is complete; if it is known not filled, the known fills are unwound.
  A resumed entry never sends legs it had not sent (the signal is stale): it completes or
  unwinds.
* An exit never reverses a filled exit leg (that would re-open the risk the exit was
  closing). A leg not (fully) filled is re-priced from a fresh quote and sent again for the
  remaining quantity (up to ``exit_attempts`` orders per leg and close request, the limit
  widened by ``limit_ticks`` each time); SELL legs wait until every BUY leg is filled. When
  legs stay unfilled, :class:`~engine.execution.paper.ExitIncomplete` names what the broker
  still holds for the trade (security, side, quantity): the executor puts the trade on hold.
  An exit that filled nothing at all raises :class:`OrderRejectedError` /
  :class:`FillTimeoutError`: nothing changed, the close may be tried again.
* A failed unwind raises :class:`NakedLegError` naming the exposure (CRITICAL).

**Correlation ids** are ``make_correlation_id(correlation_base, leg, attempt)``, slices
``slice_correlation_id(leg_id, k)``; the attempt is the first whose ids are neither in
today's order book nor in ``order_intents``, so an id is never reused.

**Freeze quantity.** A leg larger than the exchange allows in one order
(``max_order_qty(security_id, trade_date)``) is sent as slices of at most that size, one after
the other, each awaited to a final state before the next. The leg's ``Fill`` carries the
volume-weighted price, the summed per-order charges, the orders' ids joined by commas and the
leg's correlation id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.correlation import make_correlation_id, slice_correlation_id
from engine.broker.dhan.errors import (
    DhanError,
    IPNotWhitelistedError,
    OrderInTransitError,
    OrderStateUnknownError,
)
from engine.broker.dhan.models import FINAL_STATUSES, Order, OrderRequest
from engine.broker.dhan.slicing import slice_quantities
from engine.clock import Clock
from engine.execution.charges import order_charges, sum_charges
from engine.execution.intents import (
    Intent,
    IntentStore,
    exposure_text,
    leg_from_json,
    leg_to_json,
)
from engine.execution.paper import (
    TICK,
    ExecutionRefused,
    ExitIncomplete,
    Fill,
    NoQuote,
    OrdersUnresolved,
    Quote,
    UnhedgedExposure,
)
from engine.messages.legs import Leg, Side

if TYPE_CHECKING:
    from engine.broker.dhan.order_feed import OrderFeed
    from engine.execution.preflight import LivePreflight

logger = logging.getLogger(__name__)

PRODUCT_TYPES = ("INTRADAY", "MARGIN")
MAX_ATTEMPTS = 20        # correlation-id attempts per leg and day; cancels per order
EXIT_ATTEMPTS = 3        # orders per exit leg and close request (re-priced each time)
FLATTEN_ATTEMPTS = 3     # unwinding orders per entry leg
CANCEL_ROUNDS = 3        # cancels of one order before it is declared unresolved
UNRESOLVED = "unresolved"
_STATES = {"TRANSIT", "PENDING", "PART_TRADED", "TRADED", "REJECTED", "CANCELLED", "EXPIRED"}


class LiveOrderError(ExecutionRefused):
    """A live ``execute`` failed and left nothing open (known fills were unwound).

    Attributes:
        leg_index: index (in the caller's legs) of the leg that failed.
        order_id: Dhan order id of that leg (``None`` if never accepted).
        status: final status (``REJECTED``, ``CANCELLED``, ``EXPIRED``, ``TIMEOUT``, ...).
        reason: the broker's reason text.
        flattened: order ids of the unwinding orders sent.
    """

    def __init__(self, message: str, *, leg_index: int, order_id: str | None, status: str,
                 reason: str, flattened: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.leg_index, self.order_id, self.status = leg_index, order_id, status
        self.reason, self.flattened = reason, flattened


class OrderRejectedError(LiveOrderError):
    """Dhan refused, rejected or cancelled a leg."""


class FillTimeoutError(LiveOrderError):
    """A leg did not fill within ``fill_timeout_s`` (cancelled; known fills unwound)."""


class NakedLegError(UnhedgedExposure):
    """Known fills could not be unwound: positions are open at the broker that no trade holds.

    Attributes:
        open_legs: ``(security_id, side, quantity)`` still open (side BUY = long).
    """

    def __init__(self, message: str, *, open_legs: tuple[tuple[str, str, int], ...]) -> None:
        super().__init__(message, open_legs=open_legs)


@dataclass(frozen=True, slots=True)
class _Done:
    """Outcome of one order (or of a leg's slices): filled quantity and average price, final
    status (``TIMEOUT`` = cancelled by us at the fill timeout; ``unresolved``), reason;
    ``parts`` = (quantity, price) filled per order, for the charges."""

    order_id: str
    status: str
    filled: int
    price: Decimal | None
    reason: str
    parts: tuple[tuple[int, Decimal], ...] = ()

    @property
    def unresolved(self) -> bool:
        return self.status == UNRESOLVED


@dataclass
class _Book:
    """What one leg has filled so far, over every order of its group."""

    filled: int = 0
    parts: list[tuple[int, Decimal]] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    cid: str | None = None
    attempts: int = 0
    last: str = ""

    def add(self, done: _Done) -> None:
        self.filled += done.filled
        self.parts.extend(done.parts)
        self.order_ids.extend(i for i in done.order_id.split(",") if i)
        self.last = f"{done.status}: {done.reason}"


def _opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def _vwap(parts: Iterable[tuple[int, Decimal]]) -> Decimal | None:
    parts = list(parts)
    qty = sum(q for q, _ in parts)
    if qty <= 0:
        return None
    return (sum((px * q for q, px in parts), Decimal(0)) / qty).quantize(Decimal("0.01"))


def _leg_order(legs: tuple[Leg, ...] | list[Leg]) -> list[int]:
    """BUY legs first (wings before shorts in, shorts bought back before wings out)."""
    return sorted(range(len(legs)), key=lambda i: (legs[i].side is not Side.BUY, i))


def limit_price(side: Side, quote: Quote, ticks: int) -> Decimal:
    """BUY at ask + ``ticks`` ticks, SELL at bid - ``ticks`` ticks (floored at one tick).

    Raises:
        NoQuote: the quote is not two-sided.
    """
    if quote.bid <= 0 or quote.ask <= 0 or quote.bid > quote.ask:
        raise NoQuote(f"no two-sided quote (bid {quote.bid}, ask {quote.ask})")
    if side is Side.BUY:
        px = (quote.ask + TICK * ticks) / TICK
        return px.to_integral_value(ROUND_CEILING) * TICK
    px = (quote.bid - TICK * ticks) / TICK
    return max(px.to_integral_value(ROUND_FLOOR) * TICK, TICK)


class DhanLiveBroker:
    """Sends legs as Dhan orders and follows them to a known outcome (module docstring).

    Args:
        client: the Dhan client (its token provider follows the stored token).
        clock: engine clock (the trading date of resumed exits; timeouts use real time).
        intents: the ``order_intents`` store (every intent is written there first).
        quotes: ``quotes(security_id) -> Quote`` (the market data port's ``quote``).
        product_type: ``MARGIN`` (carry-forward, default) or ``INTRADAY`` (refused by the
            wiring for strategies that hold overnight).
        fill_timeout_s: real seconds to wait for an order to fill before cancelling it.
        limit_ticks: slippage cap in ticks for the marketable limit.
        poll_interval_s: order-status polling interval.
        exchange_segment: ``NSE_FNO`` for NIFTY derivatives.
        max_order_qty: ``(security_id, trade_date) -> largest single order or None``; larger
            legs are sliced. ``None`` (or an unknown answer): legs are never sliced.
        resolve_window_s: real seconds an order in doubt is looked up inside ``execute``
            before :class:`OrdersUnresolved` hands it to the executor's resolution rounds.
        lookup_backoff_s: ``(first, longest)`` pause between lookups of an order in doubt.
        exit_attempts: orders per exit leg and close request.
        sleep: injectable sleeper (tests).
        order_feed: the order-update feed (:class:`~engine.broker.dhan.order_feed.OrderFeed`),
            consulted before the REST lookups; ``None``: REST only.
        preflight: checks an entry passes before any of its orders is sent (live-entry gate,
            margin against the available funds: :mod:`engine.execution.preflight`); a DH-911
            answered to any order pauses live entries through its gate. ``None``: none.
    """

    mode = "live"

    def __init__(self, client: DhanClient, clock: Clock, *, intents: IntentStore,
                 quotes: Callable[[str], Quote] | None = None, product_type: str = "MARGIN",
                 fill_timeout_s: float = 10.0, limit_ticks: int = 3,
                 poll_interval_s: float = 0.1, exchange_segment: str = "NSE_FNO",
                 max_order_qty: Callable[[str, date], int | None] | None = None,
                 resolve_window_s: float = 30.0,
                 lookup_backoff_s: tuple[float, float] = (0.2, 5.0),
                 exit_attempts: int = EXIT_ATTEMPTS,
                 sleep: Callable[[float], None] = time.sleep,
                 order_feed: OrderFeed | None = None,
                 preflight: LivePreflight | None = None) -> None:
        product = str(product_type).upper()
        if product not in PRODUCT_TYPES:
            raise ValueError(f"product_type must be one of {', '.join(PRODUCT_TYPES)}, "
                             f"got {product_type!r}")
        if fill_timeout_s <= 0 or poll_interval_s <= 0:
            raise ValueError("fill_timeout_s and poll_interval_s must be positive")
        if limit_ticks < 0:
            raise ValueError(f"limit_ticks must be >= 0, got {limit_ticks}")
        if resolve_window_s < 0 or exit_attempts < 1:
            raise ValueError("resolve_window_s must be >= 0 and exit_attempts >= 1")
        self._client, self._clock, self._quotes = client, clock, quotes
        self.intents = intents
        self.product_type, self.fill_timeout_s = product, float(fill_timeout_s)
        self.limit_ticks, self.poll_interval_s = int(limit_ticks), float(poll_interval_s)
        self.exchange_segment = exchange_segment
        self.resolve_window_s = float(resolve_window_s)
        self.lookup_backoff_s = (float(lookup_backoff_s[0]), float(lookup_backoff_s[1]))
        self.exit_attempts = int(exit_attempts)
        self._max_order_qty = max_order_qty
        self._sleep = sleep
        self.order_feed = order_feed
        self.preflight = preflight

    # ------------------------------------------------------------------ port
    def quote(self, security_id: str) -> Quote:
        """The current quote from the market data port.

        Raises:
            NoQuote: no quote source configured, or no quote for ``security_id``.
        """
        if self._quotes is None:
            raise NoQuote("the live broker has no market data to quote from")
        return self._quotes(security_id)

    def execute(self, legs: tuple[Leg, ...], *, correlation_base: str, trade_date: date,
                purpose: str = "entry", tag: str | None = None,
                context: dict[str, Any] | None = None) -> list[Fill]:
        """An entry (all-or-nothing) or an exit (rolls forward); see the module docstring.

        Args:
            legs: the legs to trade (an exit: the closing legs of the whole trade; what an
                earlier, unsettled close of the same tag already filled is not sent again).
            correlation_base: prefix of the correlation ids (the tag; ``<tag>-X`` for exits).
            trade_date: the trading date (freeze quantities, charges).
            purpose: ``entry`` or ``exit``.
            tag: the trade tag (default ``correlation_base``).
            context: entry only — kept with the intents so that a restart can record the
                trade (strategy, direction, params, opened_at).

        Returns:
            One ``Fill`` per leg, in the order of ``legs``.

        Raises:
            NoQuote: a leg has no quote (nothing was sent).
            OrderRejectedError / FillTimeoutError: nothing is left open (entry: known fills
                unwound; exit: nothing filled).
            OrdersUnresolved: an order's outcome is unknown; resume later.
            ExitIncomplete: an exit filled partly; the rest could not be filled.
            NakedLegError: an unwind failed.
        """
        if not legs:
            raise ValueError("execute needs at least one leg")
        tag = tag or correlation_base
        if purpose == "entry":
            return self._enter(tuple(legs), correlation_base, trade_date, tag, context or {})
        if purpose == "exit":
            return self._exit(tuple(legs), correlation_base, trade_date, tag,
                              window=self.resolve_window_s, roll=True,
                              attempts=self.exit_attempts)
        raise ValueError(f"purpose must be 'entry' or 'exit', got {purpose!r}")

    def pending(self) -> list[tuple[str, str]]:
        """``(tag, group)`` of every group of unsettled intents (``entry``/``exit``/``operator``)."""
        return self.intents.pending_groups()

    def resume(self, tag: str, group: str, *, exit_legs: tuple[Leg, ...] | None = None,
               window_s: float = 0.0, roll: bool = True, attempts: int | None = None
               ) -> list[Fill]:
        """Continue what a group of unsettled intents started (after a restart, or a round
        of the executor's resolution): look every open order up (cancelling those still
        resting), then — entry: the fills when every leg filled, else unwind the known
        fills; exit: roll forward (``roll``; the remaining legs re-priced) or only report;
        operator: settle once terminal.

        Returns / raises: as :meth:`execute` (``[]`` for a settled operator group).
        """
        rows = self.intents.group(tag, group)
        if not rows:
            raise LookupError(f"no unsettled {group} intents for {tag}")
        if group == "entry":
            return self._resume_entry(tag, rows, window_s)
        if group == "exit":
            if exit_legs is None:
                raise ValueError("resuming an exit needs the trade's exit legs")
            base = str(rows[0].payload.get("base") or f"{tag}-X")
            return self._exit(tuple(exit_legs), base, self._clock.now().date(), tag,
                              window=window_s, roll=roll,
                              attempts=attempts or self.exit_attempts)
        if group == "operator":
            self._resolve_open(rows, window_s)
            rows = self.intents.group(tag, group)
            open_rows = [r for r in rows if r.is_order and not r.terminal]
            if open_rows:
                raise self._unresolved(tag, "operator order", open_rows, ())
            self.intents.settle(tag, "operator", "operator order terminal")
            return []
        raise ValueError(f"unknown intent group {group!r}")

    def send_operator_order(self, *, tag: str, security_id: str, side: Side, quantity: int,
                            leg: Leg | None = None, reason: str) -> _Done:
        """An operator's flatten: one MARKET order (intent ``operator``), followed to its end
        (an unresolved one is resolved by :meth:`resume` like any other)."""
        base = f"{tag}-OP"
        used = self._used_correlation_ids(base, strict=False)
        cid, attempt = self._fresh_cid(base, "0", used)
        leg = leg or Leg(security_id=security_id, side=side, quantity=quantity)
        return self._send_leg(tag, "operator", 0, attempt, leg, side, quantity, cid, "MARKET",
                              None, {}, self._clock.now().date(), {"reason": reason},
                              window=self.resolve_window_s)

    def flatten_entry_leg(self, tag: str, leg_index: int, quantity: int, *, reason: str
                          ) -> _Done:
        """An operator's flatten within an entry: a MARKET order opposite to entry leg
        ``leg_index`` for ``quantity`` units, recorded as a ``flatten`` intent of the entry
        (so the entry's books net it out)."""
        rows = self.intents.group(tag, "entry")
        first = next((r for r in rows if r.purpose == "entry"), None)
        if first is None:
            raise LookupError(f"no unsettled entry of {tag}")
        legs = [leg_from_json(d) for d in first.payload.get("legs", [])]
        leg = legs[leg_index]
        base = str(first.payload.get("base") or tag)
        caps = {leg.security_id: self._cap(leg.security_id, first.trade_date)}
        used = self._used_correlation_ids(base, strict=False)
        slices = len(slice_quantities(quantity, caps[leg.security_id]))
        cid, attempt = self._fresh_cid(base, f"U{leg_index}", used, slices)
        return self._send_leg(tag, "flatten", leg_index, attempt, leg, _opposite(leg.side),
                              quantity, cid, "MARKET", None, caps, self._clock.now().date(),
                              {"base": base, "reason": reason}, window=self.resolve_window_s)

    # ------------------------------------------------------------------ entry
    def _enter(self, legs: tuple[Leg, ...], base: str, trade_date: date, tag: str,
               context: dict[str, Any]) -> list[Fill]:
        if self.intents.has_open(tag, "entry"):
            raise OrderRejectedError(
                f"entry {tag} already has orders whose outcome is not booked: nothing sent",
                leg_index=0, order_id=None, status="NOT_SENT", reason="entry in flight")
        # freeze limits first: the first call of a day may download the instrument master,
        # and the limit prices must not age meanwhile
        caps = {leg.security_id: self._cap(leg.security_id, trade_date) for leg in legs}
        prices = [limit_price(leg.side, self.quote(leg.security_id), self.limit_ticks)
                  for leg in legs]
        checked = self._preflight(legs, prices, context)
        used = self._used_correlation_ids(base, strict=True)
        payload = {"legs": [leg_to_json(leg) for leg in legs], "context": context, "base": base}
        if checked:
            payload["preflight"] = checked
        fills: dict[int, Fill] = {}
        for i in _leg_order(legs):
            leg = legs[i]
            slices = len(slice_quantities(leg.quantity, caps[leg.security_id]))
            cid, attempt = self._fresh_cid(base, str(i), used, slices)
            done = self._send_leg(tag, "entry", i, attempt, leg, leg.side, leg.quantity, cid,
                                  "LIMIT", prices[i], caps, trade_date, payload,
                                  window=self.resolve_window_s)
            if done.unresolved:
                raise self._unresolved_entry(tag)
            if done.status == "TRADED" and done.filled == leg.quantity and done.price is not None:
                fills[i] = self._fill(leg, done.parts, done.order_id.split(","), cid, trade_date)
                logger.info("live %s leg %d %s %s x%d filled at %s (order %s)", base, i,
                            leg.side.value, leg.security_id, leg.quantity, done.price,
                            done.order_id)
                continue
            cls = FillTimeoutError if done.status == "TIMEOUT" else OrderRejectedError
            cause = (f"live order {cid} ({leg.side.value} {leg.security_id} x{leg.quantity}) "
                     f"{done.status}: {done.reason}")
            self._unwind(tag, base, trade_date, caps, used, cause, cls, leg_index=i,
                         order_id=done.order_id or None, status=done.status, reason=done.reason)
        return [fills[i] for i in range(len(legs))]

    def _preflight(self, legs: tuple[Leg, ...], prices: list[Decimal],
                   context: dict[str, Any]) -> dict[str, str]:
        """The preflight's figures, or OrderRejectedError (NOT_SENT) with its reason."""
        if self.preflight is None:
            return {}
        from engine.execution.preflight import PreflightRefused

        try:
            return self.preflight.check_entry(legs, prices, context)
        except PreflightRefused as exc:
            logger.warning("live entry refused before sending: %s", exc)
            raise OrderRejectedError(str(exc), leg_index=0, order_id=None, status="NOT_SENT",
                                     reason=str(exc)) from None

    def _resume_entry(self, tag: str, rows: list[Intent], window: float) -> list[Fill]:
        self._resolve_open(rows, window)
        rows = self.intents.group(tag, "entry")
        if any(r.is_order and not r.terminal for r in rows):
            raise self._unresolved_entry(tag, rows)
        first = next(r for r in rows if r.purpose == "entry")
        legs = [leg_from_json(d) for d in first.payload.get("legs", [])]
        base = str(first.payload.get("base") or tag)
        books = self._books(rows, "entry")
        flattening = any(r.purpose == "flatten" for r in rows)
        missing = [i for i, leg in enumerate(legs) if books.get(i, _Book()).filled != leg.quantity]
        trade_date = first.trade_date
        if legs and not flattening and not missing:
            return [self._fill(leg, books[i].parts, books[i].order_ids, books[i].cid or "",
                               trade_date) for i, leg in enumerate(legs)]
        caps = {leg.security_id: self._cap(leg.security_id, trade_date) for leg in legs}
        used = self._used_correlation_ids(base, strict=False)
        i = missing[0] if missing else 0
        book = books.get(i, _Book())
        cause = (f"entry {tag} interrupted: leg {i} {legs[i].side.value} {legs[i].security_id} "
                 f"x{legs[i].quantity} filled {book.filled}"
                 + (f" ({book.last})" if book.last else " (never sent)")) if legs else \
            f"entry {tag} interrupted"
        self._unwind(tag, base, trade_date, caps, used, cause, OrderRejectedError, leg_index=i,
                     order_id=None, status="INTERRUPTED", reason=cause)
        raise AssertionError("unreachable")  # pragma: no cover  (_unwind always raises)

    def _unwind(self, tag: str, base: str, trade_date: date, caps: dict[str, int | None],
                used: set[str], cause: str, cls: type[LiveOrderError], *, leg_index: int,
                order_id: str | None, status: str, reason: str) -> None:
        """Unwind every quantity of ``tag``'s entry known to have filled, then raise ``cls``
        (or OrdersUnresolved / NakedLegError). Shorts are bought back before wings are sold,
        and a wing is kept when its short could not be bought back."""
        rows = self.intents.group(tag, "entry")
        first = next((r for r in rows if r.purpose == "entry"), None)
        legs = [leg_from_json(d) for d in (first.payload.get("legs", []) if first else [])]
        entry = self._books(rows, "entry")
        flat = self._books(rows, "flatten")
        todo = [(i, leg, entry.get(i, _Book()).filled - flat.get(i, _Book()).filled)
                for i, leg in enumerate(legs)]
        todo = [t for t in todo if t[2] > 0]
        todo.sort(key=lambda t: (t[1].side is not Side.SELL, t[0]))  # buy shorts back first
        if todo:
            logger.critical("live %s: %s; unwinding the known fills %s", tag, cause,
                            exposure_text([(leg.security_id, leg.side.value, q)
                                           for _, leg, q in todo]))
        sent: list[str] = []
        failed: list[tuple[str, str, int]] = []
        for i, leg, qty in todo:
            if failed and leg.side is Side.BUY and any(side == "SELL" for _, side, _ in failed):
                failed.append((leg.security_id, leg.side.value, qty))  # keep the wing
                continue
            side = _opposite(leg.side)
            remaining = qty
            tries = flat.get(i, _Book()).attempts
            while remaining > 0 and tries < FLATTEN_ATTEMPTS:
                slices = len(slice_quantities(remaining, caps.get(leg.security_id)))
                cid, attempt = self._fresh_cid(base, f"U{i}", used, slices)
                done = self._send_leg(tag, "flatten", i, attempt, leg, side, remaining, cid,
                                      "MARKET", None, caps, trade_date, {"base": base},
                                      window=self.resolve_window_s)
                tries += 1
                sent.extend(x for x in done.order_id.split(",") if x)
                if done.unresolved:
                    raise self._unresolved_entry(tag)
                remaining -= done.filled
            if remaining > 0:
                failed.append((leg.security_id, leg.side.value, remaining))
            else:
                logger.error("FLATTENED leg %d of %s: %s %s x%d", i, tag, side.value,
                             leg.security_id, qty)
        if failed:
            message = (f"NAKED LEG(S) after a failed entry of {tag} ({cause}): could not "
                       f"unwind {exposure_text(failed)}; close them at the broker by hand"
                       + self._broker_net_text({sid for sid, _, _ in failed}))
            logger.critical("%s", message)
            raise NakedLegError(message, open_legs=tuple(failed))
        self.intents.settle(tag, "entry", f"entry refused: {cause}"
                            + ("; known fills unwound" if sent else ""))
        message = cause + (f"; unwound the known fills with orders {sent}" if sent else "")
        logger.error("%s", message)
        raise cls(message, leg_index=leg_index, order_id=order_id, status=status,
                  reason=reason, flattened=tuple(sent))

    # ------------------------------------------------------------------ exit
    def _exit(self, legs: tuple[Leg, ...], base: str, trade_date: date, tag: str, *,
              window: float, roll: bool, attempts: int,
              limits: dict[int, int] | None = None) -> list[Fill]:
        """Roll an exit forward (module docstring). ``limits``: at most that many units of
        leg ``i`` are sent in this call (a held trade's manual close sends only what the
        broker still holds for the trade); a leg without a limit may fill its whole rest.

        A leg sent before (in this call or by an earlier order of the group) is sent again
        only once the broker's positions still show its rest open and the order book shows
        no live order of this exit on its security (:meth:`_resend_problem`); otherwise
        nothing more is sent and :class:`ExitIncomplete` is raised."""
        rows = self.intents.group(tag, "exit")
        if rows:
            self._resolve_open(rows, window)
            rows = self.intents.group(tag, "exit")
            open_rows = [r for r in rows if r.is_order and not r.terminal]
            if open_rows:
                raise self._unresolved(tag, "exit", open_rows, self._exit_exposure(
                    legs, self._books(rows, "exit")), legs=legs)
        books = self._books(rows, "exit")
        for i in range(len(legs)):
            books.setdefault(i, _Book())
        # what this call may fill per leg (the whole leg unless limited)
        target = {i: leg.quantity if limits is None or i not in limits else
                  min(leg.quantity, books[i].filled + max(0, int(limits[i])))
                  for i, leg in enumerate(legs)}
        caps = {leg.security_id: self._cap(leg.security_id, trade_date) for leg in legs}
        last = ""
        if roll:
            used = self._used_correlation_ids(base, strict=False)
            order = _leg_order(legs)
            tries = dict.fromkeys(range(len(legs)), 0)
            payload = {"base": base, "legs": [leg_to_json(leg) for leg in legs]}
            while True:
                sent = False
                for i in order:
                    leg = legs[i]
                    remaining = target[i] - books[i].filled
                    if remaining <= 0:
                        continue
                    if leg.side is Side.SELL and any(books[j].filled < target[j]
                                                     for j in order if legs[j].side is Side.BUY):
                        break  # a wing is sold only once its short is bought back
                    if tries[i] >= attempts:
                        continue
                    if tries[i] > 0 or books[i].attempts > 0:  # a re-send of this leg
                        problem = self._resend_problem(base, leg, remaining)
                        if problem:
                            raise self._resend_stopped(tag, i, leg, remaining, problem, legs,
                                                       books, target)
                    tries[i] += 1
                    try:
                        price = limit_price(leg.side, self.quote(leg.security_id),
                                            self.limit_ticks * tries[i])
                    except NoQuote as exc:
                        last = f"leg {i}: no quote ({exc})"
                        tries[i] = attempts
                        continue
                    slices = len(slice_quantities(remaining, caps[leg.security_id]))
                    cid, attempt = self._fresh_cid(base, str(i), used, slices)
                    done = self._send_leg(tag, "exit", i, attempt, leg, leg.side, remaining, cid,
                                          "LIMIT", price, caps, trade_date, payload,
                                          window=window)
                    sent = True
                    if done.unresolved:
                        rows = self.intents.group(tag, "exit")
                        raise self._unresolved(
                            tag, "exit", [r for r in rows if r.is_order and not r.terminal],
                            self._exit_exposure(legs, self._books(rows, "exit")), legs=legs)
                    books[i].add(done)
                    books[i].cid = books[i].cid or cid
                    last = f"leg {i} {cid}: {done.status} ({done.reason})"
                    if books[i].filled < target[i]:
                        logger.warning("exit of %s leg %d: %d/%d filled (%s); the rest is "
                                       "re-priced and sent again", tag, i, books[i].filled,
                                       target[i], last)
                if not sent or all(books[i].filled >= target[i] for i in books):
                    break
        if all(books[i].filled == leg.quantity for i, leg in enumerate(legs)):
            fills = [self._fill(leg, books[i].parts, books[i].order_ids, books[i].cid or "",
                                trade_date) for i, leg in enumerate(legs)]
            for i, f in enumerate(fills):
                logger.info("live %s exit leg %d %s %s x%d filled at %s (orders %s)", tag, i,
                            f.leg.side.value, f.leg.security_id, f.leg.quantity, f.price,
                            f.order_id)
            return fills
        if roll and all(b.filled == 0 for b in books.values()):
            self.intents.settle(tag, "exit", f"exit not filled: {last}")
            cls = FillTimeoutError if "TIMEOUT" in last else OrderRejectedError
            raise cls(f"exit of {tag} not filled, nothing changed: {last}", leg_index=0,
                      order_id=None, status="TIMEOUT" if "TIMEOUT" in last else "REJECTED",
                      reason=last)
        exposure, unsent = self._held_exposure(legs, books, target), self._unsent(legs, target)
        message = (f"exit of {tag} incomplete ({last or 'waiting for the operator'}): the "
                   f"broker still holds {exposure_text(exposure)} for this trade"
                   + (f"; not sent (the broker does not hold it for this trade): "
                      f"{exposure_text(unsent)}" if unsent else "")
                   + self._broker_net_text({sid for sid, _, _ in exposure + unsent}))
        logger.critical("%s", message)
        raise ExitIncomplete(message, open_legs=exposure)

    def exit_within(self, legs: tuple[Leg, ...], *, correlation_base: str, trade_date: date,
                    tag: str, limits: dict[int, int]) -> list[Fill]:
        """An exit that sends at most ``limits[i]`` units of leg ``i`` (the manual close of a
        trade on hold: only this trade's share of what the broker holds; 0 = not sent).

        Returns / raises: as :meth:`execute` for an exit; legs left unsent make it
        :class:`ExitIncomplete` (unless nothing filled at all)."""
        if not legs:
            raise ValueError("exit_within needs at least one leg")
        return self._exit(tuple(legs), correlation_base, trade_date, tag,
                          window=self.resolve_window_s, roll=True, attempts=self.exit_attempts,
                          limits=dict(limits))

    def trade_book(self) -> list[Any]:
        """Today's trade book (``GET /trades``): every fill at the broker, with its order id,
        side, security, quantity, price and exchange time.

        Raises:
            DhanError: the trade book could not be read.
        """
        return self._client.trades()

    def _resend_problem(self, base: str, leg: Leg, remaining: int) -> str | None:
        """Why exit leg ``leg`` must not be sent again for ``remaining`` units (``None``: it
        may): the broker's positions must still show at least ``remaining`` open on its
        security (product :attr:`product_type`) in the direction being closed, and the order
        book must show no live order (TRANSIT/PENDING/PART_TRADED) of this exit (correlation
        ids of ``base``) on that security. Either source unreadable is a reason too."""
        sid = leg.security_id
        try:
            positions = self._client.positions(priority=True)
        except DhanError as exc:
            return f"broker positions could not be read ({type(exc).__name__}: {exc})"
        net = sum(p.net_qty for p in positions if p.security_id == sid
                  and p.exchange_segment == self.exchange_segment
                  and (p.product_type or self.product_type) == self.product_type)
        open_qty = -net if leg.side is Side.BUY else net
        if open_qty < remaining:
            held = "SHORT" if leg.side is Side.BUY else "LONG"
            return (f"broker positions show {max(open_qty, 0)} of security {sid} open {held} "
                    f"({self.product_type}, net {net:+d}), not the {remaining} the order would "
                    "close")
        try:
            book = self._client.order_list(priority=True)
        except DhanError as exc:
            return f"the order book could not be read ({type(exc).__name__}: {exc})"
        known = self.intents.correlation_ids(base)
        live = [o for o in book if o.security_id == sid and o.is_open and o.correlation_id
                and (o.correlation_id in known or o.correlation_id.startswith(f"{base}-"))]
        if live:
            return "an earlier order of this exit is still live at the broker: " + ", ".join(
                f"{o.correlation_id} (order {o.order_id} {o.status}, {o.filled_qty}/"
                f"{o.quantity} filled)" for o in live)
        return None

    def _resend_stopped(self, tag: str, i: int, leg: Leg, remaining: int, problem: str,
                        legs: tuple[Leg, ...], books: dict[int, _Book], target: dict[int, int]
                        ) -> ExitIncomplete:
        exposure, unsent = self._held_exposure(legs, books, target), self._unsent(legs, target)
        message = (f"exit of {tag} stopped before sending leg {i} ({leg.side.value} {remaining} "
                   f"of security {leg.security_id}) again: {problem}. Nothing more was sent; "
                   f"the broker holds {exposure_text(exposure)} for this trade unless an earlier "
                   "exit order still fills"
                   + (f"; not sent (the broker does not hold it for this trade): "
                      f"{exposure_text(unsent)}" if unsent else "")
                   + self._broker_net_text({sid for sid, _, _ in exposure + unsent}))
        logger.critical("%s", message)
        return ExitIncomplete(message, open_legs=exposure)

    @staticmethod
    def _held_exposure(legs: tuple[Leg, ...], books: dict[int, _Book], target: dict[int, int]
                       ) -> tuple[tuple[str, str, int], ...]:
        """What the trade still holds at the broker: each exit leg's unfilled rest up to
        ``target`` (the part this call was allowed to send), as a position."""
        return tuple((leg.security_id, _opposite(leg.side).value,
                      target[i] - books.get(i, _Book()).filled)
                     for i, leg in enumerate(legs) if target[i] > books.get(i, _Book()).filled)

    @staticmethod
    def _unsent(legs: tuple[Leg, ...], target: dict[int, int]) -> tuple[tuple[str, str, int], ...]:
        """The part of each exit leg this call was not allowed to send, as a position."""
        return tuple((leg.security_id, _opposite(leg.side).value, leg.quantity - target[i])
                     for i, leg in enumerate(legs) if leg.quantity > target[i])

    @staticmethod
    def _exit_exposure(legs: tuple[Leg, ...], books: dict[int, _Book]
                       ) -> tuple[tuple[str, str, int], ...]:
        """What the trade still holds: each exit leg's unfilled rest, as a position."""
        out = []
        for i, leg in enumerate(legs):
            rest = leg.quantity - books.get(i, _Book()).filled
            if rest > 0:
                out.append((leg.security_id, _opposite(leg.side).value, rest))
        return tuple(out)

    # ------------------------------------------------------------------ legs and orders
    def _send_leg(self, tag: str, purpose: str, index: int, attempt: int, leg: Leg, side: Side,
                  quantity: int, cid: str, order_type: str, price: Decimal | None,
                  caps: dict[str, int | None], trade_date: date, payload: dict[str, Any], *,
                  window: float) -> _Done:
        """One leg as one order, or as freeze-sized slices sent and awaited one by one; each
        intent is committed before its order leaves. Stops at the first slice that is not
        fully filled (or unresolved)."""
        sizes = slice_quantities(quantity, caps.get(leg.security_id))
        common = {"trade_date": trade_date, "tag": tag, "purpose": purpose, "leg_index": index,
                  "attempt": attempt, "security_id": leg.security_id, "side": side.value,
                  "product": self.product_type, "segment": self.exchange_segment,
                  "order_type": order_type, "price": price}
        row = self.intents.create(quantity=quantity, correlation_id=cid, sliced=len(sizes) > 1,
                                  payload={**payload, "leg": leg_to_json(leg)}, **common)
        if len(sizes) == 1:
            return self._place(row, window)
        logger.info("%s: %s %s x%d above the freeze quantity, sent as %d slices %s", cid,
                    side.value, leg.security_id, quantity, len(sizes), sizes)
        done: list[_Done] = []
        for k, size in enumerate(sizes):
            child = self.intents.create(quantity=size, correlation_id=slice_correlation_id(cid, k),
                                        parent_id=row.id,
                                        payload={"leg": leg_to_json(leg), "slice": k}, **common)
            one = self._place(child, window)
            done.append(one)
            if one.unresolved or one.status != "TRADED" or one.filled != size:
                break
        self.roll_up(row)
        parts = tuple(p for d in done for p in d.parts)
        qty = sum(q for q, _ in parts)
        last = done[-1]
        if any(d.unresolved for d in done):
            status = UNRESOLVED
        else:
            status = "TRADED" if last.status == "TRADED" and qty == quantity else last.status
        reason = last.reason if len(done) == 1 else f"slice {len(done)}/{len(sizes)}: {last.reason}"
        return _Done(order_id=",".join(d.order_id for d in done if d.order_id), status=status,
                     filled=qty, price=_vwap(parts), reason=reason, parts=parts)

    def _request(self, row: Intent) -> OrderRequest:
        return OrderRequest(
            security_id=row.security_id, exchange_segment=row.exchange_segment,
            transaction_type=row.side, quantity=row.quantity, order_type=row.order_type,
            product_type=row.product, correlation_id=row.correlation_id,
            price=row.price if row.order_type == "LIMIT" else None)

    def _place(self, row: Intent, window: float) -> _Done:
        """Send the order of an intent already committed, and follow it."""
        request = self._request(row)
        try:
            ack = self._client.place_order(request, priority=row.purpose != "entry")
        except OrderStateUnknownError as exc:
            row = self.intents.update(row.id, state=UNRESOLVED, reason=str(exc)[:1000])
            logger.error("order %s (%s %s x%d): outcome unknown (%s): UNRESOLVED, looking it up "
                         "(never re-sent)", row.correlation_id, row.side, row.security_id,
                         row.quantity, exc)
            return self._follow(row, None, window=window, lost=True)
        except DhanError as exc:
            self.intents.update(row.id, state="REJECTED", reason=str(exc)[:1000])
            if isinstance(exc, IPNotWhitelistedError) and self.preflight is not None:
                self.preflight.gate.block("ip", f"Dhan refused order {row.correlation_id} "
                                          f"because of the static IP ({exc.code or 'DH-911'}: "
                                          f"{exc}); check the IP whitelisted at Dhan against "
                                          "this machine's egress IP")
            return _Done(order_id="", status="REJECTED", filled=0, price=None, reason=str(exc))
        state = ack.status if ack.status in _STATES else "TRANSIT"
        row = self.intents.update(row.id, order_id=ack.order_id, state=state)
        return self._follow(row, ack.order_id, window=window)

    def _lookup(self, row: Intent, order_id: str | None) -> tuple[Order | None, str]:
        """The order of ``row`` from every source: the order-update feed (a final state
        there is used without REST), by id, by correlation id, the order book; the feed's
        open state when REST fails or finds nothing. Returns ``(order or None, why not
        found)``."""
        heard = self._feed_order(row, order_id)
        if heard is not None and heard.status in FINAL_STATUSES:
            return heard, ""
        try:
            order = self._client.get_order(order_id) if order_id else None
            if order is None:
                order = self._client.find_order(row.correlation_id)
        except DhanError as exc:
            if heard is not None:
                return heard, ""
            return None, f"lookup failed ({exc})"
        if order is None:
            if heard is not None:
                return heard, ""
            return None, "not found by id, correlation id or in the order book"
        if (order.security_id != row.security_id or order.transaction_type != row.side
                or order.quantity != row.quantity):
            logger.critical("order %s with correlation id %s is %s %s x%d, not the intent's %s",
                            order.order_id, row.correlation_id, order.transaction_type,
                            order.security_id, order.quantity, row.describe())
            return None, f"order {order.order_id} does not match the intent"
        return order, ""

    def _feed_order(self, row: Intent, order_id: str | None) -> Order | None:
        """The order of ``row`` as the order-update feed last heard it (by correlation id,
        else order id), when it matches the intent (security, side, quantity, order id)."""
        if self.order_feed is None:
            return None
        update = self.order_feed.latest(correlation_id=row.correlation_id, order_id=order_id)
        if update is None:
            return None
        if (update.security_id != row.security_id or update.side != row.side
                or update.quantity != row.quantity
                or (order_id and update.order_id != order_id)):
            logger.error("order feed: order %s (correlation id %s) is %s %s x%d, not the "
                         "intent's %s: ignored, looking it up by REST", update.order_id,
                         update.correlation_id, update.side, update.security_id,
                         update.quantity, row.describe())
            return None
        return update.to_order()

    def _follow(self, row: Intent, order_id: str | None, *, window: float, lost: bool = False,
                cancel_now: bool = False) -> _Done:
        """Follow one order to a final state: poll it, cancel it at the fill timeout (again
        if the cancel does not take), and when it cannot be seen — lost answer, failed
        lookups — look it up with back-off for ``window`` seconds before declaring it
        unresolved. Found later, it is adopted into its intent."""
        start = time.monotonic()
        fill_deadline = start if cancel_now else start + self.fill_timeout_s
        lost_since: float | None = start if (lost or order_id is None) else None
        cancelled, cancels, lookups = False, 0, 0
        backoff = self.lookup_backoff_s[0]
        seen: tuple[str, int] = (row.state, row.filled_qty)
        why = ""
        while True:
            order, why = self._lookup(row, order_id)
            lookups += 1
            now = time.monotonic()
            if order is not None:
                if order_id is None or lost_since is not None:
                    how = (f"found at the broker ({order.status}) after {lookups} lookup(s)"
                           if order_id is None else None)
                    order_id = order.order_id
                    if how:
                        logger.warning("order %s %s: adopted into its intent", row.correlation_id,
                                       how)
                        row = self.intents.update(row.id, order_id=order_id, resolution=how)
                    lost_since, backoff = None, self.lookup_backoff_s[0]
                if (order.status, order.filled_qty) != seen:
                    seen = (order.status, order.filled_qty)
                    state = order.status if order.status in _STATES else row.state
                    row = self.intents.update(row.id, state=state,
                                              filled_qty=min(order.filled_qty, row.quantity))
                if order.status in FINAL_STATUSES:
                    return self._final(row, order, cancelled)
                if now >= fill_deadline:
                    if cancels >= CANCEL_ROUNDS * 2:
                        reason = (f"still {order.status} ({order.filled_qty}/{order.quantity} "
                                  f"filled) after {cancels} cancel attempts")
                        self.intents.update(row.id, state=UNRESOLVED, reason=reason)
                        return _Done(order_id=order_id, status=UNRESOLVED,
                                     filled=order.filled_qty, price=None, reason=reason)
                    cancels += 1
                    cancelled = self._cancel(order_id, row.correlation_id) or cancelled
                    fill_deadline = now + (max(2.0, self.fill_timeout_s / 2) if cancelled
                                           else self.poll_interval_s)
                    continue
                self._sleep(self.poll_interval_s)
                continue
            if lost_since is None:
                lost_since = now
            if now - lost_since >= window:
                reason = f"outcome unknown: {why} ({lookups} lookup(s) in {now - start:.1f}s)"
                self.intents.update(row.id, state=UNRESOLVED, reason=reason[:1000])
                logger.error("order %s (%s %s x%d) UNRESOLVED: %s", row.correlation_id, row.side,
                             row.security_id, row.quantity, reason)
                return _Done(order_id=order_id or "", status=UNRESOLVED, filled=row.filled_qty,
                             price=None, reason=reason)
            self._sleep(min(backoff, max(0.01, window - (now - lost_since))))
            backoff = min(backoff * 2, self.lookup_backoff_s[1])

    def _cancel(self, order_id: str, cid: str) -> bool:
        logger.warning("order %s (%s) not filled within %.1fs: cancelling", order_id, cid,
                       self.fill_timeout_s)
        try:
            self._client.cancel_order(order_id)
            return True
        except OrderInTransitError:
            return False  # try again at the next deadline
        except DhanError as exc:
            logger.warning("cancel of %s refused (%s); re-checking its state", order_id, exc)
            return True

    def _final(self, row: Intent, order: Order, cancelled_by_us: bool) -> _Done:
        price = order.average_traded_price
        filled = min(order.filled_qty, row.quantity)
        if filled > 0:
            price = self._traded_price(order) or price
        status, reason = order.status, order.oms_error_description or order.status
        if order.status in ("CANCELLED", "EXPIRED") and cancelled_by_us:
            status = "TIMEOUT"
            reason = (f"not filled within {self.fill_timeout_s:.1f}s, cancelled "
                      f"({filled}/{order.quantity} filled)")
        price = price.quantize(Decimal("0.01")) if price is not None else None
        self.intents.update(row.id, state=order.status, filled_qty=filled,
                            avg_price=price if filled else None, reason=reason[:1000])
        parts = ((filled, price),) if filled > 0 and price is not None else ()
        return _Done(order_id=order.order_id, status=status, filled=filled, price=price,
                     reason=reason, parts=parts)

    def _traded_price(self, order: Order) -> Decimal | None:
        """Volume-weighted price of the order's trades (``None`` when unavailable)."""
        try:
            trades = self._client.trades(order.order_id)
        except DhanError as exc:
            logger.warning("trades of %s not read (%s); using averageTradedPrice", order.order_id,
                           exc)
            return None
        qty = sum(t.traded_quantity for t in trades)
        if qty <= 0:
            return None
        return sum((t.traded_price * t.traded_quantity for t in trades), Decimal(0)) / qty

    def _resolve_open(self, rows: list[Intent], window: float) -> None:
        """Follow every order of ``rows`` not yet terminal (resting ones are cancelled: a
        resumed entry or exit re-decides from what filled)."""
        parents = set()
        for row in rows:
            if row.is_order and not row.terminal:
                self._follow(row, row.order_id, window=window, lost=row.order_id is None,
                             cancel_now=True)
                if row.parent_id is not None:
                    parents.add(row.parent_id)
        for parent in parents:
            self.roll_up(self.intents.get(parent))

    def roll_up(self, leg_row: Intent) -> None:
        """A sliced leg's row from its slices: filled, average price, state."""
        with self.intents.pool.connection() as conn:
            kids = conn.execute("SELECT state, filled_qty, avg_price, quantity FROM order_intents"
                                " WHERE parent_id = %s ORDER BY id", (leg_row.id,)).fetchall()
        if not kids:
            return
        parts = [(k["filled_qty"], k["avg_price"]) for k in kids
                 if k["filled_qty"] and k["avg_price"] is not None]
        filled = sum(k["filled_qty"] for k in kids)
        states = [k["state"] for k in kids]
        if UNRESOLVED in states:
            state = UNRESOLVED
        elif any(s not in FINAL_STATUSES for s in states):
            state = next(s for s in states if s not in FINAL_STATUSES)
        elif all(s == "TRADED" for s in states) and filled == leg_row.quantity:
            state = "TRADED"
        else:
            state = next((s for s in reversed(states) if s != "TRADED"), "CANCELLED")
        self.intents.update(leg_row.id, state=state, filled_qty=min(filled, leg_row.quantity),
                            avg_price=_vwap(parts))

    # ------------------------------------------------------------------ books
    @staticmethod
    def _books(rows: list[Intent], purpose: str) -> dict[int, _Book]:
        """Per leg index: what the orders of ``purpose`` filled (every attempt and slice)."""
        books: dict[int, _Book] = {}
        for r in rows:
            if r.purpose != purpose:
                continue
            book = books.setdefault(r.leg_index, _Book())
            if r.parent_id is None:
                book.cid = book.cid or r.correlation_id
                book.attempts += 1
            if not r.is_order:
                continue
            if r.filled_qty > 0 and r.avg_price is not None:
                book.filled += r.filled_qty
                book.parts.append((r.filled_qty, Decimal(r.avg_price)))
            if r.order_id:
                book.order_ids.append(r.order_id)
            book.last = f"{r.state}: {r.reason or ''}".strip()
        return books

    def _fill(self, leg: Leg, parts: Iterable[tuple[int, Decimal]], order_ids: Iterable[str],
              cid: str, trade_date: date) -> Fill:
        parts = list(parts)
        price = _vwap(parts)
        if price is None:
            raise ValueError(f"no fill for leg {leg.security_id}")
        charges = sum_charges([order_charges(kind=leg.kind.value, side=leg.side.value, price=px,
                                              quantity=qty, on=trade_date) for qty, px in parts])
        return Fill(leg=leg, price=price, charges=charges,
                    order_id=",".join(i for i in order_ids if i), correlation_id=cid)

    def _unresolved_entry(self, tag: str, rows: list[Intent] | None = None) -> OrdersUnresolved:
        rows = rows if rows is not None else self.intents.group(tag, "entry")
        first = next((r for r in rows if r.purpose == "entry"), None)
        legs = [leg_from_json(d) for d in (first.payload.get("legs", []) if first else [])]
        entry, flat = self._books(rows, "entry"), self._books(rows, "flatten")
        known = tuple((leg.security_id, leg.side.value,
                       entry.get(i, _Book()).filled - flat.get(i, _Book()).filled)
                      for i, leg in enumerate(legs)
                      if entry.get(i, _Book()).filled - flat.get(i, _Book()).filled > 0)
        return self._unresolved(tag, "entry", [r for r in rows if r.is_order and not r.terminal],
                                known)

    def _unresolved(self, tag: str, what: str, open_rows: list[Intent],
                    known: tuple[tuple[str, str, int], ...], *, legs: tuple[Leg, ...] = ()
                    ) -> OrdersUnresolved:
        doubt = tuple((r.correlation_id, r.side, r.quantity - r.filled_qty, r.security_id)
                      for r in open_rows)
        sids = {sid for sid, _, _ in known} | {r.security_id for r in open_rows} | {
            leg.security_id for leg in legs}
        message = (f"{what} of {tag}: the outcome of {len(doubt)} order(s) is unknown. For "
                   f"certain the broker holds {exposure_text(known)} from this trade; in doubt: "
                   + ", ".join(f"{side} {qty} of security {sid} (order {cid}: if it filled, "
                               f"the broker holds that much more {'long' if side == 'BUY' else 'short'})"
                               for cid, side, qty, sid in doubt)
                   + self._broker_net_text(sids))
        return OrdersUnresolved(message, open_legs=known, unresolved=doubt)

    def _broker_net_text(self, security_ids: set[str]) -> str:
        """``; broker positions now: ...`` for ``security_ids`` (best effort)."""
        if not security_ids:
            return ""
        try:
            net: dict[str, int] = {}
            for p in self._client.positions(priority=True):
                if p.security_id in security_ids:
                    net[p.security_id] = net.get(p.security_id, 0) + p.net_qty
        except DhanError as exc:
            return f"; broker positions unavailable ({type(exc).__name__})"
        return "; broker net positions now: " + ", ".join(
            f"{sid} {net.get(sid, 0):+d}" for sid in sorted(security_ids))

    # ------------------------------------------------------------------ ids and caps
    def _used_correlation_ids(self, base: str, *, strict: bool) -> set[str]:
        used = self.intents.correlation_ids(base)
        try:
            used |= {o.correlation_id for o in self._client.order_list() if o.correlation_id}
        except DhanError as exc:
            if strict:
                raise OrderRejectedError(f"order book unavailable, nothing sent: {exc}",
                                         leg_index=0, order_id=None, status="NOT_SENT",
                                         reason=str(exc)) from exc
            logger.warning("order book unavailable (%s): correlation ids from order_intents only",
                           exc)
        return used

    def _cap(self, security_id: str, trade_date: date) -> int | None:
        """Largest single order of ``security_id`` (``None``: unknown, never slice)."""
        if self._max_order_qty is None:
            return None
        cap = self._max_order_qty(security_id, trade_date)
        return cap if cap is not None and cap > 0 else None

    @staticmethod
    def _fresh_cid(base: str, leg: str, used: set[str], slices: int = 1) -> tuple[str, int]:
        """The leg's correlation id and attempt: the first attempt whose ids (the leg's, or its
        ``slices`` slices') are all unused; they are marked used."""
        for attempt in range(MAX_ATTEMPTS):
            cid = make_correlation_id(base, leg, attempt)
            ids = {cid} if slices <= 1 else {slice_correlation_id(cid, k)
                                             for k in range(slices)} | {cid}
            if not ids & used:
                used.update(ids)
                return cid, attempt
        raise OrderRejectedError(f"{base} leg {leg}: {MAX_ATTEMPTS} attempts already used",
                                 leg_index=int(leg) if leg.isdigit() else 0, order_id=None,
                                 status="NOT_SENT", reason="too many attempts")
