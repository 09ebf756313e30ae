"""Closes the broker makes by itself, pure: which open live trades did the broker close?

Dhan closes positions without an order of the engine's: an RMS square-off (margin
shortfall), a P&L-based exit, the 15:20 IST square-off of ``INTRADAY`` positions, a close by
hand on the broker's own terminal, and the settlement of contracts at expiry. The engine's
books then hold a trade the broker no longer holds; an automatic exit of it would send
orders that *open* new positions. This module decides, from

* the open trades (only ``live`` ones count) and each trade's product,
* the broker's net positions per (security, product) (``GET /positions``),
* the broker's trade book (``GET /trades``: order id, side, quantity, price, time),
* the order ids the engine knows as its own (``order_intents``, ``executions``),
* the securities and tags with an order intent not settled yet (never decided upon),
* the clock, the session close of an expiry date and a settlement-price source,

what happened to each trade, per (security, product) key of its legs:

* **closed by the broker** — the key is flat at the broker and the trades on it since the
  trade opened that are *not ours* add up to exactly the closing quantity, all on the closing
  side: the leg closed at their volume-weighted price (charges from the charges model). An
  ``INTRADAY`` key whose closing trades are all at or after 15:20 IST is the intraday
  square-off; anything else reads "broker square-off (RMS)" (the trade book cannot tell an
  RMS square-off from a P&L exit or a close by hand);
* **settled at expiry** — the leg's contract expired (the expiry session has closed), the
  key has left the broker's positions and no trade of the broker's explains it: closed at the
  settlement price (futures: the final settlement price, the NIFTY close; options: the
  intrinsic value against it). No settlement price known: the trade is held, "settle by
  hand";
* **intact** — the broker holds at least the books' quantity in the same direction (a
  surplus is the reconciliation's business);
* **partly closed** / **unexplained** — less than the books in the same direction, the
  other direction, or flat with nothing in the trade book to explain it.

A trade whose every leg is closed or settled is **booked closed** (:class:`BrokerClose`);
a trade with some legs gone and some still held is **held** (:class:`Hold`) with an alert
naming what the broker still holds for it. A key shared by several trades is decided only
when it is flat at the broker and every holder is on the same side (then every holder's leg
went); otherwise the netting cannot say whose quantity went, and every holder is held.

A decision is acted on once it has been the same on :data:`CONFIRM_AFTER` consecutive checks
(a close is sent again every :data:`RESEND_EVERY` checks while the trade stays open: booking
is idempotent; a hold is sent once). The state is a small immutable value passed in and
returned, so the whole thing is a function of its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from engine.execution.charges import ZERO_CHARGES, order_charges, sum_charges
from engine.execution.expiry import settlement_charges, settlement_value
from engine.execution.intents import exposure_text
from engine.execution.paper import Fill
from engine.execution.reconcile import DEFAULT_PRODUCT, Key, book_positions, broker_net
from engine.execution.trades import Trade, sign
from engine.messages.commands import BrokerClosedLeg
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.timeutil import IST

CONFIRM_AFTER = 2       # consecutive checks with the same decision
RESEND_EVERY = 3        # checks between two sends of the same close while the trade is open
INTRADAY_SQUARE_OFF = time(15, 20)
SESSION_CLOSE = time(15, 30)

KIND_RMS = "broker_square_off"
KIND_INTRADAY = "intraday_square_off"
KIND_SETTLEMENT = "expiry_settlement"
KIND_MIXED = "mixed"


@dataclass(frozen=True, slots=True)
class BrokerFill:
    """One row of the broker's trade book."""

    order_id: str
    security_id: str
    product: str
    side: str          # BUY | SELL
    quantity: int
    price: Decimal
    at: datetime | None

    @classmethod
    def from_trade(cls, t: Any) -> BrokerFill:
        """From ``engine.broker.dhan.models.Trade`` (the product is in its raw row)."""
        raw = getattr(t, "raw", None) or {}
        return cls(order_id=str(t.order_id), security_id=str(t.security_id),
                   product=str(raw.get("productType") or DEFAULT_PRODUCT),
                   side=str(t.transaction_type).upper(), quantity=int(t.traded_quantity),
                   price=Decimal(str(t.traded_price)), at=t.exchange_time)


@dataclass(frozen=True, slots=True)
class BrokerClose:
    """A trade to book closed: every leg closed by the broker or settled at expiry."""

    tag: str
    reason: str
    kind: str
    legs: tuple[BrokerClosedLeg, ...]


@dataclass(frozen=True, slots=True)
class Hold:
    """A trade to put on hold (once), and why: what the broker still holds for it."""

    tag: str
    reason: str


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class CloseState:
    """Memory between checks: per tag, the last decision's signature and its streak."""

    seen: Mapping[str, tuple[str, int]] = field(default_factory=_frozen)


@dataclass(frozen=True, slots=True)
class BrokerCloses:
    """The result of one check."""

    state: CloseState
    closes: tuple[BrokerClose, ...]   # to book now
    holds: tuple[Hold, ...]           # to hold now
    decided: tuple[str, ...]          # tags with a confirmed decision (closed or held)
    pending: tuple[str, ...]          # tags with a decision seen once so far


# ------------------------------------------------------------------ per key
@dataclass(frozen=True, slots=True)
class _KeyFate:
    status: str                               # intact|closed|settled|gone|partial|ambiguous
    text: str = ""                            # for the operator
    price: Decimal | None = None              # closed / settled
    parts: tuple[tuple[str, int, Decimal], ...] = ()   # (order id, qty, price) closing fills
    kind: str = ""
    spot: Decimal | None = None
    broker: int = 0


def _key_text(key: Key) -> str:
    return f"security {key[0]} ({key[1]})"


def _vwap(parts: Iterable[tuple[str, int, Decimal]]) -> Decimal:
    parts = list(parts)
    qty = sum(q for _, q, _ in parts)
    return (sum((px * q for _, q, px in parts), Decimal(0)) / qty).quantize(Decimal("0.01"))


def _default_close(expiry: date) -> datetime:
    return datetime.combine(expiry, SESSION_CLOSE, IST)


def _is_intraday_square_off(key: Key, parts: Sequence[BrokerFill]) -> bool:
    return key[1] == "INTRADAY" and bool(parts) and all(
        f.at is not None and f.at.astimezone(IST).time() >= INTRADAY_SQUARE_OFF for f in parts)


def _fate(key: Key, expected: int, broker: int, legs: Sequence[tuple[Trade, Leg]],
          foreign: Sequence[BrokerFill], expired: bool, settle: Callable[[Leg], Any]) -> _KeyFate:
    """What happened to ``key`` (see the module docstring)."""
    tags = sorted({t.tag for t, _ in legs})
    shared = len(tags) > 1
    sides = {sign(leg.side) for _, leg in legs}
    if broker == expected and not (expired and broker == 0):
        return _KeyFate("intact", broker=broker)
    if expected != 0 and broker * expected > 0 and abs(broker) > abs(expected):
        return _KeyFate("intact", broker=broker)  # a surplus: the reconciliation's business
    if broker == 0:
        if len(sides) > 1:
            return _KeyFate("ambiguous", text=(
                f"{_key_text(key)} is flat at the broker but trades {', '.join(tags)} hold it "
                f"on both sides (books {expected:+d}): the netting cannot say whose quantity "
                "went"), broker=broker)
        closing = "SELL" if expected > 0 else "BUY"
        net = sum(f.quantity * (1 if f.side == "BUY" else -1) for f in foreign)
        if foreign:
            if net == -expected and all(f.side == closing for f in foreign):
                parts = tuple((f.order_id, f.quantity, f.price) for f in foreign)
                kind = KIND_INTRADAY if _is_intraday_square_off(key, foreign) else KIND_RMS
                return _KeyFate("closed", price=_vwap(parts), parts=parts, kind=kind,
                                broker=broker)
            return _KeyFate("gone", text=(
                f"{_key_text(key)} is flat at the broker (books {expected:+d}) but the trades "
                f"on it that the engine did not place add up to {net:+d}, not {-expected:+d}: "
                "the trade book does not explain the close"), broker=broker)
        if expired:
            _, leg = legs[0]
            try:
                value = settle(leg)
            except ValueError as exc:
                return _KeyFate("gone", text=f"{_key_text(key)} expired and left the broker's "
                                f"positions: {exc}; settle it by hand", broker=broker)
            if value is None:
                return _KeyFate("gone", text=(
                    f"{_key_text(key)} expired on {leg.expiry} and left the broker's positions, "
                    "but no settlement price (the NIFTY close) is available: settle it by "
                    "hand"), broker=broker)
            price, spot = value
            return _KeyFate("settled", price=price, spot=spot, kind=KIND_SETTLEMENT,
                            broker=broker)
        return _KeyFate("gone", text=(
            f"{_key_text(key)} is flat at the broker (books {expected:+d}) and no trade in the "
            "broker's trade book explains it (closed on an earlier day?)"), broker=broker)
    if shared:
        return _KeyFate("ambiguous", text=(
            f"{_key_text(key)}: broker {broker:+d}, books {expected:+d} over trades "
            f"{', '.join(tags)}: the netting cannot say whose quantity went"), broker=broker)
    if broker * expected > 0:
        return _KeyFate("partial", text=(
            f"{_key_text(key)}: the broker holds {broker:+d} of the books' {expected:+d}"),
            broker=broker)
    return _KeyFate("gone", text=(
        f"{_key_text(key)}: the broker holds {broker:+d}, the other way round from the books' "
        f"{expected:+d}"), broker=broker)


# ------------------------------------------------------------------ per trade
def _leg_text(leg: Leg, fate: _KeyFate) -> str:
    closing = "SELL" if leg.side is Side.BUY else "BUY"
    if fate.status == "settled":
        what = "future" if leg.kind is InstrumentKind.FUT else (
            f"{leg.option_type.value if leg.option_type else ''} {leg.strike} intrinsic")
        return f"security {leg.security_id} settled at {fate.price} ({what})"
    orders = sorted({o for o, _, _ in fate.parts})
    return (f"{closing} {leg.quantity} of security {leg.security_id} at {fate.price} "
            f"(broker order{'s' if len(orders) > 1 else ''} {', '.join(orders)})")


def _reason(legs: Sequence[tuple[Leg, _KeyFate]]) -> tuple[str, str]:
    kinds = {fate.kind for _, fate in legs}
    parts: list[str] = []
    for kind, head in ((KIND_RMS, "broker square-off (RMS): closed at the broker by orders the "
                                  "engine did not place (an RMS square-off, a P&L exit or by "
                                  "hand)"),
                       (KIND_INTRADAY, "intraday square-off 15:20 by the broker")):
        mine = [_leg_text(leg, f) for leg, f in legs if f.kind == kind]
        if mine:
            parts.append(f"{head}: {'; '.join(mine)}")
    settled = [(leg, f) for leg, f in legs if f.kind == KIND_SETTLEMENT]
    if settled:
        spots = sorted({(leg.expiry, f.spot) for leg, f in settled}, key=lambda x: str(x[0]))
        at = " and ".join(f"{spot:,.2f}" + (f" ({expiry})" if len(spots) > 1 else "")
                          for expiry, spot in spots)
        parts.append(f"expiry settlement at {at}: "
                     + "; ".join(_leg_text(leg, f) for leg, f in settled))
    kind = kinds.pop() if len(kinds) == 1 else KIND_MIXED
    return "; ".join(parts), kind


def decide(trades: Iterable[Trade], broker: Mapping[Any, int], fills: Iterable[BrokerFill],
           state: CloseState, *, now: datetime, known_order_ids: Collection[str],
           products: Mapping[str, str] | None = None, busy_tags: Collection[str] = (),
           busy_securities: Collection[str] = (),
           session_close: Callable[[date], datetime] | None = None,
           settlement_price: Callable[[date], Decimal | None] | None = None) -> BrokerCloses:
    """One check: which open live trades did the broker close (module docstring)?

    Args:
        trades: the open trades (only ``live`` ones count).
        broker: net quantity per ``(security id, product)`` (or per security id for the
            default product); missing means 0.
        fills: the broker's trade book.
        state: the state returned by the previous check (``CloseState()`` at first).
        now: the engine clock.
        known_order_ids: order ids the engine placed (any trade, any purpose).
        products: trade tag -> product of its legs (default ``MARGIN``).
        busy_tags / busy_securities: tags and securities with an order intent not settled
            yet: nothing is decided for a trade touching them.
        session_close: the session close of a date (default 15:30 IST).
        settlement_price: the final settlement price (the NIFTY close) of an expiry date,
            or ``None`` when unknown.

    Raises:
        TypeError: a broker quantity is not an int.
    """
    live = [t for t in trades if t.mode == "live" and t.legs]
    products = dict(products or {})
    net = broker_net(broker)
    expected, _ = book_positions(live, products)
    close_of = session_close or _default_close
    busy_sids = {str(s) for s in busy_securities}
    busy = set(busy_tags)
    spots: dict[date, Decimal | None] = {}

    def settle(leg: Leg) -> tuple[Decimal, Decimal] | None:
        if leg.expiry not in spots:
            spots[leg.expiry] = settlement_price(leg.expiry) if settlement_price else None
        spot = spots[leg.expiry]
        if spot is None:
            return None
        return settlement_value(leg, Decimal(spot)), Decimal(spot)

    legs_on: dict[Key, list[tuple[Trade, Leg]]] = {}
    for t in live:
        for held in t.legs:
            key = (str(held.leg.security_id), products.get(t.tag, DEFAULT_PRODUCT))
            legs_on.setdefault(key, []).append((t, held.leg))
    ours = {str(o) for o in known_order_ids}
    fates: dict[Key, _KeyFate] = {}
    for key, holders in legs_on.items():
        if key[0] in busy_sids or any(t.tag in busy for t, _ in holders):
            continue
        since = min(t.opened_at for t, _ in holders).replace(microsecond=0)
        foreign = [f for f in fills if (f.security_id, f.product) == key
                   and f.order_id not in ours and (f.at is None or f.at >= since)]
        expiry = holders[0][1].expiry
        expired = expiry is not None and now >= close_of(expiry)
        fates[key] = _fate(key, expected.get(key, 0), net.get(key, 0), holders, foreign,
                           expired, settle)

    seen: dict[str, tuple[str, int]] = {}
    closes: list[BrokerClose] = []
    holds: list[Hold] = []
    decided: list[str] = []
    pending: list[str] = []
    for t in live:
        product = products.get(t.tag, DEFAULT_PRODUCT)
        keyed = [(i, held.leg, (str(held.leg.security_id), product))
                 for i, held in enumerate(t.legs)]
        if any(k not in fates for _, _, k in keyed):
            continue  # an order touching it is unsettled: decided later
        leg_fates = [(i, leg, fates[k]) for i, leg, k in keyed]
        statuses = {f.status for _, _, f in leg_fates}
        if statuses == {"intact"}:
            continue
        if statuses <= {"closed", "settled"}:
            reason, kind = _reason([(leg, f) for _, leg, f in leg_fates])
            legs = tuple(BrokerClosedLeg(
                leg_index=i, security_id=leg.security_id, quantity=leg.quantity, price=f.price,
                how="settlement" if f.status == "settled" else "broker_order",
                order_ids=tuple(sorted({o for o, _, _ in f.parts})),
                parts=_leg_parts(leg, f, shared=len(legs_on[k]) > 1),
                settlement_spot=f.spot)
                for (i, leg, f), (_, _, k) in zip(leg_fates, keyed, strict=True))
            sig = "close|" + "|".join(f"{x.security_id}:{x.how}:{x.price}" for x in legs)
            count = _streak(state, t.tag, sig)
            seen[t.tag] = (sig, count)
            if count >= CONFIRM_AFTER:
                decided.append(t.tag)
                if (count - CONFIRM_AFTER) % RESEND_EVERY == 0:
                    closes.append(BrokerClose(tag=t.tag, reason=reason, kind=kind, legs=legs))
            else:
                pending.append(t.tag)
            continue
        reason = _hold_reason(t, leg_fates)
        sig = "hold|" + "|".join(f"{leg.security_id}:{f.status}:{f.broker}"
                                 for _, leg, f in leg_fates)
        count = _streak(state, t.tag, sig)
        seen[t.tag] = (sig, count)
        if count >= CONFIRM_AFTER:
            decided.append(t.tag)
            if count == CONFIRM_AFTER:
                holds.append(Hold(tag=t.tag, reason=reason))
        else:
            pending.append(t.tag)
    return BrokerCloses(state=CloseState(_frozen(seen)), closes=tuple(closes),
                        holds=tuple(holds), decided=tuple(decided), pending=tuple(pending))


def _streak(state: CloseState, tag: str, sig: str) -> int:
    prev = state.seen.get(tag)
    return prev[1] + 1 if prev is not None and prev[0] == sig else 1


def _leg_parts(leg: Leg, fate: _KeyFate, *, shared: bool) -> tuple[tuple[int, Decimal], ...]:
    """(quantity, price) per broker order closing ``leg`` (the charges are per order); a leg
    on a key shared with other trades takes the key's VWAP for its whole quantity."""
    if fate.status != "closed":
        return ()
    if shared:
        return ((leg.quantity, fate.price),)
    per: dict[str, list[tuple[int, Decimal]]] = {}
    for oid, qty, px in fate.parts:
        per.setdefault(oid, []).append((qty, px))
    out = []
    for items in per.values():
        qty = sum(q for q, _ in items)
        out.append((qty, (sum((px * q for q, px in items), Decimal(0)) / qty)
                    .quantize(Decimal("0.01"))))
    return tuple(out)


def _hold_reason(t: Trade, leg_fates: Sequence[tuple[int, Leg, _KeyFate]]) -> str:
    still: list[tuple[str, str, int]] = []
    gone: list[str] = []
    for _, leg, f in leg_fates:
        if f.status == "intact":
            still.append((leg.security_id, leg.side.value, leg.quantity))
        elif f.status == "partial":
            still.append((leg.security_id, "BUY" if f.broker > 0 else "SELL", abs(f.broker)))
            gone.append(f.text)
        elif f.status in ("closed", "settled"):
            gone.append(_leg_text(leg, f) + (" (settled at expiry)" if f.status == "settled"
                                             else " — closed by the broker"))
        else:
            gone.append(f.text)
    if any(f.status == "ambiguous" for _, _, f in leg_fates):
        head = f"{t.tag}: a security it shares with another trade changed at the broker"
    else:
        head = f"{t.tag} partly closed at the broker (not by the engine)"
    return (f"{head}: {'; '.join(dict.fromkeys(gone))}. The broker still holds "
            f"{exposure_text(still)} for it. Not booked: check the broker, close what is left "
            "by hand and record the close")


def close_fills(trade: Trade, legs: Sequence[BrokerClosedLeg], on: date) -> list[Fill]:
    """The exit fills of a broker close: one per trade leg, in the trade's leg order, at the
    broker's price; charges from the charges model per broker order (none for a settlement).

    Raises:
        ValueError: ``legs`` do not match the trade's legs one for one (index, security,
            quantity), or a price is missing or negative.
    """
    by_index = {x.leg_index: x for x in legs}
    if sorted(by_index) != list(range(len(trade.legs))) or len(legs) != len(trade.legs):
        raise ValueError(f"broker close of {trade.tag} names legs {sorted(by_index)}, the trade "
                         f"has {len(trade.legs)}")
    fills: list[Fill] = []
    for i, held in enumerate(trade.legs):
        x = by_index[i]
        leg = held.leg
        if x.security_id != leg.security_id or x.quantity != leg.quantity:
            raise ValueError(f"broker close of {trade.tag} leg {i}: security {x.security_id} x"
                             f"{x.quantity}, the trade holds {leg.security_id} x{leg.quantity}")
        if x.price is None or x.price < 0:
            raise ValueError(f"broker close of {trade.tag} leg {i}: price {x.price!r}")
        closing = Leg(security_id=leg.security_id,
                      side=Side.SELL if leg.side is Side.BUY else Side.BUY,
                      quantity=leg.quantity, kind=leg.kind, option_type=leg.option_type,
                      expiry=leg.expiry, strike=leg.strike)
        charges = ZERO_CHARGES
        if x.how == "settlement":  # exercise STT on a long option settled in the money
            charges = settlement_charges(leg, x.price, leg.quantity)
        elif x.how == "broker_order":
            per = [order_charges(kind=leg.kind.value, side=closing.side.value, price=px,
                                 quantity=q, on=on) for q, px in (x.parts or ((leg.quantity,
                                                                                x.price),))]
            charges = sum_charges(per)
        fills.append(Fill(leg=closing, price=x.price, charges=charges,
                          order_id=",".join(x.order_ids),
                          correlation_id=None))  # type: ignore[arg-type]  # not our order
    return fills


__all__ = ["CONFIRM_AFTER", "KIND_INTRADAY", "KIND_MIXED", "KIND_RMS", "KIND_SETTLEMENT",
           "RESEND_EVERY", "BrokerClose", "BrokerCloses", "BrokerFill", "CloseState", "Hold",
           "close_fills", "decide", "settlement_value"]
