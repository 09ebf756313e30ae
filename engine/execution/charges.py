"""Indian F&O charges for NSE index derivatives, as dated rates (reference: nse-data.md §4).

Per executed order (one leg fill) on turnover = price × quantity:

* brokerage: Dhan ₹20 flat per executed order for options; futures ₹20 or 0.03% (lower);
* exchange transaction charge (both sides): options 0.03503% from 2024-10-01 (0.0495% before);
  futures 0.00173% from 2024-10-01 (0.002% before) — the futures rate is NSE's published
  revision, not in the reference table;
* SEBI turnover fee: ₹10 per crore (0.0001%), both sides;
* IPFT: ₹50 per crore options, ₹10 per crore futures, both sides (GST applied, as Dhan does);
* STT, sell side only: options 0.0625% (2023-04-01), 0.1% (2024-10-01), 0.15% (2026-04-01);
  futures 0.0125% → 0.02% (2024-10-01) → 0.05% (2026-04-01);
* stamp duty, buy side only: options 0.003%, futures 0.002%;
* GST 18% on brokerage + exchange charge + SEBI fee + IPFT.

Rounding follows Dhan's contract note: STT and stamp duty to the nearest rupee, every other
charge to the paisa (ROUND_HALF_UP).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

PAISA = Decimal("0.01")
RUPEE = Decimal("1")
CRORE = Decimal("10000000")


def _dated(table: tuple[tuple[date, Decimal], ...], on: date) -> Decimal:
    """The rate in force on ``on`` from (effective_from, rate) rows sorted by date."""
    rate = None
    for start, value in table:
        if on >= start:
            rate = value
    if rate is None:
        raise ValueError(f"no charge rate known for {on.isoformat()} (earliest {table[0][0]})")
    return rate


PCT = Decimal("0.01")
_OPT_STT = ((date(2016, 6, 1), Decimal("0.05") * PCT), (date(2023, 4, 1), Decimal("0.0625") * PCT),
            (date(2024, 10, 1), Decimal("0.1") * PCT), (date(2026, 4, 1), Decimal("0.15") * PCT))
_FUT_STT = ((date(2016, 6, 1), Decimal("0.01") * PCT), (date(2023, 4, 1), Decimal("0.0125") * PCT),
            (date(2024, 10, 1), Decimal("0.02") * PCT), (date(2026, 4, 1), Decimal("0.05") * PCT))
# STT on an ITM long option exercised at expiry, on its settlement (intrinsic) value
_EXERCISE_STT = ((date(2016, 6, 1), Decimal("0.125") * PCT), (date(2026, 4, 1), Decimal("0.15") * PCT))
_OPT_TXN = ((date(2016, 1, 1), Decimal("0.0495") * PCT), (date(2024, 10, 1), Decimal("0.03503") * PCT))
_FUT_TXN = ((date(2016, 1, 1), Decimal("0.002") * PCT), (date(2024, 10, 1), Decimal("0.00173") * PCT))
_OPT_STAMP = ((date(2020, 7, 1), Decimal("0.003") * PCT),)
_FUT_STAMP = ((date(2020, 7, 1), Decimal("0.002") * PCT),)
SEBI_FEE = Decimal("10") / CRORE
IPFT_OPT = Decimal("50") / CRORE
IPFT_FUT = Decimal("10") / CRORE
GST = Decimal("0.18")
BROKERAGE_FLAT = Decimal("20")
BROKERAGE_FUT_PCT = Decimal("0.03") * PCT


@dataclass(frozen=True, slots=True)
class Charges:
    """Charges of one executed order, each rounded as on the contract note."""

    brokerage: Decimal
    exchange: Decimal
    sebi: Decimal
    ipft: Decimal
    stt: Decimal
    stamp: Decimal
    gst: Decimal

    @property
    def total(self) -> Decimal:
        return (self.brokerage + self.exchange + self.sebi + self.ipft + self.stt + self.stamp
                + self.gst)

    def as_dict(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in
                ("brokerage", "exchange", "sebi", "ipft", "stt", "stamp", "gst", "total")}


ZERO_CHARGES = Charges(*(Decimal("0"),) * 7)


def sum_charges(charges: Iterable[Charges]) -> Charges:
    """The charges of several orders (each already rounded as on its contract note)."""
    items = list(charges)
    return Charges(**{name: sum((getattr(c, name) for c in items), Decimal(0)) for name in
                      ("brokerage", "exchange", "sebi", "ipft", "stt", "stamp", "gst")})


def order_charges(*, kind: str, side: str, price: Decimal, quantity: int, on: date) -> Charges:
    """Charges for one fill. ``kind`` is OPT or FUT, ``side`` BUY or SELL, ``on`` the trade date."""
    if kind not in ("OPT", "FUT"):
        raise ValueError(f"kind={kind!r}: expected OPT or FUT")
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side={side!r}: expected BUY or SELL")
    if quantity <= 0 or price < 0:
        raise ValueError(f"quantity={quantity}, price={price}: quantity must be > 0, price >= 0")
    turnover = Decimal(price) * quantity
    option = kind == "OPT"
    brokerage = BROKERAGE_FLAT if option else min(BROKERAGE_FLAT, turnover * BROKERAGE_FUT_PCT)
    exchange = turnover * _dated(_OPT_TXN if option else _FUT_TXN, on)
    sebi = turnover * SEBI_FEE
    ipft = turnover * (IPFT_OPT if option else IPFT_FUT)
    stt = turnover * _dated(_OPT_STT if option else _FUT_STT, on) if side == "SELL" else Decimal(0)
    stamp = turnover * _dated(_OPT_STAMP if option else _FUT_STAMP, on) if side == "BUY" else Decimal(0)
    brokerage, exchange, sebi, ipft = (x.quantize(PAISA, ROUND_HALF_UP)
                                       for x in (brokerage, exchange, sebi, ipft))
    gst = ((brokerage + exchange + sebi + ipft) * GST).quantize(PAISA, ROUND_HALF_UP)
    return Charges(
        brokerage=brokerage, exchange=exchange, sebi=sebi, ipft=ipft,
        stt=stt.quantize(RUPEE, ROUND_HALF_UP), stamp=stamp.quantize(RUPEE, ROUND_HALF_UP), gst=gst)


def exercise_charges(*, intrinsic: Decimal, quantity: int, on: date) -> Charges:
    """Charges of a long option exercised in the money at expiry (``on`` = the expiry).

    NSE settles it at its intrinsic value; the buyer pays STT on that settlement value
    (0.125 %, 0.15 % from 2026-04-01; nse-data.md §4), rounded to the rupee. No brokerage
    (no order), no exchange charge or stamp duty on the exercise itself. An OTM option
    (``intrinsic`` 0) or a short one expires with no extra charge.
    """
    if quantity <= 0 or intrinsic < 0:
        raise ValueError(f"quantity={quantity}, intrinsic={intrinsic}: quantity must be > 0, "
                         "intrinsic >= 0")
    zero = Decimal("0.00")
    stt = (Decimal(intrinsic) * quantity * _dated(_EXERCISE_STT, on)).quantize(RUPEE, ROUND_HALF_UP)
    return Charges(brokerage=zero, exchange=zero, sebi=zero, ipft=zero, stt=stt, stamp=Decimal(0),
                   gst=zero)
