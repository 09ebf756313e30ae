"""Simulated order book, matching at the market's bid/ask, trades, positions and funds.

Lifecycle: an accepted order is ``TRANSIT`` for ``transit_sec``, then RMS checks (lot
multiple, known instrument, funds) make it ``REJECTED`` or ``PENDING``; a PENDING order fills
(``TRADED``) when marketable - MARKET at once at the ask (BUY) / bid (SELL), LIMIT when the
touch crosses its price - else it rests until cancelled. State advances lazily on each call
to :meth:`Exchange.advance` (every request does it).

Cost per request does not grow with the book: TRANSIT orders are kept in arrival order and
only those due are looked at; resting orders are re-priced once per market *tick*
(``market.tick()``: a new spot or a new second of the market clock), not on every request.
Orders match only while the market is open (09:15-15:30 IST of a trading day, per the
calendar, on the market's own clock); an after-market order (AMO) rests until the next open
(``amoTime`` OPEN_30 / OPEN_60: 30 / 60 minutes after it). A PENDING order blocks its margin
until it fills or is cancelled.

Closes the broker makes by itself (what real Dhan does without an order of the client's):

* **RMS square-off** (:meth:`Exchange.square_off`, admin ``POST /__admin/square_off``): the
  broker closes a position at the market with a MARKET order of its own (no correlation id
  of the client's: Dhan generates one), visible in ``/orders`` and ``/trades``.
* **Intraday square-off**: from 15:20 IST of a trading day every ``INTRADAY`` position is
  closed the same way (once per day, at the first request from 15:20).
* **Expiry settlement**: after the close (15:30 IST) of an expiry date, positions in the
  expired contracts leave ``/positions``; nothing appears in ``/orders`` or ``/trades``
  (the reference does not say how Dhan reports a settlement; the contract note / ledger
  would). The settlement is kept in :attr:`Exchange.settlements` (admin ``GET
  /__admin/settlements``) and credited to funds: futures at the final settlement price
  (the NIFTY close), options at their intrinsic value against it. The price is the one
  set with admin ``POST /__admin/settlement_price`` (NSE publishes it), else the spot the
  market shows on the expiry day after the close, else the last spot seen that day.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from engine.dhan_sim.market import InstrumentRow, MarketSource
from engine.market.calendar import NseCalendar
from engine.timeutil import IST

SENTINEL_TIME = "0001-01-01 00:00:00"
SHORT_MARGIN_FRACTION = 0.12
AMO_DELAY = {"PRE_OPEN": timedelta(0), "OPEN": timedelta(0), "OPEN_30": timedelta(minutes=30),
             "OPEN_60": timedelta(minutes=60)}
_NO_TICK = object()
INTRADAY_SQUARE_OFF = dtime(15, 20)  # Dhan squares INTRADAY positions off from here (IST)


def _now_text() -> str:
    return datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class SimOrder:
    """Mutable order record; :meth:`wire` renders Dhan's order object."""

    order_id: str
    client_id: str
    body: dict[str, Any]
    created: float
    status: str = "TRANSIT"
    filled_qty: int = 0
    avg_price: float = 0.0
    oms_error: str = "CONFIRMED"
    reject_reason: str | None = None
    create_time: str = field(default_factory=_now_text)
    update_time: str = field(default_factory=_now_text)
    exchange_time: str = SENTINEL_TIME
    modifications: int = 0
    blocked: float = 0.0  # margin held while PENDING
    not_before: datetime | None = None  # AMO: do not match before this market time
    fill_limit: int | None = None  # fault ``partial_fill``: fill at most this many units
    placed_by: str = "client"  # or the broker itself: ``RMS``, ``INTRADAY_SQUARE_OFF``

    def wire(self, row: InstrumentRow | None) -> dict[str, Any]:
        """Order object as Dhan serialises it."""
        b = self.body
        qty = int(b["quantity"])
        return {
            "dhanClientId": self.client_id, "orderId": self.order_id,
            "exchangeOrderId": "" if self.status == "TRANSIT" else f"1100{self.order_id}",
            "correlationId": b.get("correlationId", ""),
            "orderStatus": self.status, "transactionType": b["transactionType"],
            "exchangeSegment": b["exchangeSegment"], "productType": b["productType"],
            "orderType": b["orderType"], "validity": b.get("validity", "DAY"),
            "tradingSymbol": row.trading_symbol if row else "", "securityId": b["securityId"],
            "quantity": qty, "disclosedQuantity": int(b.get("disclosedQuantity") or 0),
            "price": float(b.get("price") or 0), "triggerPrice": float(b.get("triggerPrice") or 0),
            "afterMarketOrder": bool(b.get("afterMarketOrder")), "boProfitValue": 0,
            "boStopLossValue": 0, "legName": "NA", "createTime": self.create_time,
            "updateTime": self.update_time, "exchangeTime": self.exchange_time,
            "drvExpiryDate": row.expiry.isoformat() if row and row.expiry else "0001-01-01",
            "drvOptionType": {"CE": "CALL", "PE": "PUT"}.get(row.option_type or "", "NA")
            if row else "NA",
            "drvStrikePrice": row.strike or 0.0 if row else 0.0,
            "omsErrorCode": "", "omsErrorDescription": self.oms_error, "algoId": "",
            "remainingQuantity": qty - self.filled_qty,
            "averageTradedPrice": round(self.avg_price, 2), "filledQty": self.filled_qty,
        }


@dataclass
class SimPosition:
    """Day position of one (security, product)."""

    buy_qty: int = 0
    buy_value: float = 0.0
    sell_qty: int = 0
    sell_value: float = 0.0
    instrument: InstrumentRow | None = None  # kept: an expired contract leaves the master

    @property
    def net(self) -> int:
        return self.buy_qty - self.sell_qty

    def realized(self) -> float:
        matched = min(self.buy_qty, self.sell_qty)
        if not matched:
            return 0.0
        return matched * (self.sell_value / self.sell_qty - self.buy_value / self.buy_qty)


class Exchange:
    """Orders, trades, positions and funds of every simulated client.

    Args:
        market: quotes, instruments, the market clock (``now``) and ``tick``.
        transit_sec: how long a new order stays in TRANSIT (monotonic seconds).
        clock: monotonic clock for TRANSIT.
        calendar: exchange calendar for market hours (default ``NseCalendar()``).
        epoch_ms: wall clock in epoch milliseconds (auto-generated correlation ids).
    """

    def __init__(self, market: MarketSource, *, transit_sec: float = 0.05,
                 clock: Callable[[], float] = time.monotonic,
                 calendar: NseCalendar | None = None,
                 epoch_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.market = market
        self.transit_sec = transit_sec
        self.calendar = calendar or NseCalendar()
        self._clock = clock
        self._epoch_ms = epoch_ms
        self._lock = threading.RLock()
        self._ids = itertools.count(52_000_000_001)
        self._trade_ids = itertools.count(70_000_001)
        self.orders: dict[str, SimOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.positions: dict[tuple[str, str, str], SimPosition] = {}
        self._transit: deque[SimOrder] = deque()
        self._resting: dict[str, SimOrder] = {}
        self._by_cid: dict[tuple[str, str], SimOrder] = {}
        self._blocked: dict[str, float] = {}
        self._last_cid_ms = 0
        self._tick: Any = _NO_TICK
        self.repriced = 0  # quotes taken to re-price resting orders (cost accounting)
        #: called with an order after each change of its state, under the lock (the
        #: order-update WebSocket, ``engine.dhan_sim.order_ws``); must not block
        self.on_change: Callable[[SimOrder], None] | None = None
        self._rows_day: date | None = None
        self._rows = {str(r.security_id): r for r in market.instruments()}
        #: expiry settlements: one dict per settled position (see the module docstring)
        self.settlements: list[dict[str, Any]] = []
        #: final settlement prices (the NIFTY close) by expiry date, as NSE publishes them
        self.final_settlement: dict[date, float] = {}
        self._settled_pnl: dict[str, float] = {}
        self._day_spot: dict[date, float] = {}  # last spot seen in each session
        self._squared_off: date | None = None  # the day of the last intraday square-off

    def row(self, security_id: str) -> InstrumentRow | None:
        """Instrument row of a security id (re-reads the market's list for unknown ids)."""
        row = self._rows.get(str(security_id))
        if row is None:
            self._rows = {str(r.security_id): r for r in self.market.instruments()}
            row = self._rows.get(str(security_id))
        return row

    def _refresh_rows(self) -> None:
        """A new trading day lists new contracts (and may change lots): re-read the rows."""
        day = self.market.today()
        if day != self._rows_day:
            if self._rows_day is not None:
                self._rows = {str(r.security_id): r for r in self.market.instruments()}
            self._rows_day = day

    # ------------------------------------------------------------- clock
    def market_now(self) -> datetime:
        """The market's clock (wall-clock IST for a market without ``now``)."""
        now = getattr(self.market, "now", None)
        return now() if now is not None else datetime.now(IST)

    def is_open(self, at: datetime | None = None) -> bool:
        """True inside 09:15-15:30 IST of a trading day on the market clock."""
        return self.calendar.is_market_open(at or self.market_now())

    def next_open(self, at: datetime) -> datetime:
        """The first session open at or after ``at``."""
        local = at.astimezone(IST)
        day = local.date()
        if self.calendar.is_trading_day(day) and local <= self.calendar.session_open(day):
            return self.calendar.session_open(day)
        return self.calendar.session_open(self.calendar.next_trading_day(day))

    def _market_text(self) -> str:
        return self.market_now().astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")

    # ------------------------------------------------------------- orders
    def new_correlation_id(self, client_id: str) -> str:
        """Dhan's own id for an order sent without one: ``<clientId>-<epoch ms>``, unique (a
        second order in the same millisecond takes the next millisecond)."""
        with self._lock:
            ms = max(self._epoch_ms(), self._last_cid_ms + 1)
            self._last_cid_ms = ms
            return f"{client_id}-{ms}"

    def place(self, client_id: str, body: dict[str, Any], reject_reason: str | None = None,
              fill_limit: int | None = None) -> SimOrder:
        """Accept an order in TRANSIT (``reject_reason``: RMS will reject it; ``fill_limit``:
        it fills at most that many units and rests PART_TRADED). An order without a
        correlationId gets Dhan's generated one; an after-market order placed while the
        market is closed waits for the next open (plus its ``amoTime`` delay)."""
        with self._lock:
            body = dict(body)
            if not body.get("correlationId"):
                body["correlationId"] = self.new_correlation_id(client_id)
            now = self.market_now()
            order = SimOrder(order_id=str(next(self._ids)), client_id=client_id, body=body,
                             created=self._clock(), reject_reason=reject_reason,
                             create_time=self._market_text(), update_time=self._market_text(),
                             fill_limit=fill_limit)
            if body.get("afterMarketOrder") and not self.is_open(now):
                delay = AMO_DELAY.get(str(body.get("amoTime") or "OPEN"), timedelta(0))
                order.not_before = self.next_open(now) + delay
            self.orders[order.order_id] = order
            self._by_cid[(client_id, body["correlationId"])] = order
            self._transit.append(order)
            self._changed(order)
            return order

    def find(self, client_id: str, order_id: str) -> SimOrder | None:
        with self._lock:
            order = self.orders.get(order_id)
            return order if order and order.client_id == client_id else None

    def by_correlation(self, client_id: str, cid: str) -> SimOrder | None:
        """The latest order of ``client_id`` with correlationId ``cid``."""
        with self._lock:
            return self._by_cid.get((client_id, cid))

    def client_orders(self, client_id: str) -> list[SimOrder]:
        with self._lock:
            return [o for o in self.orders.values() if o.client_id == client_id]

    def resting(self) -> list[SimOrder]:
        """PENDING orders (in the book, margin blocked)."""
        with self._lock:
            return list(self._resting.values())

    def cancel(self, order: SimOrder) -> None:
        """Cancel a PENDING order and release its margin."""
        with self._lock:
            order.status, order.update_time = "CANCELLED", self._market_text()
            self._unrest(order)
            self._changed(order)

    def expire(self, order: SimOrder) -> None:
        """End an open order ``EXPIRED`` (a day order at the close) and release its margin."""
        with self._lock:
            order.status, order.update_time = "EXPIRED", self._market_text()
            self._unrest(order)
            self._changed(order)

    def _changed(self, order: SimOrder) -> None:
        if self.on_change is not None:
            try:
                self.on_change(order)
            except Exception:  # a listener never breaks the exchange
                logging.getLogger(__name__).exception("order change listener failed")

    def modify(self, order: SimOrder, changes: dict[str, Any]) -> None:
        """Apply a modification (type, validity, quantity, prices) and re-block margin; the
        order is re-priced at once."""
        with self._lock:
            order.modifications += 1
            for key in ("orderType", "validity", "quantity", "price", "triggerPrice",
                        "disclosedQuantity"):
                if key in changes:
                    order.body[key] = changes[key]
            order.update_time = self._market_text()
            if order.status == "PENDING":
                self._block(order, self.required_margin(order))
                self._try_fill(order)
            self._changed(order)

    def _block(self, order: SimOrder, amount: float) -> None:
        cid = order.client_id
        self._blocked[cid] = self._blocked.get(cid, 0.0) - order.blocked + amount
        order.blocked = amount

    def _unrest(self, order: SimOrder) -> None:
        self._resting.pop(order.order_id, None)
        self._block(order, 0.0)

    def advance(self, funds: Callable[[str], float]) -> None:
        """Move orders along their lifecycle; ``funds(client_id)`` gives available balance.

        Only TRANSIT orders that are due are looked at; resting orders are re-priced when
        the market has ticked since the last sweep (every call for a market without
        ``tick``).
        """
        with self._lock:
            self._refresh_rows()
            now = self._clock()
            while self._transit and now - self._transit[0].created >= self.transit_sec:
                order = self._transit.popleft()
                if order.status != "TRANSIT":
                    continue
                self._rms(order, funds(order.client_id))
                if order.status == "PENDING":
                    self._resting[order.order_id] = order
                    self._block(order, self.required_margin(order))
                    self._try_fill(order)
            tick_of = getattr(self.market, "tick", None)
            tick = tick_of() if tick_of is not None else object()
            if tick != self._tick:
                self._tick = tick
                self._broker_events()
                for order in list(self._resting.values()):
                    self.repriced += 1
                    self._try_fill(order)

    def _rms(self, order: SimOrder, available: float) -> None:
        row = self.row(order.body["securityId"])
        qty = int(order.body["quantity"])
        reason = order.reject_reason
        if reason is None and row is None:
            reason = "Invalid Security ID"
        elif reason is None and qty % max(1, row.lot_size) != 0:
            reason = f"Quantity should be multiple of lot size {row.lot_size}"
        elif reason is None and self.required_margin(order) > available:
            reason = "Insufficient Funds"
        order.update_time = self._market_text()
        if reason:
            order.status = "REJECTED"
            order.oms_error = f"RMS:{order.order_id}:{reason}"
        else:
            order.status, order.exchange_time = "PENDING", self._market_text()
        self._changed(order)

    def _touch(self, order: SimOrder) -> float | None:
        quote = self.market.quote(order.body["securityId"])
        if quote is None:
            return None
        buy = order.body["transactionType"] == "BUY"
        px = quote.ask if buy else quote.bid
        kind = order.body["orderType"]
        limit = float(order.body.get("price") or 0)
        if kind.startswith("STOP_LOSS"):
            trigger = float(order.body.get("triggerPrice") or 0)
            if (buy and quote.ltp < trigger) or (not buy and quote.ltp > trigger):
                return None
        if kind in ("MARKET", "STOP_LOSS_MARKET"):
            return px if px > 0 else None
        if px > 0 and ((buy and px <= limit) or (not buy and px >= limit)):
            return px
        return None

    def _try_fill(self, order: SimOrder) -> None:
        """Match a PENDING order if the market is open (and an AMO's time has come)."""
        now = self.market_now()
        if not self.is_open(now) or (order.not_before is not None and now < order.not_before):
            return
        self._match(order)

    def _match(self, order: SimOrder) -> None:
        px = self._touch(order)
        if px is None:
            if order.body.get("validity") == "IOC":
                order.status, order.update_time = "CANCELLED", self._market_text()
                self._unrest(order)
                self._changed(order)
            return
        total = int(order.body["quantity"])
        qty = total - order.filled_qty
        if order.fill_limit is not None:
            qty = min(qty, order.fill_limit - order.filled_qty)
        if qty <= 0:
            return  # a partial fill's rest never trades (fault ``partial_fill``)
        order.avg_price = (order.avg_price * order.filled_qty + px * qty) / (order.filled_qty
                                                                             + qty)
        order.filled_qty += qty
        order.update_time = order.exchange_time = self._market_text()
        if order.filled_qty == total:
            order.status = "TRADED"
            self._unrest(order)
        else:
            order.status = "PART_TRADED"
        key = (order.client_id, str(order.body["securityId"]), order.body["productType"])
        pos = self.positions.setdefault(key, SimPosition())
        pos.instrument = pos.instrument or self.row(order.body["securityId"])
        if order.body["transactionType"] == "BUY":
            pos.buy_qty, pos.buy_value = pos.buy_qty + qty, pos.buy_value + qty * px
        else:
            pos.sell_qty, pos.sell_value = pos.sell_qty + qty, pos.sell_value + qty * px
        row = self.row(order.body["securityId"])
        self.trades.append({
            "dhanClientId": order.client_id, "orderId": order.order_id,
            "exchangeOrderId": f"1100{order.order_id}",
            "exchangeTradeId": str(next(self._trade_ids)),
            "transactionType": order.body["transactionType"],
            "exchangeSegment": order.body["exchangeSegment"],
            "productType": order.body["productType"], "orderType": order.body["orderType"],
            "tradingSymbol": row.trading_symbol if row else "",
            "customSymbol": row.display_name if row else "",
            "securityId": str(order.body["securityId"]), "tradedQuantity": qty,
            "tradedPrice": px, "createTime": order.create_time, "updateTime": order.update_time,
            "exchangeTime": order.exchange_time,
            "drvExpiryDate": row.expiry.isoformat() if row and row.expiry else "0001-01-01",
            "drvOptionType": {"CE": "CALL", "PE": "PUT"}.get(row.option_type or "", "NA")
            if row else "NA", "drvStrikePrice": row.strike or 0.0 if row else 0.0})
        self._changed(order)

    # ------------------------------------------------------------- broker's own closes
    def square_off(self, *, client_id: str | None = None, security_id: str | None = None,
                   product: str | None = None, by: str = "RMS") -> list[SimOrder]:
        """The broker closes open positions at the market by itself (an RMS square-off; the
        15:20 intraday square-off uses it with ``by="INTRADAY_SQUARE_OFF"``): one MARKET
        order per position, with no correlation id of the client's, matched at once at the
        touch (no margin check: it reduces risk). Filters: ``client_id``, ``security_id``,
        ``product`` (``None``: any). Returns the orders placed."""
        placed: list[SimOrder] = []
        with self._lock:
            for (cid, sid, prod), pos in list(self.positions.items()):
                if pos.net == 0 or (client_id is not None and cid != client_id) or (
                        security_id is not None and sid != str(security_id)) or (
                        product is not None and prod != product):
                    continue
                body = {"dhanClientId": cid, "correlationId": self.new_correlation_id(cid),
                        "transactionType": "SELL" if pos.net > 0 else "BUY",
                        "exchangeSegment": "NSE_FNO", "productType": prod,
                        "orderType": "MARKET", "validity": "DAY", "securityId": sid,
                        "quantity": abs(pos.net)}
                order = SimOrder(order_id=str(next(self._ids)), client_id=cid, body=body,
                                 created=self._clock(), status="PENDING",
                                 create_time=self._market_text(),
                                 update_time=self._market_text(),
                                 exchange_time=self._market_text(), placed_by=by)
                self.orders[order.order_id] = order
                self._by_cid[(cid, body["correlationId"])] = order
                self._resting[order.order_id] = order
                self._changed(order)
                self._match(order)
                placed.append(order)
        return placed

    def manual_order(self, *, client_id: str, security_id: str, side: str, quantity: int,
                     product: str = "MARGIN") -> SimOrder:
        """An order the account holder places by hand (the broker's own terminal): a MARKET
        order with no correlation id of the engine's, matched at once at the touch. It opens,
        adds to, partly closes or closes a position (a test's "closed by hand at the
        broker")."""
        side = str(side).upper()
        if side not in ("BUY", "SELL"):
            raise ValueError(f"manual order side {side!r}: expected BUY or SELL")
        if int(quantity) <= 0:
            raise ValueError(f"manual order quantity must be positive, got {quantity!r}")
        if self.row(str(security_id)) is None:
            raise ValueError(f"manual order: unknown security {security_id!r}")
        with self._lock:
            body = {"dhanClientId": client_id, "correlationId": self.new_correlation_id(client_id),
                    "transactionType": side, "exchangeSegment": "NSE_FNO", "productType": product,
                    "orderType": "MARKET", "validity": "DAY", "securityId": str(security_id),
                    "quantity": int(quantity)}
            order = SimOrder(order_id=str(next(self._ids)), client_id=client_id, body=body,
                             created=self._clock(), status="PENDING",
                             create_time=self._market_text(), update_time=self._market_text(),
                             exchange_time=self._market_text(), placed_by="MANUAL")
            self.orders[order.order_id] = order
            self._by_cid[(client_id, body["correlationId"])] = order
            self._resting[order.order_id] = order
            self._changed(order)
            self._match(order)
        return order

    def _broker_events(self) -> None:
        """Per market tick: expiry settlement and the 15:20 intraday square-off."""
        local = self.market_now().astimezone(IST)
        day = local.date()
        if self.calendar.is_market_open(local):
            self._day_spot[day] = float(self.market.spot())
            while len(self._day_spot) > 40:
                self._day_spot.pop(min(self._day_spot))
        if self.positions:
            self._settle_expired(local)
        if (self._squared_off != day and local.time() >= INTRADAY_SQUARE_OFF
                and self.calendar.is_trading_day(day)):
            self._squared_off = day
            self.square_off(product="INTRADAY", by="INTRADAY_SQUARE_OFF")

    def _expiry_close(self, expiry: date) -> datetime:
        try:
            return self.calendar.session_close(expiry)
        except Exception:  # not a session in the calendar: the usual close
            return datetime.combine(expiry, dtime(15, 30), IST)

    def _settle_expired(self, local: datetime) -> None:
        """Positions in contracts whose expiry session has closed leave the book, settled at
        the final settlement price (options: intrinsic value; futures: the price itself)."""
        for key, pos in list(self.positions.items()):
            row = pos.instrument or self.row(key[1])
            if row is None or row.expiry is None or local < self._expiry_close(row.expiry):
                continue
            spot, source = self._final_spot(row.expiry, local)
            if row.instrument == "OPTIDX" and row.strike is not None:
                price = max(0.0, spot - row.strike if row.option_type == "CE" else row.strike - spot)
            else:
                price = spot
            net = pos.net
            buy_value = pos.buy_value + (-net * price if net < 0 else 0.0)
            sell_value = pos.sell_value + (net * price if net > 0 else 0.0)
            pnl = sell_value - buy_value  # every unit matched once settled
            cid = key[0]
            self._settled_pnl[cid] = self._settled_pnl.get(cid, 0.0) + pnl
            self.settlements.append({
                "dhanClientId": cid, "securityId": key[1], "productType": key[2],
                "tradingSymbol": row.trading_symbol, "expiry": row.expiry.isoformat(),
                "netQty": net, "settlementSpot": round(spot, 2),
                "settlementPrice": round(price, 2), "spotSource": source,
                "realizedProfit": round(pnl, 2),
                "settledAt": local.strftime("%Y-%m-%d %H:%M:%S")})
            del self.positions[key]

    def _final_spot(self, expiry: date, local: datetime) -> tuple[float, str]:
        if expiry in self.final_settlement:
            return float(self.final_settlement[expiry]), "published"
        if local.date() == expiry:  # after the close: the market shows the closing value
            return float(self.market.spot()), "close"
        if expiry in self._day_spot:
            return self._day_spot[expiry], "last seen on the expiry day"
        return float(self.market.spot()), "estimated (expiry day not seen)"

    # ------------------------------------------------------------- money
    def _is_future(self, security_id: str) -> bool:
        row = self.row(str(security_id))
        return row is not None and row.instrument == "FUTIDX"

    def _margin_per_unit(self, security_id: str, net: int, price: float) -> float:
        if self._is_future(security_id):  # SPAN + exposure on the notional, long or short
            return price * SHORT_MARGIN_FRACTION
        if net >= 0:
            return price
        return self.market.spot() * SHORT_MARGIN_FRACTION

    def margin_for(self, client_id: str, security_id: str, product: str, side: str, qty: int,
                   price: float) -> float:
        """Extra margin an order of ``qty`` at ``price`` would block."""
        with self._lock:
            pos = self.positions.get((client_id, str(security_id), product), SimPosition())
            before = self._position_margin(str(security_id), pos)
            after_pos = SimPosition(pos.buy_qty, pos.buy_value, pos.sell_qty, pos.sell_value)
            if side == "BUY":
                after_pos.buy_qty = pos.buy_qty + qty
                after_pos.buy_value = pos.buy_value + qty * price
            else:
                after_pos.sell_qty = pos.sell_qty + qty
                after_pos.sell_value = pos.sell_value + qty * price
            return max(0.0, self._position_margin(str(security_id), after_pos) - before)

    def _position_margin(self, security_id: str, pos: SimPosition) -> float:
        net = pos.net
        if net and self._is_future(security_id):  # a future blocks margin, not its notional
            avg = (pos.buy_value / pos.buy_qty) if net > 0 else (pos.sell_value / pos.sell_qty)
            return abs(net) * avg * SHORT_MARGIN_FRACTION
        if net > 0:
            return net * (pos.buy_value / pos.buy_qty)
        if net < 0:
            return -net * self.market.spot() * SHORT_MARGIN_FRACTION
        return 0.0

    def required_margin(self, order: SimOrder) -> float:
        quote = self.market.quote(order.body["securityId"])
        price = float(order.body.get("price") or 0) or (quote.ask if quote else 0.0)
        return self.margin_for(order.client_id, order.body["securityId"],
                               order.body["productType"], order.body["transactionType"],
                               int(order.body["quantity"]), price)

    def funds(self, client_id: str, sod: float) -> dict[str, float]:
        """Balance after realised P&L and the margin blocked by open positions and by
        PENDING orders."""
        with self._lock:
            utilized = self._blocked.get(client_id, 0.0)
            realized = self._settled_pnl.get(client_id, 0.0)
            for (cid, sid, _), pos in self.positions.items():
                if cid == client_id:
                    utilized += self._position_margin(sid, pos)
                    realized += pos.realized()
            return {"sod": sod, "utilized": round(utilized, 2),
                    "available": round(sod + realized - utilized, 2)}

    def position_rows(self, client_id: str) -> list[dict[str, Any]]:
        """``GET /positions`` rows."""
        rows = []
        with self._lock:
            items = [(k, p) for k, p in self.positions.items() if k[0] == client_id]
        for (_, sid, product), pos in items:
            row = self.row(sid)
            quote = self.market.quote(sid)
            ltp = quote.ltp if quote else 0.0
            buy_avg = pos.buy_value / pos.buy_qty if pos.buy_qty else 0.0
            sell_avg = pos.sell_value / pos.sell_qty if pos.sell_qty else 0.0
            net = pos.net
            unreal = net * (ltp - (buy_avg if net > 0 else sell_avg)) if net else 0.0
            rows.append({
                "dhanClientId": client_id, "tradingSymbol": row.trading_symbol if row else "",
                "securityId": sid,
                "positionType": "LONG" if net > 0 else "SHORT" if net < 0 else "CLOSED",
                "exchangeSegment": "NSE_FNO", "productType": product,
                "buyAvg": round(buy_avg, 2), "costPrice": round(buy_avg or sell_avg, 2),
                "buyQty": pos.buy_qty, "sellAvg": round(sell_avg, 2), "sellQty": pos.sell_qty,
                "netQty": net, "realizedProfit": round(pos.realized(), 2),
                "unrealizedProfit": round(unreal, 2), "rbiReferenceRate": 1.0, "multiplier": 1,
                "carryForwardBuyQty": 0, "carryForwardSellQty": 0, "carryForwardBuyValue": 0.0,
                "carryForwardSellValue": 0.0, "dayBuyQty": pos.buy_qty,
                "daySellQty": pos.sell_qty, "dayBuyValue": round(pos.buy_value, 2),
                "daySellValue": round(pos.sell_value, 2),
                "drvExpiryDate": row.expiry.isoformat() if row and row.expiry else "0001-01-01",
                "drvOptionType": {"CE": "CALL", "PE": "PUT"}.get(
                    (row.option_type or "") if row else ""),
                "drvStrikePrice": (row.strike or 0.0) if row else 0.0, "crossCurrency": False})
        return rows
