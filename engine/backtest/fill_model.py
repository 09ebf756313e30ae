"""How an end-of-day backtest fills an order: the documented fill model (``BT_FILL_MODEL``).

Bhavcopy has **no quotes**: no bid, no ask, no sizes — only each contract's day OHLC, the
close (``ClsPric``: NSE's volume-weighted price of the last half hour when the contract
traded), the settlement price, volume and OI. So the spread is a *model*, stated here, and
the quotes a strategy sees on a bhavcopy day are ``close ∓ half_spread`` (bid, ask).

Models:

* ``close`` (default) — a decision taken on day d's close snapshot fills at day d's close
  ± the half-spread of that contract on that day: a buy at ``close + h``, a sell at
  ``close − h``. No look-ahead: the decision used only that snapshot, and the fill is the
  price the strategy itself saw (its debit/credit is the fill). A contract that did not
  trade on d (volume 0) has no usable close and is **never filled**.
* ``next_close`` — a sensitivity check: the same decision fills at day d+1's close ± d+1's
  half-spread (one session of delay); an entry whose contract did not trade on d+1 is not
  filled, an exit waits for the next session its legs trade.

Never the next day's open: ``OpnPric`` is each contract's first print at a different time,
0 when untraded, and it shifts DTE by one.

Half-spread (rupees per unit), rounded *up* to the ₹0.05 tick, at least one tick::

    h = max(0.05, close × REL_BY_RANK[rank] × VOLUME_MULT[volume bucket] × MONEY_MULT[moneyness])

* ``rank`` — 0 for the nearest live expiry, 1 for the next, 2 for any later one;
* volume bucket (contracts traded that day) — ≥ 100 000, 10 000–99 999, 1 000–9 999, < 1 000;
* moneyness — |ln(K / spot)| ≤ 1 %, ≤ 3 %, beyond.

How the constants were set (and what the files can and cannot say): the files cannot
measure a spread. What they do measure is *where liquidity sits*, and that fixes the
shape: over the 19 Feb-2025 UDiFF days (NIFTY options with volume > 0), the near ATM
(±1 %) contracts traded ≥ 100 000 contracts on 286 of 344 contract-days, the next weekly's
on 24 of 344, later expiries' on 4 of 1 353 (most of them < 1 000 contracts: 919 of 1 353):
volume falls by one to two orders of magnitude per expiry rank, so the spread grows with
rank and with falling volume. The levels are anchored on typical NIFTY quotes (near ATM
weekly ≈ ₹0.05–0.20 wide on ₹100–200, i.e. a relative half-spread ≈ 0.05 %; the next
weekly ≈ 2×, a monthly ≈ 4× that), which is what ``REL_BY_RANK`` states. As an upper-bound
check from the files: the median |LastPric − ClsPric| of a liquid near-ATM contract is
₹5.90 (5.5 %) — that is half an hour of price drift, not spread, so the proxy is only
used to say the model is not *wider* than the data allows. Replace the constants when the
engine's own recorded quotes (``iv_snapshots``) cover the same contracts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

__all__ = ["FILL_MODELS", "MONEY_MULT", "REL_BY_RANK", "TICK", "VOLUME_MULT", "FillModelError",
           "Touch", "check_fill_model", "half_spread", "touch"]

FILL_MODELS = ("close", "next_close")
TICK = Decimal("0.05")
#: relative half-spread of a liquid ATM contract by expiry rank (0 = nearest)
REL_BY_RANK: tuple[Decimal, ...] = (Decimal("0.0005"), Decimal("0.0010"), Decimal("0.0020"))
#: (minimum contracts traded, multiplier), first match wins
VOLUME_MULT: tuple[tuple[int, Decimal], ...] = (
    (100_000, Decimal("1")), (10_000, Decimal("1.5")), (1_000, Decimal("2.5")), (0, Decimal("4")))
#: (largest |ln(K/spot)|, multiplier), first match wins; beyond the last: the last
MONEY_MULT: tuple[tuple[float, Decimal], ...] = (
    (0.01, Decimal("1")), (0.03, Decimal("1.25")), (math.inf, Decimal("1.5")))
#: futures: a liquid contract ≈ ₹0.5 wide at 23 000 (relative half-spread 0.001 %)
FUT_REL = Decimal("0.00001")


class FillModelError(ValueError):
    """An unknown fill model (the message lists the valid ones)."""


def check_fill_model(name: str) -> str:
    if name not in FILL_MODELS:
        raise FillModelError(f"unknown fill model {name!r}: expected one of {', '.join(FILL_MODELS)}")
    return name


def _tick_up(x: Decimal) -> Decimal:
    return max(TICK, (x / TICK).to_integral_value(rounding=ROUND_CEILING) * TICK)


def half_spread(close: Decimal, *, rank: int, volume: int, moneyness: float,
                kind: str = "OPT") -> Decimal:
    """The modelled half-spread (₹ per unit) of a contract at its day's close."""
    close = Decimal(close)
    if kind == "FUT":
        return _tick_up(close * FUT_REL)
    rel = REL_BY_RANK[min(max(rank, 0), len(REL_BY_RANK) - 1)]
    vm = next(m for floor, m in VOLUME_MULT if volume >= floor)
    mm = next((m for edge, m in MONEY_MULT if abs(moneyness) <= edge), MONEY_MULT[-1][1])
    return _tick_up(close * rel * vm * mm)


@dataclass(frozen=True, slots=True)
class Touch:
    """The modelled quote of a traded contract: bid = close − h, ask = close + h."""

    bid: Decimal
    ask: Decimal
    half: Decimal


def touch(close: Decimal, half: Decimal) -> Touch:
    """Bid/ask around the close (the bid never below one tick)."""
    close = Decimal(close).quantize(Decimal("0.01"))
    return Touch(bid=max(TICK, close - half), ask=close + half, half=half)
