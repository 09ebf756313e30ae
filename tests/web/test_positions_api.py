"""/api/positions on a seeded database: a four-leg iron condor with legs, LTP, greeks, exit
levels, payoff and the close-now P&L, on the engine's (simulated) clock."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from psycopg.types.json import Jsonb

from engine.execution.charges import order_charges
from engine.market.pricing import black76_greeks, black76_price, year_fraction
from engine.timeutil import IST, now_ist

ENGINE_TIME = datetime(2025, 2, 4, 10, 15, 30, tzinfo=IST)
EXPIRY = date(2025, 2, 6)
SPOT = 23512.35
FORWARD = 23530.10
QTY = 75
#: (side, right, strike, entry) of the condor
CONDOR = (("SELL", "CE", 23700, "62.40"), ("BUY", "CE", 23850, "24.10"),
          ("SELL", "PE", 23300, "58.75"), ("BUY", "PE", 23150, "21.30"))
ENTRY_CHARGES = Decimal("31.25")
MTM = "2410.50"  # at the touch: below the legs at LTP (₹2,665.75)
BIG_PNL = "123456.78"


def smile_iv(strike: float) -> float:
    """A plausible skewed smile, percent."""
    x = np.log(strike / FORWARD)
    return float(13.0 - 25.0 * x + 400.0 * x * x)


def snapshot_payload() -> dict:
    t = year_fraction(ENGINE_TIME, EXPIRY)
    rows = []
    for k in range(23000, 24050, 50):
        ce_iv, pe_iv = smile_iv(k), smile_iv(k) + 0.3
        rows.append({"strike": float(k),
                     "ce_ltp": round(float(black76_price(FORWARD, k, t, ce_iv / 100, True, 0.065)), 2),
                     "pe_ltp": round(float(black76_price(FORWARD, k, t, pe_iv / 100, False, 0.065)), 2),
                     "ce_iv": round(ce_iv, 4), "pe_iv": round(pe_iv, 4),
                     "ce_iv_source": "source", "pe_iv_source": "source"})
    near = {"expiry": EXPIRY.isoformat(), "dte": 2, "atm_iv": 13.0, "forward": FORWARD,
            "atm_strike": 23500.0}
    far = {"expiry": "2025-02-13", "dte": 9, "atm_iv": 13.8, "forward": 23560.0,
           "atm_strike": 23550.0}
    return {"iv_unit": "percent", "term_structure": {"near": near, "mid": None, "far": far},
            "smile": {"expiry": EXPIRY.isoformat(), "rows": rows}, "far_smile": None}


def seed_four_leg(pool) -> None:
    """A simulated engine at 04 Feb 2025 10:15:30 IST holding one paper iron condor."""
    legs = [{"security_id": f"4{i}001", "side": side, "quantity": QTY, "kind": "OPT",
             "option_type": right, "expiry": EXPIRY.isoformat(), "strike": str(strike),
             "entry_price": entry, "entry_charges": str(ENTRY_CHARGES / 4)}
            for i, (side, right, strike, entry) in enumerate(CONDOR)]
    net = sum(Decimal(e) * (1 if s == "BUY" else -1) for s, _, _, e in CONDOR)
    opened = ENGINE_TIME - timedelta(minutes=45)
    wall = now_ist()
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES ('IC-0204-1', 'IC', 'paper', %s,"
                     " %s, %s, %s, %s)",
                     (ENGINE_TIME.date(), opened, net, QTY * 4,
                      Jsonb({"legs": legs, "mtm": MTM, "mfe": "420.00", "mae": "-1700.00",
                             "direction": "", "closing": None, "hold": None, "context": {}})))
        conn.execute("INSERT INTO iv_snapshots (created_at, trade_date, spot, near_expiry,"
                     " near_atm_iv, payload) VALUES (%s, %s, %s, %s, 13.0, %s)",
                     (ENGINE_TIME - timedelta(seconds=30), ENGINE_TIME.date(), SPOT, EXPIRY,
                      Jsonb(snapshot_payload())))
        conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                     " closed_at, entry_price, exit_price, quantity, gross_pnl, charges,"
                     " realized_pnl, exit_reason) VALUES (%s, 'DC-0204-1', 'DC', 'paper', %s, %s,"
                     " 86.55, -71.90, 300, 123600.00, 143.22, %s, 'profit target')",
                     (ENGINE_TIME.date(), ENGINE_TIME - timedelta(hours=1),
                      ENGINE_TIME - timedelta(minutes=5), BIG_PNL))
        conn.execute("INSERT INTO runtime_state (key, value, updated_at) VALUES"
                     " ('engine_heartbeat', %s, now()) ON CONFLICT (key) DO UPDATE SET"
                     " value = EXCLUDED.value, updated_at = now()",
                     (Jsonb({"ts": wall.isoformat(timespec="seconds"), "pid": 1,
                             "engine_time": ENGINE_TIME.isoformat(timespec="seconds"),
                             "clock": "simulated"}),))


@pytest.fixture
def condor(pool):
    seed_four_leg(pool)


def _position(api) -> dict:
    body = api.get("/api/positions").json
    assert body["count"] == 1
    assert body["engine_time"] == ENGINE_TIME.isoformat() and body["clock"] == "simulated"
    return body["positions"][0]


def test_legs_named_as_traders_write_them_with_ltp_and_pnl(api, condor):
    p = _position(api)
    assert p["problems"] == []
    assert [leg["contract"] for leg in p["legs"]] == [
        "NIFTY 06 FEB 23700 CE", "NIFTY 06 FEB 23850 CE", "NIFTY 06 FEB 23300 PE",
        "NIFTY 06 FEB 23150 PE"]
    short_call = p["legs"][0]
    assert short_call["side"] == "SELL" and short_call["entry_kind"] == "received"
    assert short_call["entry_price"] == "62.40" and short_call["qty"] == QTY
    row = next(r for r in snapshot_payload()["smile"]["rows"] if r["strike"] == 23700.0)
    assert Decimal(short_call["ltp"]) == Decimal(str(row["ce_ltp"]))
    assert short_call["mark_source"] == "snapshot"
    assert Decimal(short_call["pnl"]) == ((Decimal("62.40") - Decimal(str(row["ce_ltp"]))) * QTY)
    assert p["net_entry"] == {"kind": "credit", "rupees": "5681.25", "per_unit": "75.75",
                              "charges": "31.25"}


def test_trade_greeks_are_the_engine_black76_sums(api, condor):
    p = _position(api)
    t = year_fraction(ENGINE_TIME, EXPIRY)
    delta = theta = 0.0
    for side, right, strike, _ in CONDOR:
        iv = smile_iv(strike) + (0.3 if right == "PE" else 0.0)
        g = black76_greeks(FORWARD, strike, t, round(iv, 2) / 100, right == "CE", 0.065)
        q = QTY * (1 if side == "BUY" else -1)
        delta += float(g.delta) * q
        theta += float(g.theta) / 365 * q
    assert p["greeks"]["delta"] == pytest.approx(delta, abs=0.05)
    assert p["greeks"]["theta"] == pytest.approx(theta, abs=0.05)
    assert p["greeks"]["theta"] > 0 and p["greeks"]["vega"] < 0  # a short condor
    assert all({"delta", "gamma", "theta", "vega"} <= set(leg) for leg in p["legs"])


def test_payoff_at_expiry_has_breakevens_around_the_short_strikes(api, condor):
    pay = _position(api)["payoff"]
    credit = 75.75 * QTY
    assert pay["expiry"] == "2025-02-06" and pay["spot"] == SPOT
    lo, hi = pay["breakevens"]
    assert lo == pytest.approx(23300 - 75.75, abs=1) and hi == pytest.approx(23700 + 75.75, abs=1)
    assert pay["max_profit"] == pytest.approx(credit, abs=1)
    assert pay["max_loss"] == pytest.approx(-(150 - 75.75) * QTY, abs=1)
    assert len(pay["spots"]) == len(pay["at_expiry"]) == len(pay["today"])
    i = int(np.argmin(np.abs(np.array(pay["spots"]) - SPOT)))
    assert pay["today"][i] < pay["at_expiry"][i]  # time value still to decay


def test_close_now_is_the_mtm_less_exit_charges_and_slippage_explained(api, condor):
    p = _position(api)
    close = p["close_now"]
    charges = Decimal(0)
    for leg in p["legs"]:
        closing = "BUY" if leg["side"] == "SELL" else "SELL"
        charges += order_charges(kind="OPT", side=closing, price=Decimal(leg["ltp"]), quantity=QTY,
                                 on=ENGINE_TIME.date()).total
    assert Decimal(close["exit_charges"]) == charges.quantize(Decimal("0.01"))
    slippage = Decimal("0.05") * 4 * QTY  # PAPER_SLIPPAGE_TICKS default 1, four legs
    assert Decimal(close["slippage"]) == slippage
    assert Decimal(close["pnl"]) == Decimal(MTM) - charges.quantize(Decimal("0.01")) - slippage
    assert [o["at"] for o in close["orders"]] == ["ask", "bid", "ask", "bid"]
    assert "exit charges" in close["explain"] and MTM in close["explain"]


def test_exit_rules_of_the_condor_with_distances(api, condor):
    exits = _position(api)["exits"]
    kinds = {r["kind"] for r in exits["rules"]}
    assert kinds == {"stop", "target", "spot", "time"}
    credit = Decimal("75.75") * QTY - ENTRY_CHARGES
    target = next(r for r in exits["rules"] if r["kind"] == "target")
    assert Decimal(target["level"]) == (Decimal("0.50") * credit).quantize(Decimal("0.01"))
    stop = next(r for r in exits["rules"] if r["kind"] == "stop")
    assert Decimal(stop["level"]) < 0 and Decimal(stop["distance"]) > 0
    assert exits["next_time"]["at"].startswith("2025-02-05T09:15")  # the session before expiry
    ce = next(r for r in exits["rules"] if "CE" in r["label"] and r["kind"] == "spot")
    assert Decimal(ce["distance"]) == Decimal("23700") - Decimal(str(SPOT))


def test_a_trade_without_legs_still_lists_with_its_mtm(api, pool):
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES ('OLD-1', 'DC', 'paper',"
                     " current_date, now(), 101.5, 75, %s)", (Jsonb({"mtm": "250.25"}),))
    body = api.get("/api/positions").json
    assert body["unrealized"] == "250.25"
    p = body["positions"][0]
    assert p["legs"] == [] and p["problems"] == ["no legs stored with this trade"]
