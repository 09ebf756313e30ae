"""Reconciliation auto-heal: what the books do about a difference the reconciliation confirmed.

The reconciliation (:mod:`engine.execution.reconcile`, run by the MonitorActor) finds
differences between the live trades and the broker's positions; the closes the broker made
by itself are decided in :mod:`engine.execution.broker_closes`. This module holds the heals
(the seeds' auto-heal actions), each applied by the ExecutorActor through its normal open /
close path (``repository.record_open`` / ``record_close``: executions, closed_trades,
metrics_days, trade_journal; ``PositionOpened`` / ``PositionClosed`` for the RiskActor's
counters) **in one transaction with its ``reconciliation_audit`` row** — a crash between the
heal and the audit leaves neither:

* ``CONFIRMED_FLAT_REMOVAL`` — a trade flat at the broker on every leg (two checks) and
  explained by the trade book: booked closed at the broker's prices, charges from the charges
  model (:func:`record_close_audited`);
* ``ORPHAN_ADOPTION`` — a NIFTY F&O position no trade holds (two checks): adopted as a live
  trade of strategy ``ADOPTED`` at the broker's average price (:func:`adoption_legs`,
  :func:`record_open_audited`), watched by the generic stop / target rule with
  ``ADOPTED_STOP_LOSS_PCT`` / ``ADOPTED_PROFIT_TARGET_PCT``. ``RECON_ADOPT_ORPHANS=false``:
  alerted only (``ORPHAN_ALERT``). A position of another product than the live broker sends
  is never adopted (its exit would open a new position);
* ``QTY_MISMATCH_HEALED`` — a confirmed quantity mismatch the trade book explains (a partial
  exit by hand that leaves every leg held; a leg gone whole is held for the operator): the
  closed part is split off as its own closed trade ``<tag>~<n>`` at the trade-book prices
  and the rest stays open with the smaller quantities
  (:func:`partial_heals`, :func:`split_partial`, :func:`record_partial_heal`).

:class:`StartupGate`: the engine opens no live position until its first reconciliation has
found books and broker agreeing, or has recorded the differences (two checks); a process that
starts again starts with the gate shut.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.execution import repository as repo
from engine.execution.broker_closes import BrokerFill
from engine.execution.charges import order_charges, sum_charges
from engine.execution.paper import Fill
from engine.execution.reconcile import DEFAULT_PRODUCT, Key
from engine.execution.trades import OpenLeg, Trade, sign
from engine.messages.commands import BrokerClosedLeg
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.store.tx import transaction

ADOPTED = "ADOPTED"
FLAT_REMOVAL = "CONFIRMED_FLAT_REMOVAL"
ADOPTION = "ORPHAN_ADOPTION"
HEALED = "QTY_MISMATCH_HEALED"
STARTUP = "STARTUP_RECONCILED"
_CENT = Decimal("0.01")


# ------------------------------------------------------------------ one transaction
class PinnedPool:
    """A pool that lends the one connection of an outer transaction: the repository's own
    ``transaction(pool)`` blocks become savepoints inside it, so a heal and its audit row
    commit (or roll back) together."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @contextmanager
    def connection(self) -> Iterator[Any]:
        yield self._conn


def audit(conn: Any, action: str, tag: str | None, security_id: str | None,
          details: Mapping[str, Any]) -> None:
    """Append one ``reconciliation_audit`` row in ``conn``'s transaction."""
    conn.execute("INSERT INTO reconciliation_audit (action, trade_tag, security_id, details)"
                 " VALUES (%s, %s, %s, %s)", (action, tag, security_id, Jsonb(dict(details))))


def record_close_audited(pool: Any, trade: Trade, fills: list[Fill], at: datetime, reason: str,
                         journal: Mapping[str, Any], details: Mapping[str, Any],
                         *, action: str = FLAT_REMOVAL) -> repo.CloseResult:
    """``repository.record_close`` and its audit row in one transaction (no audit row when
    the close was already recorded)."""
    with transaction(pool) as conn:
        result = repo.record_close(PinnedPool(conn), trade, fills, at, reason, journal)
        if result.recorded:
            audit(conn, action, trade.tag, None, {
                **details, "realized_pnl": str(result.realized_pnl.quantize(_CENT)),
                "charges": str(result.charges.quantize(_CENT))})
    return result


def record_open_audited(pool: Any, trade: Trade, fills: list[Fill], at: datetime,
                        details: Mapping[str, Any]) -> bool:
    """``repository.record_open`` of an adopted trade and its ``ORPHAN_ADOPTION`` row in one
    transaction; False (nothing written) when the tag is already open."""
    with transaction(pool) as conn:
        recorded = repo.record_open(PinnedPool(conn), trade, fills, at)
        if recorded:
            audit(conn, ADOPTION, trade.tag, ",".join(sorted({f.leg.security_id for f in fills})),
                  details)
    return recorded


def record_partial_heal(pool: Any, part: Trade, rest: Trade, fills: list[Fill], at: datetime,
                        reason: str, journal: Mapping[str, Any], details: Mapping[str, Any]
                        ) -> repo.CloseResult:
    """The split-off part closed, the rest saved with its smaller legs, and the
    ``QTY_MISMATCH_HEALED`` row: one transaction."""
    with transaction(pool) as conn:
        pinned = PinnedPool(conn)
        _move_entries(conn, rest.tag, part)  # before the close: it checks the part's entries
        result = repo.record_close(pinned, part, fills, at, reason, journal)
        if result.recorded:
            repo.save_marks(pinned, rest)
            audit(conn, HEALED, rest.tag, ",".join(sorted({f.leg.security_id for f in fills})),
                  {**details, "split_off": part.tag,
                   "realized_pnl": str(result.realized_pnl.quantize(_CENT)),
                   "charges": str(result.charges.quantize(_CENT))})
    return result


def _move_entries(conn: Any, tag: str, part: Trade) -> None:
    """The split-off part takes its share of the trade's entry executions (the rows keep
    their time, price and order id; charges pro rata; a row split in two keeps its
    correlation id on the remaining part only), and counts as a trade opened that day."""
    days: set[date] = set()
    for held in part.legs:
        left = held.leg.quantity
        rows = conn.execute(
            "SELECT * FROM executions WHERE tag = %s AND action = 'OPEN' AND security_id = %s"
            " AND side = %s ORDER BY id DESC FOR UPDATE",
            (tag, held.leg.security_id, held.leg.side.value)).fetchall()
        for r in rows:
            if left <= 0:
                break
            take = min(left, int(r["quantity"]))
            days.add(r["trade_date"])
            if take == int(r["quantity"]):
                conn.execute("UPDATE executions SET tag = %s WHERE id = %s", (part.tag, r["id"]))
            else:
                share = (Decimal(r["charges"]) * take / int(r["quantity"])).quantize(_CENT)
                conn.execute("UPDATE executions SET quantity = quantity - %s, charges = charges"
                             " - %s WHERE id = %s", (take, share, r["id"]))
                conn.execute(
                    "INSERT INTO executions (trade_date, executed_at, tag, strategy, mode, action,"
                    " security_id, side, quantity, price, charges, order_id, correlation_id,"
                    " payload) SELECT trade_date, executed_at, %s, strategy, mode, action,"
                    " security_id, side, %s, price, %s, order_id, NULL, payload ||"
                    " jsonb_build_object('split_from', tag) FROM executions WHERE id = %s",
                    (part.tag, take, share, r["id"]))
            left -= take
        if left > 0:
            raise ValueError(f"heal of {tag}: its entry executions of security "
                             f"{held.leg.security_id} hold less than {held.leg.quantity}")
    for day in days:
        conn.execute("UPDATE metrics_days SET trades_opened = trades_opened + 1, updated_at ="
                     " now() WHERE trade_date = %s", (day,))


# ------------------------------------------------------------------ orphan adoption
def is_nifty_fno(position: Any) -> bool:
    """A NIFTY (not BANKNIFTY, FINNIFTY, NIFTYNXT50 ...) derivative in NSE_FNO."""
    if str(getattr(position, "exchange_segment", "")) != "NSE_FNO":
        return False
    symbol = str(getattr(position, "trading_symbol", "") or "").upper()
    head = re.match(r"[A-Z]+", symbol)
    return head is not None and head.group(0) == "NIFTY"


def adoption_legs(position: Any) -> tuple[Leg, Decimal]:
    """The leg (units, side from the net quantity) and entry price (the broker's average
    price of that side) of an orphan position (``engine.broker.dhan.models.Position``).

    Raises:
        ValueError: the position is flat, not NIFTY F&O, or has no average price.
    """
    if not is_nifty_fno(position):
        raise ValueError(f"security {position.security_id} ({position.trading_symbol!r}, "
                         f"{position.exchange_segment}) is not a NIFTY F&O contract")
    net = int(position.net_qty)
    if net == 0:
        raise ValueError(f"security {position.security_id} is flat at the broker")
    raw = getattr(position, "raw", None) or {}
    price = Decimal(str(position.buy_avg if net > 0 else position.sell_avg or 0))
    if price <= 0:
        price = Decimal(str(raw.get("costPrice") or 0))
    if price <= 0:
        raise ValueError(f"security {position.security_id}: the broker gives no average price")
    opt = {"CALL": OptionType.CE, "PUT": OptionType.PE, "CE": OptionType.CE,
           "PE": OptionType.PE}.get(str(raw.get("drvOptionType") or "").upper())
    expiry_text = str(raw.get("drvExpiryDate") or "")[:10]
    expiry = date.fromisoformat(expiry_text) if expiry_text and not expiry_text.startswith(
        "0001") else None
    strike = Decimal(str(raw.get("drvStrikePrice") or 0)) if opt else None
    leg = Leg(security_id=str(position.security_id), side=Side.BUY if net > 0 else Side.SELL,
              quantity=abs(net), kind=InstrumentKind.OPT if opt else InstrumentKind.FUT,
              option_type=opt, expiry=expiry, strike=strike if strike else None,
              price=price.quantize(_CENT))
    return leg, price.quantize(_CENT)


def adopted_tag(security_id: str, at: datetime) -> str:
    """``ADOPTED-<security>-<HHMMSS>``: unique per security and check."""
    return f"{ADOPTED}-{security_id}-{at:%H%M%S}"


def adoption_fill(leg: Leg, on: date) -> Fill:
    """The entry fill of an adopted leg at the broker's average price, model charges."""
    price = leg.price if leg.price is not None else Decimal(0)
    charges = order_charges(kind=leg.kind.value, side=leg.side.value, price=price,
                            quantity=leg.quantity, on=on)
    return Fill(leg=leg, price=price, charges=charges, order_id="",
                correlation_id=None)  # type: ignore[arg-type]  # not our order


# ------------------------------------------------------------------ partial exits by hand
@dataclass(frozen=True, slots=True)
class PartialHeal:
    """A trade part of which was closed by hand at the broker, explained by the trade book:
    ``legs`` the closed quantities (``BrokerClosedLeg.quantity`` = units closed),
    ``books`` the trade's leg quantities the heal was computed on."""

    tag: str
    legs: tuple[BrokerClosedLeg, ...]
    books: tuple[int, ...]
    reason: str


def _vwap(parts: Sequence[tuple[int, Decimal]]) -> Decimal:
    qty = sum(q for q, _ in parts)
    return (sum((px * q for q, px in parts), Decimal(0)) / qty).quantize(_CENT)


def partial_heals(trades: Iterable[Trade], broker: Mapping[Key, int],
                  fills: Iterable[BrokerFill], *, known_order_ids: Iterable[str],
                  products: Mapping[str, str], confirmed: Iterable[str],
                  busy: Iterable[str] = ()) -> list[PartialHeal]:
    """The confirmed quantity mismatches the trade book explains as a partial exit by hand.

    A live trade qualifies when it alone holds each of its keys, no order intent of it or its
    securities is unsettled (``busy``: tags and security ids), at least one leg is smaller at
    the broker (same direction, never flat: a leg gone whole leaves a naked structure, which
    ``broker_closes`` holds for the operator) on a key whose mismatch is confirmed
    (``confirmed``: ``"<security>:<product>"``), every other leg agrees, and the broker's
    trades on each smaller key since the trade opened that are not the engine's are all on
    the closing side and add up to exactly the difference.
    """
    trades = [t for t in trades if t.mode == "live" and t.legs]
    ours = {str(o) for o in known_order_ids}
    confirmed = set(confirmed)
    busy = {str(b) for b in busy}
    fills = list(fills)
    holders: dict[Key, set[str]] = {}
    for t in trades:
        for x in t.legs:
            holders.setdefault((x.leg.security_id, products.get(t.tag, DEFAULT_PRODUCT)),
                               set()).add(t.tag)
    out: list[PartialHeal] = []
    for t in trades:
        product = products.get(t.tag, DEFAULT_PRODUCT)
        if t.tag in busy or any(x.leg.security_id in busy for x in t.legs):
            continue
        keys = [(x.leg.security_id, product) for x in t.legs]
        if any(holders[k] != {t.tag} for k in keys) or len(set(keys)) != len(keys):
            continue
        closed: list[BrokerClosedLeg] = []
        ok = True
        for i, (x, key) in enumerate(zip(t.legs, keys, strict=True)):
            exp = sign(x.leg.side) * x.leg.quantity
            brk = broker.get(key, 0)
            if brk == exp:
                continue
            # a leg gone whole leaves a broken structure: held for the operator (broker_closes)
            if brk * exp <= 0 or abs(brk) > abs(exp) or f"{key[0]}:{key[1]}" not in confirmed:
                ok = False
                break
            closing = "SELL" if exp > 0 else "BUY"
            foreign = [f for f in fills if (f.security_id, f.product) == key
                       and f.order_id not in ours
                       and (f.at is None or f.at >= t.opened_at.replace(microsecond=0))]
            gone = abs(exp) - abs(brk)
            if not foreign or any(f.side != closing for f in foreign) or \
                    sum(f.quantity for f in foreign) != gone:
                ok = False
                break
            per: dict[str, list[tuple[int, Decimal]]] = {}
            for f in foreign:
                per.setdefault(f.order_id, []).append((f.quantity, f.price))
            parts = tuple((sum(q for q, _ in v), _vwap(v)) for v in per.values())
            closed.append(BrokerClosedLeg(
                leg_index=i, security_id=x.leg.security_id, quantity=gone,
                price=_vwap([(f.quantity, f.price) for f in foreign]), how="broker_order",
                order_ids=tuple(sorted(per)), parts=parts))
        if not ok or not closed:
            continue
        what = "; ".join(f"{'SELL' if t.legs[c.leg_index].leg.side is Side.BUY else 'BUY'} "
                         f"{c.quantity} of security {c.security_id} at {c.price} (broker order"
                         f"{'s' if len(c.order_ids) > 1 else ''} {', '.join(c.order_ids)})"
                         for c in closed)
        out.append(PartialHeal(tag=t.tag, legs=tuple(closed),
                               books=tuple(x.leg.quantity for x in t.legs),
                               reason=f"partial exit by hand at the broker: {what}"))
    return out


def split_partial(trade: Trade, legs: Sequence[BrokerClosedLeg], part_tag: str, on: date
                  ) -> tuple[Trade, Trade, list[Fill]]:
    """``(part, rest, exit fills of part)``: the closed quantities split off ``trade`` as
    ``part_tag`` (entry charges pro rata), the rest with the smaller legs (a leg closed whole
    is dropped); the part's exit fills at the trade-book prices with charges per broker order.

    Raises:
        ValueError: a leg index, security or quantity does not fit the trade.
    """
    by_index = {c.leg_index: c for c in legs}
    part_legs: list[OpenLeg] = []
    rest_legs: list[OpenLeg] = []
    fills: list[Fill] = []
    for i, held in enumerate(trade.legs):
        c = by_index.pop(i, None)
        if c is None:
            rest_legs.append(held)
            continue
        leg = held.leg
        if c.security_id != leg.security_id or not 0 < c.quantity <= leg.quantity:
            raise ValueError(f"heal of {trade.tag} leg {i}: security {c.security_id} x"
                             f"{c.quantity}, the trade holds {leg.security_id} x{leg.quantity}")
        share = (held.entry_charges * c.quantity / leg.quantity).quantize(_CENT)
        part_legs.append(OpenLeg(replace(leg, quantity=c.quantity), held.entry_price, share))
        if c.quantity < leg.quantity:
            rest_legs.append(OpenLeg(replace(leg, quantity=leg.quantity - c.quantity),
                                     held.entry_price, held.entry_charges - share))
        closing = Leg(security_id=leg.security_id,
                      side=Side.SELL if leg.side is Side.BUY else Side.BUY,
                      quantity=c.quantity, kind=leg.kind, option_type=leg.option_type,
                      expiry=leg.expiry, strike=leg.strike)
        per = [order_charges(kind=leg.kind.value, side=closing.side.value, price=px,
                             quantity=q, on=on) for q, px in (c.parts or ((c.quantity, c.price),))]
        charges = sum_charges(per)
        fills.append(Fill(leg=closing, price=c.price, charges=charges,
                          order_id=",".join(c.order_ids),
                          correlation_id=None))  # type: ignore[arg-type]  # not our order
    if by_index:
        raise ValueError(f"heal of {trade.tag} names legs {sorted(by_index)} it does not have")
    if not rest_legs:
        raise ValueError(f"heal of {trade.tag} closes every leg: that is a flat removal")
    ctx = {**trade.context, "partial_of": trade.tag, "close_mode": "partial_exit_by_hand",
           "charges_source": "model", "exit_prices_source": "broker_trade_book"}
    part = replace(trade, tag=part_tag, legs=tuple(part_legs), context=ctx, mtm=None,
                   mfe=Decimal(0), mae=Decimal(0), closing=None, hold=None)
    rest = replace(trade, legs=tuple(rest_legs), mtm=None)
    return part, rest, fills


def next_part_tag(pool: Any, tag: str) -> str:
    """``<tag>~<n>``: the next free split-off tag of ``tag``."""
    with pool.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM closed_trades WHERE tag LIKE %s",
                         (f"{tag}~%",)).fetchone()["n"]
    return f"{tag}~{int(n) + 1}"


# ------------------------------------------------------------------ start-up gate
class StartupGate:
    """Shut until this process's first reconciliation is done (see the module docstring).
    Thread-safe; one per engine (``gate_of(services)``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._why = "start-up reconciliation with the broker has not run yet"

    @property
    def done(self) -> bool:
        with self._lock:
            return self._done

    def block_reason(self) -> str | None:
        """Why live entries wait, or None once the books and the broker were reconciled."""
        with self._lock:
            return None if self._done else self._why

    def waiting(self, why: str) -> None:
        with self._lock:
            if not self._done:
                self._why = why

    def open(self) -> None:
        with self._lock:
            self._done = True


def gate_of(services: dict[str, Any]) -> StartupGate | None:
    """The engine's start-up gate: only with a broker to reconcile against (``positions``)."""
    if services.get("positions") is None:
        return None
    gate = services.get("recon_gate")
    if gate is None:
        gate = services.setdefault("recon_gate", StartupGate())
    return gate


def startup_block(services: dict[str, Any], stage: str) -> str | None:
    """The RiskActor's question: may a ``stage`` entry go out now? (live only waits)."""
    if stage != "live":
        return None
    gate = gate_of(services)
    why = gate.block_reason() if gate is not None else None
    return f"live entries wait: {why}" if why else None


def save_gate_state(pool: Any, state: Mapping[str, Any]) -> None:
    """``runtime_state`` row ``reconciliation``: the gate and the last check, for the
    dashboard (``GET /api/reconciliation/status``)."""
    with transaction(pool) as conn:
        conn.execute(
            "INSERT INTO runtime_state (key, value, updated_at) VALUES ('reconciliation', %s,"
            " now()) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            (Jsonb(dict(state)),))


__all__ = ["ADOPTED", "ADOPTION", "FLAT_REMOVAL", "HEALED", "STARTUP", "PartialHeal",
           "PinnedPool", "StartupGate", "adopted_tag", "adoption_fill", "adoption_legs", "audit",
           "gate_of", "is_nifty_fno", "next_part_tag", "partial_heals", "record_close_audited",
           "record_open_audited", "record_partial_heal", "save_gate_state", "split_partial",
           "startup_block"]
