"""Live-position reconciliation, pure: the engine's books against the broker's net positions.

The key is the **security and the product** (``MARGIN`` carry-forward, ``INTRADAY``, ...):
Dhan keeps one position per (security, product), and an INTRADAY position is squared off at
15:20 while a MARGIN one is not. The books: every open trade in mode ``live`` — all of them
(two strategies can hold the same contract) — each leg signed (BUY +, SELL −) and summed per
(security, product); a trade's product comes from its order intents (``products``, default
``MARGIN``). The broker: Dhan ``GET /positions`` ``netQty`` per (security, product) (NSE_FNO);
a plain security id key means the default product. A position the books do not explain is
flagged whichever side it is on.

Findings (their names are the ``reconciliation_audit.action`` values):

* ``PENDING_QTY_MISMATCH`` — a security the books hold whose broker quantity differs, seen
  for the first time. An order in flight explains one sighting (the executor records a fill
  only after the broker reports it), so nothing is alerted yet.
* ``CONFIRMED_QTY_MISMATCH`` — the same security still disagrees on the next check (again
  whenever the quantities change while it stays confirmed).
* ``ORPHAN_ALERT`` — the broker holds a security no live trade holds, seen on two consecutive
  checks. The first sighting is kept silently in the state: an entry in flight (legs filled
  at the broker, the trade not yet recorded) shows exactly that for one check, and the
  schema has no "pending orphan" action. Orphans are never adopted.
* flat candidates — a live trade whose every leg is flat at the broker on two consecutive
  checks, and which alone holds each of its securities in the books (otherwise the netting
  cannot say whose quantity went away). What ``CONFIRMED_FLAT_REMOVAL`` acts on: the
  engine books such a trade closed when the broker's trade book or an expiry settlement
  explains it, and holds it otherwise (``engine.execution.broker_closes``).

Surplus positions (on a confirmed mismatch only — two checks):

* **surplus short** — the broker is shorter than the books: ``max(0, −broker) − max(0,
  −books) > 0``. When no order intent touching the security is unsettled (``busy``), a
  :class:`BuyBack` of that quantity is decided, once per (books, broker) pair: the caller
  buys it back at the market (an unhedged short must not stay open) and says so.
* **surplus long** — the broker is longer than the books: ``max(0, broker) − max(0, books)
  > 0``: a :class:`Surplus` to alert, once per pair, and to leave to the operator.

A finding that goes away (quantities agree again) is cleared from the state and reported in
``resolved``; if it comes back it starts again as pending. Each finding is reported once, not
on every check while it stays unchanged. The state is a small immutable value passed in and
returned, so the whole thing is a function of its inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from engine.execution.trades import Trade, sign
from engine.settings.registry import knob

DEFAULT_PRODUCT = "MARGIN"
PENDING = "PENDING_QTY_MISMATCH"
CONFIRMED = "CONFIRMED_QTY_MISMATCH"
ORPHAN = "ORPHAN_ALERT"
CONFIRM_AFTER = 2  # consecutive checks

RECON_EVERY_CYCLES = knob("RECON_EVERY_CYCLES")  # registered with every other knob


def _frozen(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class Sighting:
    """What was last seen for one security: ``kind`` is ``"mismatch"`` or ``"orphan"``,
    ``count`` the consecutive checks it has been seen, ``reported`` the last action
    reported for it (``None`` while an orphan is still unreported)."""

    kind: str
    count: int
    expected: int
    broker: int
    reported: str | None


Key = tuple[str, str]  # (security id, product)


def key_text(key: Key) -> str:
    """``"<security id>:<product>"``: how a position key is kept in the state."""
    return f"{key[0]}:{key[1]}"


@dataclass(frozen=True, slots=True)
class ReconState:
    """Memory between checks: sightings per position (``key_text``), flat streaks per tag."""

    sightings: Mapping[str, Sighting] = field(default_factory=_frozen)
    flat: Mapping[str, int] = field(default_factory=_frozen)
    #: position (``key_text``) -> (books, broker) a surplus was last acted on / alerted at
    surplus: Mapping[str, tuple[int, int]] = field(default_factory=_frozen)


@dataclass(frozen=True, slots=True)
class Finding:
    """One new finding to audit (and, unless pending, to alert)."""

    action: str
    security_id: str
    expected: int
    broker: int
    trade_tags: tuple[str, ...]
    checks: int
    flat_trades: tuple[str, ...] = ()
    product: str = DEFAULT_PRODUCT

    def details(self) -> dict[str, Any]:
        """The ``reconciliation_audit.details`` JSON."""
        out: dict[str, Any] = {"security_id": self.security_id, "product": self.product,
                               "expected": self.expected, "broker": self.broker,
                               "trade_tags": list(self.trade_tags), "checks": self.checks}
        if self.flat_trades:
            out["flat_at_broker"] = list(self.flat_trades)
        return out

    def text(self) -> str:
        """One line for an operator."""
        if self.action == ORPHAN:
            side = "LONG" if self.broker > 0 else "SHORT"
            return (f"broker holds {self.broker:+d} ({side} {abs(self.broker)}) of security "
                    f"{self.security_id} ({self.product}) that no live trade holds "
                    f"({self.checks} checks): not adopted, close or book it by hand")
        what = "confirmed" if self.action == CONFIRMED else "pending"
        text = (f"{what} quantity mismatch on security {self.security_id} ({self.product}): books "
                f"{self.expected:+d} (trades {', '.join(self.trade_tags)}), broker "
                f"{self.broker:+d}")
        if self.flat_trades:
            text += (f"; trade(s) {', '.join(self.flat_trades)} flat at the broker on every leg "
                     "(closed outside the engine?)")
        return text


@dataclass(frozen=True, slots=True)
class Surplus:
    """Units the broker holds beyond the books on a confirmed mismatch: ``side`` ``SHORT``
    (a :class:`BuyBack` is decided) or ``LONG`` (alerted, left to the operator)."""

    side: str
    security_id: str
    product: str
    quantity: int
    expected: int
    broker: int
    trade_tags: tuple[str, ...]

    def text(self) -> str:
        """One line for an operator."""
        where = (f"security {self.security_id} ({self.product}): books {self.expected:+d} "
                 f"(trades {', '.join(self.trade_tags)}), broker {self.broker:+d}")
        if self.side == "SHORT":
            return (f"surplus SHORT {self.quantity} at the broker on {where}: buying it back "
                    "at the market")
        return (f"surplus LONG {self.quantity} at the broker on {where}: not traded "
                "automatically; sell it by hand or explain it")


BuyBack = Surplus  # a surplus short to buy back (``side == "SHORT"``)


def surplus_short(expected: int, broker: int) -> int:
    """Short units the broker holds beyond the books: ``max(0, max(0, −broker) −
    max(0, −expected))``."""
    return max(0, max(0, -broker) - max(0, -expected))


def surplus_long(expected: int, broker: int) -> int:
    """Long units the broker holds beyond the books: ``max(0, max(0, broker) −
    max(0, expected))``."""
    return max(0, max(0, broker) - max(0, expected))


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The result of one check."""

    state: ReconState
    findings: tuple[Finding, ...]
    flat_candidates: tuple[str, ...]   # tags newly confirmed flat at the broker
    resolved: tuple[str, ...]          # positions (``key_text``) whose earlier finding cleared
    buy_backs: tuple[Surplus, ...] = ()       # surplus shorts to buy back now
    surplus_longs: tuple[Surplus, ...] = ()   # surplus longs to alert now


def book_positions(trades: Iterable[Trade], products: Mapping[str, str] | None = None
                   ) -> tuple[dict[Key, int], dict[Key, tuple[str, ...]]]:
    """Net signed quantity per (security, product) over every ``live`` trade, and which tags
    hold each (``products``: tag -> product, default ``MARGIN``).

    Returns:
        ``(expected, holders)``: ``expected[key]`` the sum of signed leg quantities (it may be
        0 when trades offset each other), ``holders[key]`` the tags with a leg on ``key``.
    """
    products = products or {}
    expected: dict[Key, int] = {}
    holders: dict[Key, list[str]] = {}
    for trade in trades:
        if trade.mode != "live":
            continue
        product = products.get(trade.tag, DEFAULT_PRODUCT)
        for leg in trade.legs:
            key = (str(leg.leg.security_id), product)
            expected[key] = expected.get(key, 0) + sign(leg.leg.side) * int(leg.leg.quantity)
            tags = holders.setdefault(key, [])
            if trade.tag not in tags:
                tags.append(trade.tag)
    return expected, {key: tuple(tags) for key, tags in holders.items()}


def broker_net(broker: Mapping[Any, int]) -> dict[Key, int]:
    """The broker's net quantities keyed by (security, product) (a plain security id key is
    the default product); quantities of one key are summed.

    Raises:
        TypeError: a quantity is not an int.
    """
    return _check_broker(broker)


def _check_broker(broker: Mapping[Any, int]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for raw, qty in broker.items():
        if isinstance(qty, bool) or not isinstance(qty, int):
            raise TypeError(f"broker net quantity of security {raw!r} must be an int, "
                            f"got {qty!r}")
        key = (str(raw[0]), str(raw[1])) if isinstance(raw, tuple) else (str(raw),
                                                                          DEFAULT_PRODUCT)
        out[key] = out.get(key, 0) + qty
    return out


def _flat_trades(trades: Iterable[Trade], broker: Mapping[Key, int],
                 holders: Mapping[Key, tuple[str, ...]], products: Mapping[str, str]
                 ) -> set[str]:
    flat: set[str] = set()
    for trade in trades:
        if trade.mode != "live" or not trade.legs:
            continue
        product = products.get(trade.tag, DEFAULT_PRODUCT)
        keys = {(str(leg.leg.security_id), product) for leg in trade.legs}
        if all(broker.get(k, 0) == 0 and holders.get(k) == (trade.tag,) for k in keys):
            flat.add(trade.tag)
    return flat


def reconcile(trades: Iterable[Trade], broker: Mapping[Any, int], state: ReconState, *,
              products: Mapping[str, str] | None = None,
              busy: Iterable[str] = ()) -> Reconciliation:
    """One reconciliation check.

    Args:
        trades: the open trades (any mode; only ``live`` ones count).
        broker: the broker's net quantity per ``(security id, product)`` (or per security id
            for the default product); missing means 0.
        state: the state returned by the previous check (``ReconState()`` at first).
        products: trade tag -> product of its legs (default ``MARGIN``).
        busy: security ids with an order intent not settled yet: no buy-back is decided on
            them (the order may explain the difference).

    Returns:
        The new state and what is new since the previous check.

    Raises:
        TypeError: a broker quantity is not an int.
    """
    trades = list(trades)
    products = dict(products or {})
    broker = _check_broker(broker)
    expected, holders = book_positions(trades, products)
    flat_now = _flat_trades(trades, broker, holders, products)
    flat_streak = {tag: state.flat.get(tag, 0) + 1 for tag in flat_now}
    sightings: dict[str, Sighting] = {}
    findings: list[Finding] = []
    resolved: list[str] = []
    busy_ids = {str(b) for b in busy}
    surplus_seen: dict[str, tuple[int, int]] = {}
    buy_backs: list[Surplus] = []
    longs: list[Surplus] = []
    for key in sorted(set(holders) | {k for k, q in broker.items() if q != 0}):
        sid, product = key
        name = key_text(key)
        exp, brk = expected.get(key, 0), broker.get(key, 0)
        prev = state.sightings.get(name)
        if key in holders and exp == brk:
            if prev is not None:
                resolved.append(name)
            continue
        kind = "mismatch" if key in holders else "orphan"
        count = prev.count + 1 if prev is not None and prev.kind == kind else 1
        reported = prev.reported if prev is not None and prev.kind == kind else None
        changed = prev is None or (prev.expected, prev.broker) != (exp, brk)
        action: str | None = None
        if kind == "mismatch":
            if count == 1:
                action = PENDING
            elif reported != CONFIRMED or changed:
                action = CONFIRMED
        elif count >= CONFIRM_AFTER and (reported != ORPHAN or changed):
            action = ORPHAN
        if action is not None:
            tags = holders.get(key, ())
            findings.append(Finding(
                action=action, security_id=sid, expected=exp, broker=brk, trade_tags=tags,
                checks=count, flat_trades=tuple(t for t in tags if t in flat_now),
                product=product))
            reported = action
        sightings[name] = Sighting(kind, count, exp, brk, reported)
        if kind == "mismatch" and count >= CONFIRM_AFTER:
            tags = holders.get(key, ())
            done = state.surplus.get(name)
            short, long_ = surplus_short(exp, brk), surplus_long(exp, brk)
            if short > 0 and sid in busy_ids:
                if done is not None:
                    surplus_seen[name] = done
            elif short > 0 or long_ > 0:
                surplus_seen[name] = (exp, brk)
                if done != (exp, brk):
                    if short > 0:
                        buy_backs.append(Surplus("SHORT", sid, product, short, exp, brk, tags))
                    if long_ > 0:
                        longs.append(Surplus("LONG", sid, product, long_, exp, brk, tags))
    resolved.extend(sid for sid in state.sightings if sid not in sightings and sid not in resolved)
    new_flat = tuple(sorted(t for t, n in flat_streak.items() if n == CONFIRM_AFTER))
    return Reconciliation(state=ReconState(_frozen(sightings), _frozen(flat_streak),
                                           _frozen(surplus_seen)),
                          findings=tuple(findings), flat_candidates=new_flat,
                          resolved=tuple(sorted(resolved)), buy_backs=tuple(buy_backs),
                          surplus_longs=tuple(longs))


__all__ = ["CONFIRMED", "CONFIRM_AFTER", "DEFAULT_PRODUCT", "ORPHAN", "PENDING",
           "RECON_EVERY_CYCLES", "BuyBack", "Finding", "Key", "ReconState", "Reconciliation",
           "Sighting", "Surplus", "book_positions", "broker_net", "key_text", "reconcile",
           "surplus_long", "surplus_short"]
