"""NIFTY contract terms the simulator publishes and enforces: lot size per contract from the
engine's :class:`NseCalendar` schedule, and the exchange freeze quantity that follows from it.

Freeze quantity, as Dhan's detailed master (``SM_FREEZE_QTY``) carries it, is NSE's
"quantity freeze": an order of that many units or more is refused, so the largest order is
``freeze - 1`` units. NIFTY's largest order was 1800 units through the 50, 25 and 75 lots
(24 lots of 75) and is 1755 units (27 lots of 65) with the 65 lot; a live master row of
2026-08-26 (reference dhan-api.md §9) shows ``LOT_SIZE 65.0`` with ``SM_FREEZE_QTY 1756``.
"""

from __future__ import annotations

from datetime import date

from engine.market.calendar import NseCalendar

NIFTY_MAX_ORDER_UNITS: dict[int, int] = {50: 1800, 25: 1800, 75: 1800, 65: 1755}
DEFAULT_MAX_ORDER_UNITS = 1800


def max_order_units(lot: int) -> int:
    """Largest NIFTY order (units, a whole number of lots) with lot size ``lot``."""
    units = NIFTY_MAX_ORDER_UNITS.get(int(lot), DEFAULT_MAX_ORDER_UNITS)
    return max(int(lot), units // int(lot) * int(lot))


def freeze_quantity(lot: int) -> int:
    """``SM_FREEZE_QTY`` of a NIFTY contract with lot size ``lot`` (largest order + 1)."""
    return max_order_units(lot) + 1


class ContractTerms:
    """Lot size and freeze quantity per (day, expiry), cached; ``NseCalendar()`` by default."""

    def __init__(self, calendar: NseCalendar | None = None) -> None:
        self.calendar = calendar or NseCalendar()
        self._lots: dict[tuple[date, date | None], int] = {}

    def lot(self, day: date, expiry: date | None) -> int:
        """Lot of the contract expiring ``expiry`` on trading day ``day`` (the lot of newly
        listed contracts when ``expiry`` is None)."""
        key = (day, expiry)
        lot = self._lots.get(key)
        if lot is None:
            lot = self._lots[key] = self.calendar.lot_size(day, expiry)
        return lot

    def freeze(self, day: date, expiry: date | None) -> int:
        """``SM_FREEZE_QTY`` of that contract."""
        return freeze_quantity(self.lot(day, expiry))
