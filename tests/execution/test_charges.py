"""Paper charges against hand computations, to the paisa."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from engine.execution.charges import order_charges


def test_charges_option_buy_one_lot_2025() -> None:
    # BUY 75 NIFTY CE @ 120.50 on 2025-02-03: turnover 9037.50
    c = order_charges(kind="OPT", side="BUY", price=Decimal("120.50"), quantity=75, on=date(2025, 2, 3))
    assert c.brokerage == Decimal("20.00")
    assert c.exchange == Decimal("3.17")      # 9037.50 * 0.0003503 = 3.1658...
    assert c.sebi == Decimal("0.01")          # 9037.50 * 1e-6 = 0.009
    assert c.ipft == Decimal("0.05")          # 9037.50 * 5e-6 = 0.045 -> 0.05
    assert c.stt == Decimal("0")              # buy side pays no STT
    assert c.stamp == Decimal("0")            # 9037.50 * 3e-5 = 0.27 -> nearest rupee 0
    assert c.gst == Decimal("4.18")           # 0.18 * (20 + 3.17 + 0.01 + 0.05) = 4.1814
    assert c.total == Decimal("27.41")


def test_charges_option_sell_ten_lots_2025() -> None:
    # SELL 750 @ 200 on 2025-02-03: turnover 150000
    c = order_charges(kind="OPT", side="SELL", price=Decimal("200"), quantity=750, on=date(2025, 2, 3))
    assert c.exchange == Decimal("52.55")     # 150000 * 0.0003503 = 52.545 -> 52.55
    assert c.sebi == Decimal("0.15")
    assert c.ipft == Decimal("0.75")
    assert c.stt == Decimal("150")            # 0.1% of 150000
    assert c.stamp == Decimal("0")
    assert c.gst == Decimal("13.22")          # 0.18 * (20 + 52.55 + 0.15 + 0.75) = 13.221
    assert c.total == Decimal("236.67")


def test_charges_option_sell_after_april_2026_stt_rises() -> None:
    c = order_charges(kind="OPT", side="SELL", price=Decimal("200"), quantity=650, on=date(2026, 4, 1))
    assert c.stt == Decimal("195")            # 0.15% of 130000


def test_charges_future_buy_and_sell_2025() -> None:
    # NIFTY future 75 @ 23500.00: turnover 1,762,500
    buy = order_charges(kind="FUT", side="BUY", price=Decimal("23500"), quantity=75, on=date(2025, 2, 3))
    assert buy.brokerage == Decimal("20.00")  # min(20, 0.03% = 528.75)
    assert buy.exchange == Decimal("30.49")   # 1762500 * 0.0000173 = 30.49125
    assert buy.sebi == Decimal("1.76")        # 1.7625 -> 1.76
    assert buy.ipft == Decimal("1.76")
    assert buy.stamp == Decimal("35")         # 0.002% = 35.25 -> 35
    assert buy.gst == Decimal("9.72")         # 0.18 * (20 + 30.49 + 1.76 + 1.76) = 9.7218
    sell = order_charges(kind="FUT", side="SELL", price=Decimal("23500"), quantity=75, on=date(2025, 2, 3))
    assert sell.stt == Decimal("353")         # 0.02% = 352.5 -> 353 (half up)
    assert sell.stamp == Decimal("0")


def test_charges_pre_october_2024_exchange_rate() -> None:
    c = order_charges(kind="OPT", side="BUY", price=Decimal("100"), quantity=50, on=date(2024, 1, 1))
    assert c.exchange == Decimal("2.48")      # 5000 * 0.000495 = 2.475 -> 2.48


@pytest.mark.parametrize("kwargs", [
    {"kind": "EQ", "side": "BUY", "price": Decimal(1), "quantity": 1},
    {"kind": "OPT", "side": "HOLD", "price": Decimal(1), "quantity": 1},
    {"kind": "OPT", "side": "BUY", "price": Decimal(1), "quantity": 0},
])
def test_charges_bad_input_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        order_charges(on=date(2025, 1, 1), **kwargs)


def test_charges_date_before_any_rate_refused() -> None:
    with pytest.raises(ValueError, match="no charge rate"):
        order_charges(kind="OPT", side="BUY", price=Decimal(1), quantity=1, on=date(2010, 1, 1))


def test_exercise_stt_on_intrinsic_value_dated() -> None:
    from engine.execution.charges import exercise_charges

    # a long 23000 CE settled at 23100 on 2025-02-06: intrinsic 100 x 75 = 7,500; 0.125 %
    before = exercise_charges(intrinsic=Decimal("100"), quantity=75, on=date(2025, 2, 6))
    assert before.stt == Decimal("9") and before.total == Decimal("9")   # 9.375 -> 9
    after = exercise_charges(intrinsic=Decimal("100"), quantity=65, on=date(2026, 4, 7))
    assert after.stt == Decimal("10")                                    # 9.75 -> 10
    assert exercise_charges(intrinsic=Decimal("0"), quantity=75, on=date(2025, 2, 6)).total == 0
    with pytest.raises(ValueError, match="intrinsic"):
        exercise_charges(intrinsic=Decimal("-1"), quantity=75, on=date(2025, 2, 6))
