"""The trade journal at close, end to end on the simulated market: a DC and an MDC double
calendar open (four legs each), are closed through the executor's close command, and their
trade_journal rows have every column the data can fill — entry/exit spot and IV, skew,
MFE/MAE, per-leg slippage, the selection context, the rejected strategies and, for MDC, the
chosen variant, every variant's score and what each rejected variant would have made."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pykka
import pytest

from engine.messages.commands import ClosePosition
from engine.timeutil import IST
from tests.engine.harness import Harness

START = datetime(2025, 2, 4, 14, 30, tzinfo=IST)  # Tue; the 06-Feb weekly expires on Thu
#: entry filters opened wide (as tests/engine/test_options_day.py) so both open on this
#: seed's afternoon; MDC selects its best variant whatever its edge; two dc_family slots so
#: DC and MDC can both hold one; exits far away so the test decides the close
SETTINGS = {"DC_MIN_IV_EDGE": "-10", "DC_MIN_NEAR_DTE": "2", "DC_MAX_REALIZED_RANGE_PCT": "0.2",
            "DC_BREAKEVEN_BUFFER_SD": "0", "DC_MAX_SPREAD_OF_TARGET": "5", "DC_NEAR_IV_MIN": "0",
            "MDC_MIN_EDGE_PCT": "-100", "DC_FAMILY_SLOTS": "2"}
#: columns the engine has nothing for at close (the AI and the operator fill them later)
NOT_AT_CLOSE = {"ai_verdict", "operator_notes", "ai_debrief", "ai_debrief_json",
                "ai_verdict_outcome"}


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _run_until_open(h: Harness, strategies: set[str], until: datetime) -> dict[str, str]:
    t = h.engine.clock.now()
    while t < until:
        t += timedelta(minutes=5)
        h.run_until(t.hour, t.minute, t)
        rows = h.query("SELECT tag, strategy FROM open_trades")
        found = {r["strategy"]: r["tag"] for r in rows}
        if strategies <= set(found):
            return found
    return {r["strategy"]: r["tag"] for r in h.query("SELECT tag, strategy FROM open_trades")}


def test_journal_rows_are_complete_at_close(db_url: str) -> None:
    h = Harness(db_url, start=START, strategies=("DC", "MDC"), settings=SETTINGS).start()
    try:
        opened = _run_until_open(h, {"DC", "MDC"}, START.replace(hour=15, minute=25))
        assert {"DC", "MDC"} <= set(opened), f"DC and MDC did not both open: {opened}"
        # hold for a while so the marks move, then close both through the executor
        later = h.engine.clock.now() + timedelta(minutes=20)
        h.run_until(later.hour, later.minute, later)
        for tag in opened.values():
            h.engine.directory.get("executor").tell(ClosePosition(
                ts=h.engine.clock.now(), tag=tag, reason="manual close (journal test)"))
        step = h.engine.clock.now() + timedelta(minutes=1)
        h.run_until(step.hour, step.minute, step)
        rows = {r["strategy"]: r for r in h.query(
            "SELECT * FROM trade_journal WHERE tag = ANY(%s)", list(opened.values()))}
        assert set(rows) >= {"DC", "MDC"}, rows.keys()
        closed = {r["tag"]: r for r in h.query("SELECT * FROM closed_trades")}

        for name, row in rows.items():
            nulls = [k for k, v in row.items() if v is None and k not in NOT_AT_CLOSE]
            assert not nulls, f"{name}: NULL columns {nulls}"
            assert row["entry_iv"] > 0 and row["exit_iv"] > 0
            assert row["entry_spot"] > 0 and row["exit_spot"] > 0
            assert row["mfe"] >= row["mae"]
            ctx = row["selection_context"]
            assert ctx["strategy"] == name and ctx["entry_market"]["spot"]
            assert ctx["exit_market"]["spot"] == str(row["exit_spot"])
            # the skew column is the entry market's 25-delta skew
            assert Decimal(ctx["entry_market"]["skew"]) == row["skew"]
            slip = row["slippage"]
            assert len(slip["legs"]) == 4
            for leg in slip["legs"]:
                assert leg["entry"]["vs_mid"]["rupees"] is not None
                assert leg["exit"]["vs_touch"]["rupees"] is not None
            # the paper broker fills at the touch (± its slippage ticks): never better
            assert Decimal(slip["total"]["vs_touch"]) >= 0
            assert Decimal(slip["total"]["vs_mid"]) > Decimal(slip["total"]["vs_touch"])
            others = {r["strategy"] for r in row["rejected_strategies"]}
            assert name not in others and {"IC", "CAL_ARB"} <= others
            assert row["event_risk_label"] == "none"

        dc_row, mdc_row = rows["DC"], rows["MDC"]
        assert dc_row["rejected_strategy_delta"]["variants"] == []
        ctx = mdc_row["selection_context"]
        assert ctx["variant"] and len(ctx["scores"]) >= 2
        assert all("code" in s for s in ctx["scores"])
        delta = mdc_row["rejected_strategy_delta"]
        net = closed[opened["MDC"]]["realized_pnl"]
        assert Decimal(delta["chosen"]["net_pnl"]) == net
        priced = [v for v in delta["variants"] if v["priced"]]
        assert priced, delta
        assert {v["code"] for v in delta["variants"]} <= {s["code"] for s in ctx["scores"]}
        assert ctx["variant"] not in {v["code"] for v in delta["variants"]}
        for v in priced:
            assert Decimal(v["delta_vs_chosen"]) == Decimal(v["net_pnl"]) - net
            assert Decimal(v["net_pnl"]) == (Decimal(v["gross_pnl"])
                                             - Decimal(v["charges"])).quantize(Decimal("0.01"))
            assert len(v["legs"]) == 4 and Decimal(v["charges"]) > 0
    finally:
        h.stop()
