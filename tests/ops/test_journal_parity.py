"""Journal backfill (idempotent) and the daily parity report, on a simulated afternoon the
engine recorded (real engine, real PostgreSQL): the replay of the day against itself matches
exactly; an injected slippage on one fill is flagged with its rupees."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from engine.backtest import parity, snapshot_replay
from engine.execution import repository as repo
from engine.execution.charges import Charges
from engine.execution.journal_backfill import backfill
from engine.execution.paper import Fill
from engine.execution.trades import OpenLeg, Trade
from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.settings import Settings
from engine.store.pool import open_pool
from engine.timeutil import IST
from tests.conftest import eventually
from tests.engine.harness import Harness

DAY = date(2025, 2, 4)
PARAMS = {"DC_MIN_IV_EDGE": "-10", "DC_MIN_NEAR_DTE": "2", "DC_MAX_REALIZED_RANGE_PCT": "0.2",
          "DC_BREAKEVEN_BUFFER_SD": "0", "DC_MAX_SPREAD_OF_TARGET": "5", "DC_NEAR_IV_MIN": "0",
          "DC_PROFIT_TARGET_PCT": "0.01", "DC_STOP_LOSS_PCT": "0.01"}  # quick exits


@pytest.fixture
def recorded(db_url: str):
    """An engine's afternoon on the simulated market with no strategy trading: the
    iv_snapshots it records are the day the parity report replays."""
    h = Harness(db_url, start=datetime(2025, 2, 4, 14, 30, tzinfo=IST), strategies=()).start()
    try:
        h.run_until(15, 29)
    finally:
        h.stop()
    pool = open_pool(db_url, max_size=4, name="parity-test")
    yield pool
    pool.close()


def _charges(total: str) -> Charges:
    z = Decimal(0)
    return Charges(brokerage=Decimal(total), exchange=z, sebi=z, ipft=z, stt=z, stamp=z, gst=z)


def _book_as_engine(pool, trades) -> None:
    """Record the backtest's closed trades as the engine's own (the repository's open and
    close, exactly as the executor writes them)."""
    for t in trades:
        if t["status"] != "closed":
            continue
        legs, entry_fills, exit_fills = [], [], []
        for x in t["legs"]:
            leg = Leg(security_id=x["security_id"], side=Side(x["side"]),
                      quantity=int(x["quantity"]), kind=InstrumentKind(x["kind"]),
                      option_type=OptionType(x["option_type"]) if x["option_type"] else None,
                      expiry=date.fromisoformat(x["expiry"]) if x["expiry"] else None,
                      strike=Decimal(x["strike"]) if x["strike"] else None)
            px, ch = Decimal(x["entry_price"]), _charges(x["entry_charges"])
            legs.append(OpenLeg(leg, px, ch.total))
            entry_fills.append(Fill(leg=leg, price=px, charges=ch, order_id="", correlation_id=None))
            close = Leg(security_id=leg.security_id,
                        side=Side.SELL if leg.side is Side.BUY else Side.BUY,
                        quantity=leg.quantity, kind=leg.kind, option_type=leg.option_type,
                        expiry=leg.expiry, strike=leg.strike)
            exit_fills.append(Fill(leg=close, price=Decimal(x["exit_price"]),
                                   charges=_charges(x["exit_charges"]), order_id="",
                                   correlation_id=None))
        opened = datetime.fromisoformat(t["opened_at"])
        trade = Trade(tag=t["tag"], strategy=t["strategy"], mode="paper", trade_date=DAY,
                      opened_at=opened, legs=tuple(legs))
        assert repo.record_open(pool, trade, entry_fills, opened)
        repo.record_close(pool, trade, exit_fills, datetime.fromisoformat(t["closed_at"]),
                          t["exit_reason"], {})


def test_parity_of_a_simulated_day_matches_itself_and_flags_slippage(recorded) -> None:
    pool = recorded
    assert snapshot_replay.load_snapshots(pool, DAY, DAY)
    params = {**parity.engine_params(Settings(pool)), **PARAMS}
    replay = snapshot_replay.run("DC", DAY, DAY, {**params, "every_minutes": 1}, pool=pool)
    closed = [t for t in replay.trades if t["status"] == "closed"]
    assert closed, ("the permissive DC settings should trade on the recorded afternoon: "
                    f"{[(t['status'], t['exit_reason']) for t in replay.trades]}")
    _book_as_engine(pool, replay.trades)

    report = parity.run(pool, DAY, strategies=["DC"], params=params, every_minutes=1)
    assert report["status"] == "match", report["flags"]
    assert len(report["matched"]) == len(closed) and not report["backtest_only"]
    assert all(m["pnl_diff"] == "0.00" and m["entry_delay_s"] == 0 for m in report["matched"])
    assert report["totals"] == {"entry_slippage": "0.00", "exit_slippage": "0.00",
                                "charges": "0.00", "pnl": "0.00"}
    rid = parity.store(pool, report)
    with pool.connection() as conn:
        stored = conn.execute("SELECT * FROM parity_reports WHERE id = %s", (rid,)).fetchone()
        chat = conn.execute("SELECT text FROM chat_outbox ORDER BY id DESC LIMIT 1").fetchone()
    assert stored["status"] == "match" and "MATCH" in chat["text"]

    victim = closed[0]["tag"]  # 0.50 ₹/unit worse on one exit fill
    with pool.connection() as conn:
        row = conn.execute("SELECT id, side, quantity, price FROM executions WHERE tag = %s AND"
                           " action = 'CLOSE' ORDER BY id LIMIT 1", (victim,)).fetchone()
        worse = row["price"] + (Decimal("0.50") if row["side"] == "BUY" else Decimal("-0.50"))
        conn.execute("UPDATE executions SET price = %s WHERE id = %s", (worse, row["id"]))
    report = parity.run(pool, DAY, strategies=["DC"], params=params, every_minutes=1)
    assert report["status"] == "differs"
    assert any(victim in f and "+0.50 ₹/unit" in f for f in report["flags"]), report["flags"]
    assert Decimal(report["totals"]["exit_slippage"]) == Decimal("0.50") * row["quantity"]
    parity.store(pool, report)
    with pool.connection() as conn:
        assert conn.execute("SELECT status FROM parity_reports WHERE id = %s",
                            (rid,)).fetchone()["status"] == "differs"  # replaced, same day

    # journal backfill over those closes: idempotent (a second run changes nothing)
    with pool.connection() as conn:
        conn.execute("DELETE FROM trade_journal WHERE tag = %s", (victim,))
        conn.execute("UPDATE trade_journal SET entry_spot = NULL, exit_iv = NULL")
    first = backfill(pool, DAY, DAY)
    assert victim in first.inserted and first.filled
    with pool.connection() as conn:
        snap1 = conn.execute("SELECT * FROM trade_journal ORDER BY tag").fetchall()
    second = backfill(pool, DAY, DAY)
    with pool.connection() as conn:
        snap2 = conn.execute("SELECT * FROM trade_journal ORDER BY tag").fetchall()
    assert not second.inserted and not second.filled and snap1 == snap2
    assert all(r["entry_spot"] is not None and r["exit_iv"] is not None for r in snap2)
    assert snap2[[r["tag"] for r in snap2].index(victim)]["selection_context"]["backfill"]


def test_backfill_refuses_a_reversed_range(db_url: str) -> None:
    pool = open_pool(db_url, max_size=2, name="backfill-test")
    try:
        with pytest.raises(ValueError, match="before --from"):
            backfill(pool, DAY, date(2025, 2, 1))
        assert backfill(pool, None, None).seen == 0
    finally:
        pool.close()


def test_daily_parity_report_runs_after_the_close_and_is_sent_to_chat(db_url: str) -> None:
    """PARITY_DAILY: the BacktestActor builds the day's report in its worker process on the
    end-of-day tick, stores it and queues its summary to chat."""
    h = Harness(db_url, start=datetime(2025, 2, 4, 15, 20, tzinfo=IST), strategies=(),
                settings={"PARITY_DAILY": "true", "PARITY_STRATEGIES": "DC"}).start()
    try:
        h.run_until(15, 36)  # the session closes at 15:30; end of day 5 min later

        def reports() -> list[dict]:
            return h.query("SELECT trade_date, strategies, status, summary FROM parity_reports")

        eventually(reports, timeout=30)  # a spawned worker: imports take a few seconds
        [report] = reports()
        assert (report["trade_date"], report["strategies"]) == (DAY, ["DC"])
        assert report["status"] in ("match", "differs")
        assert report["summary"]["text"].startswith(f"Parity {DAY.isoformat()} (DC)")
        sent = h.query("SELECT text FROM chat_outbox WHERE text LIKE 'Parity %%'")
        assert [r["text"] for r in sent] == [report["summary"]["text"]]
    finally:
        h.stop()
