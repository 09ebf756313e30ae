"""The documented fill model: half-spread by expiry rank, moneyness and volume."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.backtest.fill_model import FillModelError, check_fill_model, half_spread, touch


def test_half_spread_by_hand() -> None:
    # near (rank 0) ATM, 1.5 M contracts: 134.85 × 0.0005 = 0.0674 -> one tick up: 0.10
    assert half_spread(Decimal("134.85"), rank=0, volume=1_514_050, moneyness=0.0) == Decimal("0.10")
    # next weekly, 10 192 contracts (×1.5), ATM: 194.40 × 0.001 × 1.5 = 0.2916 -> 0.30
    assert half_spread(Decimal("194.40"), rank=1, volume=10_192, moneyness=0.0) == Decimal("0.30")
    # a later expiry, 500 contracts (×4), 2 % OTM (×1.25): 223.50 × 0.002 × 4 × 1.25 = 2.235 -> 2.25
    assert half_spread(Decimal("223.50"), rank=3, volume=500, moneyness=0.02) == Decimal("2.25")
    # a ₹1 far-OTM option: never below one tick
    assert half_spread(Decimal("1.00"), rank=0, volume=900_000, moneyness=-0.05) == Decimal("0.05")
    # thinner and farther only widen it
    base = half_spread(Decimal("200"), rank=0, volume=200_000, moneyness=0.0)
    assert half_spread(Decimal("200"), rank=1, volume=200_000, moneyness=0.0) > base
    assert half_spread(Decimal("200"), rank=0, volume=5_000, moneyness=0.0) > base


def test_touch_and_model_names() -> None:
    q = touch(Decimal("96.85"), Decimal("0.05"))
    assert (q.bid, q.ask) == (Decimal("96.80"), Decimal("96.90"))
    assert touch(Decimal("0.05"), Decimal("0.05")).bid == Decimal("0.05")  # bid ≥ one tick
    assert check_fill_model("next_close") == "next_close"
    with pytest.raises(FillModelError, match="expected one of close, next_close"):
        check_fill_model("next_open")
