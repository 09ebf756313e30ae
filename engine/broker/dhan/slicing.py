"""Orders above the exchange freeze quantity: how large one order may be, and the slices.

NSE refuses a single order at or above a contract's *freeze quantity* (Dhan's detailed
master column ``SM_FREEZE_QTY``, e.g. 1756 for NIFTY with the 65 lot). The largest order is
therefore the largest whole number of lots strictly below it; a larger quantity is sent as
several orders of that size (the last one takes the rest). Reading the column this way is
also safe if Dhan ever publishes the largest allowed order there instead: the slice is then
at most one lot smaller than it could be, never refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date

from engine.broker.dhan.instruments import InstrumentMaster, InstrumentNotFound

logger = logging.getLogger(__name__)

__all__ = ["MasterOrderLimits", "max_order_quantity", "slice_quantities"]


def max_order_quantity(lot: int, freeze_qty: int | None) -> int | None:
    """Largest single order: whole lots strictly below ``freeze_qty`` (``None``: unknown)."""
    if not freeze_qty or freeze_qty <= 0 or lot <= 0:
        return None
    return max(lot, (freeze_qty - 1) // lot * lot)


def slice_quantities(quantity: int, max_qty: int | None) -> list[int]:
    """``quantity`` as orders of at most ``max_qty`` (one order when ``max_qty`` is None)."""
    if quantity <= 0:
        raise ValueError(f"quantity must be positive, got {quantity}")
    if max_qty is None or quantity <= max_qty:
        return [quantity]
    full, rest = divmod(quantity, max_qty)
    return [max_qty] * full + ([rest] if rest else [])


class MasterOrderLimits:
    """``limits(security_id, trade_date) -> largest order or None`` from the instrument master.

    The master is loaded once per trading day (``loader(trade_date)``, e.g. a download of
    ``DHAN_INSTRUMENTS_URL``). When it cannot be loaded, or has no freeze column (the compact
    master), or does not list the security, the answer is ``None`` (orders are not sliced;
    Dhan refuses one above the freeze and the entry is refused); a failed load is retried
    after ``retry_after_s``.
    """

    def __init__(self, loader: Callable[[date], InstrumentMaster], *,
                 retry_after_s: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._loader, self._retry_after, self._mono = loader, retry_after_s, monotonic
        self._lock = threading.Lock()
        self._master: tuple[date, InstrumentMaster] | None = None
        self._failed_at: float | None = None

    def _master_for(self, trade_date: date) -> InstrumentMaster | None:
        with self._lock:
            if self._master is not None and self._master[0] == trade_date:
                return self._master[1]
            if self._failed_at is not None and self._mono() - self._failed_at < self._retry_after:
                return None
            try:
                master = self._loader(trade_date)
            except Exception as exc:  # any download/parse failure: no slicing, retried later
                self._failed_at = self._mono()
                logger.warning("instrument master not loaded (%s): orders above the freeze "
                               "quantity will not be sliced", exc)
                return None
            self._master, self._failed_at = (trade_date, master), None
            return master

    def __call__(self, security_id: str, trade_date: date) -> int | None:
        master = self._master_for(trade_date)
        if master is None:
            return None
        try:
            row = master.by_security_id(security_id)
        except InstrumentNotFound:
            return None
        return max_order_quantity(row.lot_size, row.freeze_qty)
