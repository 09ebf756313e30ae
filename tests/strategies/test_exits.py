"""Monitor exit rules."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from engine.execution.paper import Quote
from engine.execution.trades import OpenLeg, Trade
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.settings import all_knobs
from engine.strategies.exits import exit_reason, margin_proxy, mark_to_market
from engine.timeutil import IST

PARAMS = {k.key: k.default for k in all_knobs()}
T0 = datetime(2025, 2, 3, 10, 0, tzinfo=IST)
TRADE = Trade(tag="CAL_ARB-1", strategy="CAL_ARB", mode="paper", trade_date=T0.date(), opened_at=T0, legs=(
    OpenLeg(Leg(security_id="F", side=Side.SELL, quantity=75, kind=InstrumentKind.FUT,
                expiry=date(2025, 2, 27)), Decimal("23630"), Decimal("20")),
    OpenLeg(Leg(security_id="N", side=Side.BUY, quantity=75, kind=InstrumentKind.FUT,
                expiry=date(2025, 2, 6)), Decimal("23500"), Decimal("20"))))


def _quotes(far: str, near: str):
    table = {"F": Decimal(far), "N": Decimal(near)}
    return lambda sid: Quote(table[sid] - Decimal("0.5"), table[sid] + Decimal("0.5"), table[sid])


def test_mtm_closes_at_touch_after_entry_charges() -> None:
    # far bought back at 23620.5 (+9.5*75), near sold at 23499.5 (-0.5*75), minus 40 charges
    assert mark_to_market(TRADE, _quotes("23620", "23500")) == Decimal("635.00")


def test_exit_profit_target_and_stop() -> None:
    proxy = margin_proxy(TRADE)  # 130 * 75 = 9750
    assert proxy == Decimal("9750")
    assert exit_reason(TRADE, Decimal("2925"), T0, PARAMS).startswith("profit target")
    assert exit_reason(TRADE, Decimal("-4875"), T0, PARAMS).startswith("stop loss")
    assert exit_reason(TRADE, Decimal("100"), T0, PARAMS) is None


def test_exit_time_and_expiry_day() -> None:
    later = datetime(2025, 2, 3, 14, 0, tzinfo=IST)
    assert exit_reason(TRADE, Decimal("0"), later, PARAMS) == "time exit after 240 minutes"
    expiry_day = datetime(2025, 2, 6, 15, 1, tzinfo=IST)
    assert exit_reason(TRADE, Decimal("0"), expiry_day, PARAMS) == "expiry-day exit at 15:00"


def test_exit_after_missed_expiry_day() -> None:
    day_after = datetime(2025, 2, 7, 9, 20, tzinfo=IST)
    assert exit_reason(TRADE, Decimal("0"), day_after, PARAMS).startswith("past expiry")
