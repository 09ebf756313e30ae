"""Checks a live entry passes *before any of its orders leaves* (the live broker calls
:meth:`LivePreflight.check_entry` first; a refusal sends nothing).

1. **Live-entry gate.** Problems that make live orders pointless or dangerous pause live
   entries (not paper ones) until they are cleared: the static-IP preflight
   (:mod:`engine.broker.dhan.ip_check`) and a DH-911 answered to any order. Each problem is
   alerted once when it starts and once when it clears; exits are never gated.
2. **Margin.** Dhan's multi-order margin calculator prices the whole structure at once (the
   hedge benefit of wings and far legs included), the expiry-day margin the RiskActor
   recorded for a position that will still be open on its jump day is added, and the sum
   must fit in the available funds (``GET /fundlimit``) times ``LIVE_MAX_MARGIN_UTIL``. The
   figures are in the refusal reason. When the calculator or the funds cannot be read
   (429, timeout, 5xx, a bad answer), the entry is refused with that reason: an entry is
   never sent without its margin known.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from engine.messages.legs import Leg

logger = logging.getLogger(__name__)

__all__ = ["LiveGate", "LivePreflight", "PreflightRefused"]

_CENT = Decimal("0.01")


class PreflightRefused(Exception):
    """A live entry must not be sent; the message says why (with the figures)."""


class LiveGate:
    """Named reasons that pause live entries (``ip`` for the static-IP problem, ...).

    Args:
        alert: ``alert(text)``: tells the operator (called once per start / clear).
    """

    def __init__(self, alert: Callable[[str], None] | None = None) -> None:
        self._alert = alert or (lambda text: None)
        self._lock = threading.Lock()
        self._blocked: dict[str, str] = {}

    def block(self, kind: str, reason: str) -> bool:
        """Pause live entries for ``kind``; True (and one alert) when it was not paused yet."""
        with self._lock:
            new = kind not in self._blocked
            self._blocked[kind] = reason
        if new:
            logger.critical("live entries paused (%s): %s", kind, reason)
            self._alert(f"LIVE ENTRIES PAUSED ({kind}): {reason}")
        return new

    def clear(self, kind: str, why: str) -> bool:
        """Lift ``kind``; True (and one alert) when it was set."""
        with self._lock:
            was = self._blocked.pop(kind, None)
        if was is not None:
            logger.warning("live entries resumed (%s cleared): %s", kind, why)
            self._alert(f"live entries resumed: {kind} cleared ({why})")
        return was is not None

    def reason(self) -> str | None:
        """Why live entries are paused (every kind), or None."""
        with self._lock:
            if not self._blocked:
                return None
            return "; ".join(f"{k}: {v}" for k, v in sorted(self._blocked.items()))

    def blocked(self, kind: str) -> bool:
        with self._lock:
            return kind in self._blocked


def expiry_day_extra(context: Mapping[str, Any] | None) -> tuple[Decimal, str | None]:
    """The expiry-day margin the RiskActor recorded for the entry (``params["margin"]``):
    ``(extra, jump_day)`` when the position is held into its jump day, else ``(0, None)``."""
    record = ((context or {}).get("params") or {}).get("margin") or {}
    if not record.get("held_into_jump"):
        return Decimal(0), None
    approx = record.get("approximation") or {}
    try:
        extra = Decimal(str(approx.get("expiry_day_extra") or "0"))
    except ArithmeticError:
        return Decimal(0), None
    return max(extra, Decimal(0)), approx.get("jump_day")


class LivePreflight:
    """The checks of the module docstring.

    Args:
        calculator: ``basket(legs) -> LiveMargin`` (``DhanMarginCalculator``); None: no margin
            check (refused: a live entry needs one).
        funds: ``() -> FundLimits`` (``DhanClient.fund_limits``).
        max_util: ``() -> Decimal``: the share of the available funds an entry may use
            (the setting ``LIVE_MAX_MARGIN_UTIL``).
        gate: the live-entry gate.
    """

    def __init__(self, *, calculator: Any, funds: Callable[[], Any],
                 max_util: Callable[[], Decimal], gate: LiveGate | None = None) -> None:
        self._calculator, self._funds, self._max_util = calculator, funds, max_util
        self.gate = gate or LiveGate()

    def check_entry(self, legs: Sequence[Leg], prices: Sequence[Decimal],
                    context: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Refuse (:class:`PreflightRefused`) or return the figures checked (kept with the
        entry's intents).

        Args:
            legs: the entry's legs.
            prices: the limit price each leg will be sent at (the margin is priced there).
            context: the entry's context (``params["margin"]``: the RiskActor's record).
        """
        paused = self.gate.reason()
        if paused:
            raise PreflightRefused(f"live entries paused: {paused}")
        if self._calculator is None:
            raise PreflightRefused("no margin calculator configured: live entry not sent")
        priced = [_with_price(leg, px) for leg, px in zip(legs, prices, strict=True)]
        try:
            live = self._calculator.basket(priced)
        except Exception as exc:  # 429, timeout, 5xx, a bad answer: never sent blind
            raise PreflightRefused(f"margin preflight failed: Dhan's margin calculator did not "
                                   f"answer ({_short(exc)}): entry not sent") from exc
        try:
            available = Decimal(self._funds().available_balance)
        except Exception as exc:
            raise PreflightRefused(f"margin preflight failed: available funds not read "
                                   f"({_short(exc)}): entry not sent") from exc
        util = Decimal(self._max_util())
        extra, jump = expiry_day_extra(context)
        need = (live.total + extra).quantize(_CENT)
        cap = (available * util).quantize(_CENT)
        figures = {"dhan_margin": str(live.total), "expiry_day_extra": str(extra),
                   "required": str(need), "available": str(available), "max_util": str(util),
                   "cap": str(cap)}
        if live.hedge_benefit is not None:
            figures["hedge_benefit"] = str(live.hedge_benefit)
        if need > cap:
            parts = [f"Dhan margin ₹{live.total} for the whole structure"]
            if live.hedge_benefit is not None:
                parts[0] += f" (hedge benefit ₹{live.hedge_benefit})"
            if extra > 0:
                parts.append(f"expiry-day margin ₹{extra} (held into {jump})")
            raise PreflightRefused(
                f"margin preflight: {' + '.join(parts)} = ₹{need} exceeds available funds "
                f"₹{available} × LIVE_MAX_MARGIN_UTIL {util} = ₹{cap}: entry not sent")
        logger.info("margin preflight passed: ₹%s of ₹%s allowed", need, cap)
        return figures


def _with_price(leg: Leg, price: Decimal) -> Leg:
    return replace(leg, price=Decimal(price))


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:240]
