"""The margin of an entry from Dhan's multi-order margin calculator (live stage).

``POST /margincalculator/multi`` prices the legs of a basket *together*, so a hedged
structure (a condor's wings, a calendar's far legs) gets its hedge benefit; summing the
single-order calculator leg by leg would price an iron condor as two naked shorts. The
RiskActor asks this service before a live entry and falls back to the documented
approximation (``engine.risk.margin``) with a log line when the call fails.

Wire facts (reference dhan-api.md §3, §12.8): the request's field names are disputed; the
client's ``style="sdk"`` (``scripList``) is what the official SDK sends and what a third
party measured working live. ``includePosition``/``includeOrders`` are sent false: this is
the margin of the new basket alone (the engine adds its open positions itself). The answer
is read in either spelling — camelCase numbers (``totalMargin``, ``spanMargin``,
``exposureMargin`` or ``exposure``, ``hedgeBenefit``; seen live by a third party and
answered by the simulator) or the documented snake_case strings (``total_margin``, ...).
Dhan's figure is *today's* margin: the expiry-day jump is added by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.broker.dhan.errors import DhanError
from engine.messages.legs import Leg

__all__ = ["DhanMarginCalculator", "LiveMargin", "parse_multi_margin"]

_KEYS = {"total": ("totalMargin", "total_margin"),
         "span": ("spanMargin", "span_margin"),
         "exposure": ("exposureMargin", "exposure_margin", "exposure"),
         "hedge_benefit": ("hedgeBenefit", "hedge_benefit")}


@dataclass(frozen=True, slots=True)
class LiveMargin:
    """Dhan's answer for one basket (rupees; a component Dhan did not give is None)."""

    total: Decimal
    span: Decimal | None = None
    exposure: Decimal | None = None
    hedge_benefit: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: None if v is None else str(v) for k, v in
                (("total", self.total), ("span", self.span), ("exposure", self.exposure),
                 ("hedge_benefit", self.hedge_benefit))}


def _number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        return None
    return out if out.is_finite() else None


def parse_multi_margin(payload: Any) -> LiveMargin:
    """Dhan's multi-margin answer (either spelling, numbers or numeric strings, bare or in a
    ``data`` envelope).

    Raises:
        DhanError: no usable total margin in the answer.
    """
    body = payload if isinstance(payload, Mapping) else {}
    if isinstance(body.get("data"), Mapping):
        body = body["data"]
    found: dict[str, Decimal | None] = {}
    for name, keys in _KEYS.items():
        found[name] = next((v for v in (_number(body.get(k)) for k in keys) if v is not None),
                           None)
    total = found.pop("total")
    if total is None or total < 0:
        raise DhanError(f"margin calculator answer has no usable total margin: {payload!r}"[:300],
                        endpoint="POST /margincalculator/multi")
    return LiveMargin(total=total, **found)


class DhanMarginCalculator:
    """``basket(legs)``: the margin Dhan asks for the legs priced together.

    Args:
        client: a :class:`~engine.broker.dhan.client.DhanClient`.
        product_type: the product the entry will use (``DHAN_PRODUCT_TYPE``, MARGIN).
        exchange_segment: NIFTY derivatives are ``NSE_FNO``.
    """

    def __init__(self, client: Any, *, product_type: str = "MARGIN",
                 exchange_segment: str = "NSE_FNO") -> None:
        self._client = client
        self.product_type = product_type
        self.exchange_segment = exchange_segment

    def scripts(self, legs: Sequence[Leg]) -> list[dict[str, Any]]:
        """The request's scripts (every leg needs a price: Dhan prices the order at it)."""
        out = []
        for leg in legs:
            if leg.price is None or leg.price <= 0:
                raise ValueError(f"leg {leg.security_id}: the margin calculator needs its price")
            out.append({"exchangeSegment": self.exchange_segment,
                        "transactionType": leg.side.value, "quantity": int(leg.quantity),
                        "productType": self.product_type, "securityId": str(leg.security_id),
                        "price": float(leg.price), "triggerPrice": 0.0})
        return out

    def basket(self, legs: Sequence[Leg]) -> LiveMargin:
        """One ``POST /margincalculator/multi`` for all ``legs``.

        Raises:
            ValueError: a leg without a price.
            DhanError: the call failed or the answer has no total.
        """
        payload = self._client.margin_multi(self.scripts(legs), include_position=False,
                                            include_orders=False, style="sdk")
        return parse_multi_margin(payload)
