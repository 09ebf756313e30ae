"""Live broker on Dhan: the PaperBroker interface (``execute`` / ``quote``) with real orders.

Order type: a marketable LIMIT order at the touch plus/minus ``limit_ticks`` ticks (BUY at
ask + n ticks, SELL at bid - n ticks), validity DAY. It fills at once at the touch when the
book has not moved, and caps slippage at ``limit_ticks`` ticks when it has: Dhan turns API
MARKET orders into LIMIT orders with a market-price-protection band anyway, so an explicit
cap is both safer and predictable. An order still open after ``fill_timeout_s`` is cancelled
and its state re-checked (a cancel can race a fill).

All-or-nothing per ``execute`` call (entries and exits alike):

* legs are sent one at a time, BUY legs first (a long leg first is the hedged side for
  margin, and a naked long has bounded risk);
* a rejected / cancelled / timed-out leg (or a partial fill) makes the call fail: every
  quantity already filled by this call is *flattened* with an opposite MARKET order
  (certainty of execution beats price when a leg would otherwise be naked), logged at
  ERROR, and :class:`OrderRejectedError` / :class:`FillTimeoutError` is raised;
* if a flatten itself fails, or an order's state cannot be established,
  :class:`NakedLegError` is raised and logged at CRITICAL: positions may be open at the
  broker that the engine did not record. It is deliberately *not* a ``NoQuote``, so it is
  not swallowed as an ordinary refusal.

``LiveOrderError`` subclasses ``NoQuote`` so the executor's existing "entry refused" path
(``OrderRejected`` event, the risk slot released, the notifier alerted) handles it.

Correlation ids are ``make_correlation_id(correlation_base, leg_index, attempt)``; the
attempt is the first whose id is not yet in today's order book, so a repeated call for the
same tag (e.g. a retried close) never reuses an id (the client's lost-response recovery
looks orders up by correlation id). Placing is never blindly retried (the client
guarantees it).

**Freeze quantity.** A leg larger than the exchange allows in one order
(``max_order_qty(security_id, trade_date)``, from the instrument master's freeze column)
is sent as several orders (slices) of at most that size, one after the other, each with its
own correlation id ``slice_correlation_id(leg_cid, k)`` and each awaited to a final state
before the next is sent. The leg's ``Fill`` carries the volume-weighted price, the summed
per-order charges, the slices' order ids joined by commas and the leg's correlation id. A
slice that fails stops the leg; whatever the earlier slices filled is flattened like any
partial fill (flattening orders are sliced too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.correlation import make_correlation_id, slice_correlation_id
from engine.broker.dhan.errors import DhanError, OrderInTransitError, OrderStateUnknownError
from engine.broker.dhan.models import FINAL_STATUSES, Order, OrderRequest
from engine.broker.dhan.slicing import slice_quantities
from engine.clock import Clock
from engine.execution.charges import Charges, order_charges
from engine.execution.paper import TICK, ExecutionRefused, Fill, NoQuote, Quote, UnhedgedExposure
from engine.messages.legs import Leg, Side

logger = logging.getLogger(__name__)

PRODUCT_TYPES = ("INTRADAY", "MARGIN")
MAX_ATTEMPTS = 20


class LiveOrderError(ExecutionRefused):
    """A live ``execute`` failed and left nothing open (earlier fills were flattened).

    Attributes:
        leg_index: index (in the caller's legs) of the leg that failed.
        order_id: Dhan order id of that leg (``None`` if never accepted).
        status: final status (``REJECTED``, ``CANCELLED``, ``EXPIRED``, ``TIMEOUT``, ...).
        reason: the broker's reason text.
        flattened: order ids of the flattening orders sent.
    """

    def __init__(self, message: str, *, leg_index: int, order_id: str | None, status: str,
                 reason: str, flattened: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.leg_index, self.order_id, self.status = leg_index, order_id, status
        self.reason, self.flattened = reason, flattened


class OrderRejectedError(LiveOrderError):
    """Dhan refused, rejected or cancelled a leg."""


class FillTimeoutError(LiveOrderError):
    """A leg did not fill within ``fill_timeout_s`` (cancelled; partial fills flattened)."""


class NakedLegError(UnhedgedExposure):
    """Positions may be left open at the broker: a flatten failed or a state is unknown.

    Attributes:
        open_legs: ``(security_id, side, quantity)`` believed still open.
    """

    def __init__(self, message: str, *, open_legs: tuple[tuple[str, str, int], ...]) -> None:
        super().__init__(message, open_legs=open_legs)


@dataclass(frozen=True, slots=True)
class _Done:
    """Outcome of one order (or of a leg's slices): filled quantity and average price, final
    status, reason; ``parts`` = (quantity, price) filled per order, for the charges."""

    order_id: str
    status: str
    filled: int
    price: Decimal | None
    reason: str
    parts: tuple[tuple[int, Decimal], ...] = ()


class _SliceStateUnknown(NakedLegError):
    """A slice's outcome is unknown after earlier slices of the same leg filled ``filled``."""

    def __init__(self, message: str, *, open_legs: tuple[tuple[str, str, int], ...],
                 filled: int) -> None:
        super().__init__(message, open_legs=open_legs)
        self.filled = filled


def _sum_charges(charges: list[Charges]) -> Charges:
    return Charges(**{name: sum((getattr(c, name) for c in charges), Decimal(0)) for name in
                      ("brokerage", "exchange", "sebi", "ipft", "stt", "stamp", "gst")})


def _opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


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
    """Sends legs as Dhan orders and waits for their fills (see module docstring).

    Args:
        client: the Dhan client (its token provider follows the stored token).
        clock: engine clock (kept for symmetry with the paper broker; timeouts use real time).
        quotes: ``quotes(security_id) -> Quote`` (the market data port's ``quote``).
        product_type: ``MARGIN`` (carry-forward, default: the engine may hold positions
            overnight, and Dhan squares INTRADAY positions off by itself) or ``INTRADAY``.
        fill_timeout_s: real seconds to wait for a leg to fill before cancelling it.
        limit_ticks: slippage cap in ticks for the marketable limit.
        poll_interval_s: order-status polling interval.
        exchange_segment: ``NSE_FNO`` for NIFTY derivatives.
        max_order_qty: ``(security_id, trade_date) -> largest single order or None``
            (e.g. :class:`engine.broker.dhan.slicing.MasterOrderLimits`); larger legs are
            sliced. ``None`` (or an unknown answer): legs are never sliced.
        sleep: injectable sleeper (tests).
    """

    mode = "live"

    def __init__(self, client: DhanClient, clock: Clock, *,
                 quotes: Callable[[str], Quote] | None = None, product_type: str = "MARGIN",
                 fill_timeout_s: float = 10.0, limit_ticks: int = 3,
                 poll_interval_s: float = 0.1, exchange_segment: str = "NSE_FNO",
                 max_order_qty: Callable[[str, date], int | None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        product = str(product_type).upper()
        if product not in PRODUCT_TYPES:
            raise ValueError(f"product_type must be one of {', '.join(PRODUCT_TYPES)}, "
                             f"got {product_type!r}")
        if fill_timeout_s <= 0 or poll_interval_s <= 0:
            raise ValueError("fill_timeout_s and poll_interval_s must be positive")
        if limit_ticks < 0:
            raise ValueError(f"limit_ticks must be >= 0, got {limit_ticks}")
        self._client, self._clock, self._quotes = client, clock, quotes
        self.product_type, self.fill_timeout_s = product, float(fill_timeout_s)
        self.limit_ticks, self.poll_interval_s = int(limit_ticks), float(poll_interval_s)
        self.exchange_segment = exchange_segment
        self._max_order_qty = max_order_qty
        self._sleep = sleep

    # ------------------------------------------------------------------ port
    def quote(self, security_id: str) -> Quote:
        """The current quote from the market data port.

        Raises:
            NoQuote: no quote source configured, or no quote for ``security_id``.
        """
        if self._quotes is None:
            raise NoQuote("the live broker has no market data to quote from")
        return self._quotes(security_id)

    def execute(self, legs: tuple[Leg, ...], *, correlation_base: str,
                trade_date: date) -> list[Fill]:
        """Fill every leg or none (see the module docstring for what "none" costs).

        Returns:
            One ``Fill`` per leg, in the order of ``legs``.

        Raises:
            NoQuote: a leg has no quote (nothing was sent).
            OrderRejectedError / FillTimeoutError: a leg failed; earlier fills flattened.
            NakedLegError: a flatten failed or an order's state is unknown.
        """
        if not legs:
            raise ValueError("execute needs at least one leg")
        # freeze limits first: the first call of a day may download the instrument master,
        # and the limit prices must not age meanwhile
        caps = {leg.security_id: self._cap(leg.security_id, trade_date) for leg in legs}
        prices = [limit_price(leg.side, self.quote(leg.security_id), self.limit_ticks)
                  for leg in legs]
        used = self._used_correlation_ids()
        order = sorted(range(len(legs)), key=lambda i: (legs[i].side is not Side.BUY, i))
        cids = {i: self._fresh_cid(correlation_base, str(i), used,  # nothing sent yet
                                   len(slice_quantities(legs[i].quantity,
                                                        caps[legs[i].security_id])))
                for i in order}
        fills: dict[int, Fill] = {}
        for i in order:
            leg, cid = legs[i], cids[i]
            try:
                done = self._run_leg(leg, cid, "LIMIT", prices[i], caps)
            except NakedLegError as exc:
                partial = {i: (leg, exc.filled)} if isinstance(exc, _SliceStateUnknown) \
                    and exc.filled else {}
                self._abort(correlation_base, legs, fills, used, exc, caps, partial)
                raise
            if done.status == "TRADED" and done.filled == leg.quantity and done.price is not None:
                charges = _sum_charges([
                    order_charges(kind=leg.kind.value, side=leg.side.value, price=px,
                                  quantity=qty, on=trade_date) for qty, px in done.parts])
                fills[i] = Fill(leg=leg, price=done.price, charges=charges,
                                order_id=done.order_id, correlation_id=cid)
                logger.info("live %s leg %d %s %s x%d filled at %s (order %s)",
                            correlation_base, i, leg.side.value, leg.security_id, leg.quantity,
                            done.price, done.order_id)
                continue
            partial = {}
            if done.filled > 0:
                partial[i] = (leg, done.filled)
            flattened = self._flatten(correlation_base, fills, partial, used, caps)
            cls = FillTimeoutError if done.status == "TIMEOUT" else OrderRejectedError
            message = (f"live order {cid} ({leg.side.value} {leg.security_id} x{leg.quantity}) "
                       f"{done.status}: {done.reason}")
            if fills or partial:
                message += f"; flattened {len(flattened)} filled leg(s) with orders {flattened}"
            logger.error("%s", message)
            raise cls(message, leg_index=i, order_id=done.order_id or None, status=done.status,
                      reason=done.reason, flattened=tuple(flattened))
        return [fills[i] for i in range(len(legs))]

    # ------------------------------------------------------------------ internals
    def _used_correlation_ids(self) -> set[str]:
        try:
            return {o.correlation_id for o in self._client.order_list() if o.correlation_id}
        except DhanError as exc:
            raise OrderRejectedError(f"order book unavailable, nothing sent: {exc}", leg_index=0,
                                     order_id=None, status="NOT_SENT", reason=str(exc)) from exc

    def _cap(self, security_id: str, trade_date: date) -> int | None:
        """Largest single order of ``security_id`` (``None``: unknown, never slice)."""
        if self._max_order_qty is None:
            return None
        cap = self._max_order_qty(security_id, trade_date)
        return cap if cap is not None and cap > 0 else None

    @staticmethod
    def _fresh_cid(base: str, leg: str, used: set[str], slices: int = 1) -> str:
        """The leg's correlation id of the first attempt whose ids (the leg's, or its
        ``slices`` slices') are all unused today; they are marked used."""
        for attempt in range(MAX_ATTEMPTS):
            cid = make_correlation_id(base, leg, attempt)
            ids = {cid} if slices <= 1 else {slice_correlation_id(cid, k)
                                             for k in range(slices)} | {cid}
            if not ids & used:
                used.update(ids)
                return cid
        raise OrderRejectedError(f"{base} leg {leg}: {MAX_ATTEMPTS} attempts already used today",
                                 leg_index=int(leg) if leg.isdigit() else 0, order_id=None,
                                 status="NOT_SENT", reason="too many attempts")

    def _run_leg(self, leg: Leg, cid: str, order_type: str, price: Decimal | None,
                 caps: dict[str, int | None], *, quantity: int | None = None,
                 side: Side | None = None) -> _Done:
        """One leg as one order, or as freeze-sized slices sent and awaited one by one."""
        total = quantity or leg.quantity
        sizes = slice_quantities(total, caps.get(leg.security_id))
        if len(sizes) == 1:
            return self._run(leg, cid, order_type, price, quantity=total, side=side)
        logger.info("%s: %s %s x%d above the freeze quantity, sent as %d slices %s", cid,
                    (side or leg.side).value, leg.security_id, total, len(sizes), sizes)
        done: list[_Done] = []
        filled = 0
        for k, size in enumerate(sizes):
            try:
                one = self._run(leg, slice_correlation_id(cid, k), order_type, price,
                                quantity=size, side=side)
            except NakedLegError as exc:
                raise _SliceStateUnknown(str(exc), open_legs=exc.open_legs,
                                         filled=filled) from exc
            done.append(one)
            filled += one.filled
            if one.status != "TRADED" or one.filled != size:
                break
        parts = tuple(p for d in done for p in d.parts)
        qty = sum(q for q, _ in parts)
        price_avg = (sum((px * q for q, px in parts), Decimal(0)) / qty).quantize(
            Decimal("0.01")) if qty else None
        last = done[-1]
        complete = last.status == "TRADED" and qty == total
        reason = last.reason if len(done) == 1 else (
            f"slice {len(done)}/{len(sizes)}: {last.reason}")
        return _Done(order_id=",".join(d.order_id for d in done if d.order_id),
                     status="TRADED" if complete else last.status, filled=qty,
                     price=price_avg, reason=reason, parts=parts)

    def _run(self, leg: Leg, cid: str, order_type: str, price: Decimal | None,
             *, quantity: int | None = None, side: Side | None = None) -> _Done:
        """Place one order and wait for its final state (cancelling it at the timeout)."""
        request = OrderRequest(
            security_id=leg.security_id, exchange_segment=self.exchange_segment,
            transaction_type=(side or leg.side).value, quantity=quantity or leg.quantity,
            order_type=order_type, product_type=self.product_type, correlation_id=cid,
            price=price if order_type == "LIMIT" else None)
        try:
            ack = self._client.place_order(request)
        except OrderStateUnknownError as exc:
            raise NakedLegError(f"order {cid}: placement outcome unknown ({exc})",
                                open_legs=((leg.security_id, request.transaction_type,
                                            request.quantity),)) from exc
        except DhanError as exc:
            return _Done(order_id="", status="REJECTED", filled=0, price=None, reason=str(exc))
        return self._await(ack.order_id, cid, request)

    def _await(self, order_id: str, cid: str, request: OrderRequest) -> _Done:
        deadline = time.monotonic() + self.fill_timeout_s
        cancelled, tries = False, 0
        last: Order | None = None
        while True:
            try:
                last = self._client.get_order(order_id) or last
            except DhanError as exc:
                logger.warning("status of order %s (%s) not read: %s", order_id, cid, exc)
            if last is not None and last.status in FINAL_STATUSES:
                return self._final(last, cancelled)
            now = time.monotonic()
            if now >= deadline and not cancelled and tries < MAX_ATTEMPTS:
                tries += 1
                cancelled = self._cancel(order_id, cid)
                deadline = now + (max(2.0, self.fill_timeout_s / 2) if cancelled
                                  else self.poll_interval_s)
                continue
            if now >= deadline:
                raise NakedLegError(
                    f"order {order_id} ({cid}) still {last.status if last else 'unknown'} after "
                    "the fill timeout and cancel: its fill state is unknown",
                    open_legs=((request.security_id, request.transaction_type,
                                request.quantity),))
            self._sleep(self.poll_interval_s)

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

    def _final(self, order: Order, cancelled_by_us: bool) -> _Done:
        price = order.average_traded_price
        if order.filled_qty > 0:
            price = self._traded_price(order) or price
        status, reason = order.status, order.oms_error_description or order.status
        if order.status in ("CANCELLED", "EXPIRED") and cancelled_by_us:
            status = "TIMEOUT"
            reason = (f"not filled within {self.fill_timeout_s:.1f}s, cancelled "
                      f"({order.filled_qty}/{order.quantity} filled)")
        price = price.quantize(Decimal("0.01")) if price is not None else None
        parts = ((order.filled_qty, price),) if order.filled_qty > 0 and price is not None else ()
        return _Done(order_id=order.order_id, status=status, filled=order.filled_qty,
                     price=price, reason=reason, parts=parts)

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

    def _flatten(self, base: str, fills: dict[int, Fill], partial: dict[int, tuple[Leg, int]],
                 used: set[str], caps: dict[str, int | None]) -> list[str]:
        """Send opposite MARKET orders for every filled quantity; raise NakedLegError on failure."""
        todo = [(i, f.leg, f.leg.quantity) for i, f in fills.items()]
        todo += [(i, leg, qty) for i, (leg, qty) in partial.items()]
        sent: list[str] = []
        failed: list[tuple[str, str, int]] = []
        for i, leg, qty in todo:
            slices = len(slice_quantities(qty, caps.get(leg.security_id)))
            cid = self._fresh_cid(base, f"U{i}", used, slices)
            side = _opposite(leg.side)
            try:
                done = self._run_leg(leg, cid, "MARKET", None, caps, quantity=qty, side=side)
            except NakedLegError as exc:
                filled = exc.filled if isinstance(exc, _SliceStateUnknown) else 0
                done = _Done(order_id="", status="UNKNOWN", filled=filled, price=None,
                             reason="unknown")
            if done.order_id:
                sent.extend(done.order_id.split(","))
            if done.status == "TRADED" and done.filled == qty:
                logger.error("FLATTENED leg %d of %s: %s %s x%d at %s (order %s)", i, base,
                             side.value, leg.security_id, qty, done.price, done.order_id)
            else:
                failed.append((leg.security_id, leg.side.value, qty - done.filled))
        if failed:
            message = (f"NAKED LEG(S) after a failed entry/exit of {base}: could not flatten "
                       f"{failed}; close them at the broker by hand")
            logger.critical("%s", message)
            raise NakedLegError(message, open_legs=tuple(failed))
        return sent

    def _abort(self, base: str, legs: tuple[Leg, ...], fills: dict[int, Fill], used: set[str],
               exc: NakedLegError, caps: dict[str, int | None],
               partial: dict[int, tuple[Leg, int]] | None = None) -> None:
        logger.critical("live %s: %s; flattening the %d leg(s) already filled", base, exc,
                        len(fills) + len(partial or {}))
        try:
            self._flatten(base, fills, partial or {}, used, caps)
        except NakedLegError as more:
            exc.open_legs = exc.open_legs + more.open_legs

