"""The backtest applies the RiskActor's margin refusal with the approximation."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from engine.backtest import sim_replay

DAY = date(2025, 2, 3)


def test_backtest_refuses_entries_over_the_margin_cap() -> None:
    every = timedelta(minutes=2)
    free = sim_replay.run("CAL_ARB", DAY, DAY, {}, scan_every=every)
    assert free.metrics["trades"] > 0 and free.metrics["margin_denied"] == 0
    capped = sim_replay.run("CAL_ARB", DAY, DAY, {"RISK_MAX_MARGIN_PCT": "0.1"},
                            scan_every=every)
    assert capped.metrics["trades"] == 0 and capped.metrics["margin_denied"] > 0
    first = capped.metrics["margin_denials"][0]
    assert first["tag"].startswith("CAL_ARB-20250203-")
    assert first["reason"].endswith("exceeds RISK_MAX_MARGIN_PCT 0.1 of capital ₹500000 "
                                    "(cap ₹50000.00)")
    margin = Decimal(first["reason"].split("₹")[1].split(" ")[0])
    assert margin > Decimal("50000")
