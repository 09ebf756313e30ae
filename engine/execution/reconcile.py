"""Live-position reconciliation, pure: the engine's books against the broker's net positions.

The books: every open trade in mode ``live``, each leg signed (BUY +, SELL −) and summed per
security id. The broker: Dhan ``GET /positions`` ``netQty`` per security id (NSE_FNO).

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
  cannot say whose quantity went away). What ``CONFIRMED_FLAT_REMOVAL`` would act on; the
  caller decides (the engine only alerts, see ``RECON_AUTO_HEAL`` in the README).

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


@dataclass(frozen=True, slots=True)
class ReconState:
    """Memory between checks: sightings per security id, flat streaks per trade tag."""

    sightings: Mapping[str, Sighting] = field(default_factory=_frozen)
    flat: Mapping[str, int] = field(default_factory=_frozen)


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

    def details(self) -> dict[str, Any]:
        """The ``reconciliation_audit.details`` JSON."""
        out: dict[str, Any] = {"security_id": self.security_id, "expected": self.expected,
                               "broker": self.broker, "trade_tags": list(self.trade_tags),
                               "checks": self.checks}
        if self.flat_trades:
            out["flat_at_broker"] = list(self.flat_trades)
        return out

    def text(self) -> str:
        """One line for an operator."""
        if self.action == ORPHAN:
            return (f"broker holds {self.broker:+d} of security {self.security_id} that no live "
                    f"trade holds ({self.checks} checks): not adopted, close or book it by hand")
        what = "confirmed" if self.action == CONFIRMED else "pending"
        text = (f"{what} quantity mismatch on security {self.security_id}: books "
                f"{self.expected:+d} (trades {', '.join(self.trade_tags)}), broker "
                f"{self.broker:+d}")
        if self.flat_trades:
            text += (f"; trade(s) {', '.join(self.flat_trades)} flat at the broker on every leg "
                     "(closed outside the engine?)")
        return text


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The result of one check."""

    state: ReconState
    findings: tuple[Finding, ...]
    flat_candidates: tuple[str, ...]   # tags newly confirmed flat at the broker
    resolved: tuple[str, ...]          # security ids whose earlier finding cleared


def book_positions(trades: Iterable[Trade]) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
    """Net signed quantity per security id over the ``live`` trades, and which tags hold each.

    Returns:
        ``(expected, holders)``: ``expected[sid]`` the sum of signed leg quantities (it may be
        0 when trades offset each other), ``holders[sid]`` the tags with a leg on ``sid``.
    """
    expected: dict[str, int] = {}
    holders: dict[str, list[str]] = {}
    for trade in trades:
        if trade.mode != "live":
            continue
        for leg in trade.legs:
            sid = str(leg.leg.security_id)
            expected[sid] = expected.get(sid, 0) + sign(leg.leg.side) * int(leg.leg.quantity)
            tags = holders.setdefault(sid, [])
            if trade.tag not in tags:
                tags.append(trade.tag)
    return expected, {sid: tuple(tags) for sid, tags in holders.items()}


def _check_broker(broker: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for sid, qty in broker.items():
        if isinstance(qty, bool) or not isinstance(qty, int):
            raise TypeError(f"broker net quantity of security {sid!r} must be an int, "
                            f"got {qty!r}")
        out[str(sid)] = qty
    return out


def _flat_trades(trades: Iterable[Trade], broker: Mapping[str, int],
                 holders: Mapping[str, tuple[str, ...]]) -> set[str]:
    flat: set[str] = set()
    for trade in trades:
        if trade.mode != "live" or not trade.legs:
            continue
        sids = {str(leg.leg.security_id) for leg in trade.legs}
        if all(broker.get(sid, 0) == 0 and holders.get(sid) == (trade.tag,) for sid in sids):
            flat.add(trade.tag)
    return flat


def reconcile(trades: Iterable[Trade], broker: Mapping[str, int], state: ReconState
              ) -> Reconciliation:
    """One reconciliation check.

    Args:
        trades: the open trades (any mode; only ``live`` ones count).
        broker: the broker's net quantity per security id (missing means 0).
        state: the state returned by the previous check (``ReconState()`` at first).

    Returns:
        The new state and what is new since the previous check.

    Raises:
        TypeError: a broker quantity is not an int.
    """
    trades = list(trades)
    broker = _check_broker(broker)
    expected, holders = book_positions(trades)
    flat_now = _flat_trades(trades, broker, holders)
    flat_streak = {tag: state.flat.get(tag, 0) + 1 for tag in flat_now}
    sightings: dict[str, Sighting] = {}
    findings: list[Finding] = []
    resolved: list[str] = []
    for sid in sorted(set(holders) | {s for s, q in broker.items() if q != 0}):
        exp, brk = expected.get(sid, 0), broker.get(sid, 0)
        prev = state.sightings.get(sid)
        if sid in holders and exp == brk:
            if prev is not None:
                resolved.append(sid)
            continue
        kind = "mismatch" if sid in holders else "orphan"
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
            tags = holders.get(sid, ())
            findings.append(Finding(
                action=action, security_id=sid, expected=exp, broker=brk, trade_tags=tags,
                checks=count, flat_trades=tuple(t for t in tags if t in flat_now)))
            reported = action
        sightings[sid] = Sighting(kind, count, exp, brk, reported)
    resolved.extend(sid for sid in state.sightings if sid not in sightings and sid not in resolved)
    new_flat = tuple(sorted(t for t, n in flat_streak.items() if n == CONFIRM_AFTER))
    return Reconciliation(state=ReconState(_frozen(sightings), _frozen(flat_streak)),
                          findings=tuple(findings), flat_candidates=new_flat,
                          resolved=tuple(sorted(resolved)))


__all__ = ["CONFIRMED", "CONFIRM_AFTER", "ORPHAN", "PENDING", "RECON_EVERY_CYCLES", "Finding",
           "ReconState", "Reconciliation", "Sighting", "book_positions", "reconcile"]
