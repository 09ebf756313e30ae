"""The AI actor in a real engine (real actors, PostgreSQL, the simulated market in lock-step,
the fake chat-completions server): AI off changes nothing else; AI on trades a simulated
AI_MARKET option through risk and the executor, predicts under the cap, re-runs on the
command bus and runs the exit overlay."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pykka
import pytest
from psycopg.types.json import Jsonb

import engine.app as app
from engine.ai.llm import LlmClient, LlmConfig
from engine.app import build
from engine.bus.commands import CommandRow
from engine.bus.dispatch import Dispatcher
from engine.clock import ManualClock
from engine.config import load
from engine.messages.base import SeededIds
from engine.messages.commands import OpenPosition
from engine.messages.legs import Leg, OptionType, Side
from engine.messages.tap import MessageTap
from engine.settings import Settings
from engine.store.pool import open_pool
from engine.store.tx import transaction
from engine.strategies.market_view import build_market_view
from engine.timeutil import IST
from tests.conftest import eventually
from tests.engine.harness import enable_only

DAY = datetime(2025, 2, 3, tzinfo=IST)


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


class Run:
    def __init__(self, db_url: str, start: datetime, *, llm: LlmClient | None = None,
                 settings: dict[str, str] | None = None, tap: MessageTap | None = None) -> None:
        self.pool = open_pool(db_url, max_size=10, name="ai-test")
        enable_only(self.pool, ("CAL_ARB",))
        store = Settings(self.pool)
        for key, value in (settings or {}).items():
            store.set(key, value, updated_by="test")
        extra: dict[str, Any] = {"ai_tick_s": 0.02}
        if llm is not None:
            extra["llm"] = llm
        self.engine = build(load({"DATABASE_URL": db_url, "SIM_SEED": "7"}), self.pool,
                            clock=ManualClock(start), tap=tap, ids=SeededIds(7),
                            listen_settings=False, extra_services=extra)
        self.engine.exit_process = lambda code: None
        self.engine.start(with_bus=False)

    def run_until(self, hh: int, mm: int) -> None:
        now = self.engine.clock.now()
        self.engine.scheduler.run_lockstep(now.replace(hour=hh, minute=mm, second=0))

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def stop(self) -> None:
        self.engine.stop()
        self.pool.close()


def _tap_of(db_url: str, *, without_ai: bool, monkeypatch) -> tuple[str, int]:
    if without_ai:
        monkeypatch.setattr(app, "ACTORS", tuple(a for a in app.ACTORS if a[0] != "ai"))
    tap = MessageTap(exclude=())
    run = Run(db_url, DAY.replace(hour=9, minute=15), tap=tap)
    try:
        run.run_until(9, 35)
        sentiments = len(run.rows("SELECT id FROM ai_market_sentiment"))
    finally:
        run.stop()
        monkeypatch.undo()
    return tap.dumps(), sentiments


def test_ai_off_runs_sentiment_only_and_changes_nothing_else(new_database, monkeypatch) -> None:
    with_ai, sentiments = _tap_of(new_database(), without_ai=False, monkeypatch=monkeypatch)
    without, none = _tap_of(new_database(), without_ai=True, monkeypatch=monkeypatch)
    # (with trading in it: tests/replay's golden log runs with the AI actor present and off)
    assert "ScanTick" in with_ai and "MonitorTick" in with_ai
    assert with_ai == without  # every message between the actors is the same
    assert sentiments >= 1 and none == 0


def _llm(fake) -> LlmClient:
    return LlmClient(LlmConfig(base_url=fake.url, model="fake-1"), timeout_s=5, retries=0)


def test_ai_on_good_day_trade_predictions_rerun_and_time_exit(new_database, fake,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", fake.url)  # the bus's rerun check reads the environment
    monkeypatch.setenv("LLM_MODEL", "fake-1")
    run = Run(new_database(), DAY.replace(hour=14, minute=20), llm=_llm(fake), settings={
        "AI_PREDICT_DAILY_RUN_CAP": "1", "AI_MARKET_EXIT_TIME": "14:30"})
    try:
        run.run_until(14, 21)
        # flow 1: the scheduled analysis (09:30 is past) opens a paper AI_MARKET CE
        trade = eventually(lambda: run.rows("SELECT * FROM open_trades WHERE strategy ="
                                            " 'AI_MARKET'"), timeout=10)[0]
        assert trade["mode"] == "paper" and trade["tag"].startswith("AI-20250203-14")
        leg = trade["payload"]["legs"][0]
        assert (leg["side"], leg["option_type"]) == ("BUY", "CE")
        mirror = eventually(lambda: run.rows("SELECT * FROM ai_market_trades WHERE entry_price"
                                             " IS NOT NULL"), timeout=5)[0]
        assert mirror["open_tag"] == trade["tag"] and mirror["option_type"] == "CE"
        entry = mirror["entry_price"]
        assert mirror["target"] >= entry * Decimal("1.4") and mirror["stop"] <= entry * Decimal("0.75")
        (analysis,) = run.rows("SELECT * FROM ai_market_analysis")
        assert analysis["trigger"] == "scheduled" and analysis["verdict"] == "BULLISH"
        assert analysis["brief"]["near_expiry"] and "pcr" in analysis["brief"]
        assert eventually(lambda: run.rows("SELECT 1 FROM ai_market_analysis WHERE"
                                           " execution_status LIKE 'opened%%'"))
        # flow 2: one prediction of each task (AI_PREDICT_DAILY_RUN_CAP=1)
        eventually(lambda: len(run.rows("SELECT id FROM ai_predictions")) == 2, timeout=5)
        # /rerun_ai_market through the command bus: a same-day copy, traded too
        result = Dispatcher(run.engine).dispatch(CommandRow(
            id=1, kind="rerun_task", payload={"task": "ai_market"}, requested_by="telegram:alice",
            created_at=DAY, claimed_by="test"))
        assert result == {"sent": "RerunAiMarket", "task": "ai_market"}
        eventually(lambda: len(run.rows("SELECT id FROM ai_market_trades WHERE entry_price IS"
                                        " NOT NULL")) == 2, timeout=10)
        assert [r["trigger"] for r in run.rows("SELECT trigger FROM ai_market_analysis ORDER BY"
                                               " id")] == ["scheduled", "rerun"]
        run.run_until(14, 31)  # AI_MARKET_EXIT_TIME 14:30: both sold
        closed = eventually(lambda: (r := run.rows(
            "SELECT * FROM ai_market_trades WHERE closed_at IS NOT NULL")) and len(r) == 2 and r,
            timeout=10)
        assert all(r["exit_price"] is not None and r["realized_pnl"] is not None for r in closed)
        reasons = {r["exit_reason"] for r in run.rows("SELECT exit_reason FROM closed_trades"
                                                      " WHERE strategy = 'AI_MARKET'")}
        assert reasons == {"AI_MARKET time exit at 14:30"}
        assert len(run.rows("SELECT id FROM ai_predictions")) == 2  # capped all day
        calls = run.rows("SELECT purpose, status FROM ai_llm_calls ORDER BY id")
        assert {c["purpose"] for c in calls} == {"ai_market", "market_view", "breakout_risk"}
    finally:
        run.stop()


def _open_short_call(run: Run) -> str:
    """A paper short-gamma (IC) trade, opened through the executor like any entry."""
    view = build_market_view(run.engine.market.snapshot(), run.engine.calendar.current())
    option = view.near.option(view.near.atm_strike, "CE")
    leg = Leg(security_id=option.security_id, side=Side.SELL, quantity=option.lot_size,
              option_type=OptionType.CE, expiry=view.near.expiry, strike=option.strike,
              price=option.bid)
    run.engine.directory.send("executor", OpenPosition(
        ts=run.engine.clock.now(), strategy="IC", tag="IC-TEST-1", legs=(leg,), reason="test"))
    eventually(lambda: run.rows("SELECT 1 FROM open_trades WHERE tag = 'IC-TEST-1'"))
    return "IC-TEST-1"


def test_exit_overlay_advisory_only_then_auto_close_in_the_engine(new_database, fake) -> None:
    run = Run(new_database(), DAY.replace(hour=14, minute=20), llm=_llm(fake), settings={
        "AI_MARKET_ENABLED": "false", "AI_PREDICT_DAILY_RUN_CAP": "0",
        "AI_EXIT_OVERLAY_ENABLED": "true", "AI_EXIT_OVERLAY_MODE": "ADVISORY_ONLY"})
    try:
        run.run_until(14, 21)
        tag = _open_short_call(run)
        with transaction(run.pool) as conn:  # a HIGH breakout risk, made a minute ago
            conn.execute("INSERT INTO ai_predictions (trade_date, task, payload, verdict,"
                         " confidence_pct, created_at) VALUES (%s, 'breakout_risk', %s, 'HIGH',"
                         " 90, %s)", (DAY.date(), Jsonb({"horizon_minutes": 120, "direction": "UP"}),
                                      DAY.replace(hour=14, minute=20)))
        run.run_until(14, 22)
        advisory = eventually(lambda: run.rows("SELECT * FROM ai_exit_advisories"), timeout=5)[0]
        assert (advisory["trade_tag"], advisory["action_taken"], advisory["reason"]) == (
            tag, "ADVISORY_ONLY", "AI_BREAKOUT_RISK")
        assert advisory["confidence_pct"] == 90
        run.run_until(14, 23)
        assert run.rows("SELECT 1 FROM open_trades WHERE tag = %s", tag)  # advised, not closed
        assert len(run.rows("SELECT id FROM ai_exit_advisories")) == 1  # one row per event
        Settings(run.pool).set("AI_EXIT_OVERLAY_MODE", "AUTO_CLOSE", updated_by="test")
        run.engine.settings.invalidate()
        run.run_until(14, 24)
        closed = eventually(lambda: run.rows("SELECT exit_reason FROM closed_trades WHERE tag"
                                             " = %s", tag), timeout=10)[0]
        assert closed["exit_reason"].startswith("AI_BREAKOUT_RISK: HIGH breakout risk (UP")
        actions = [r["action_taken"] for r in run.rows(
            "SELECT action_taken FROM ai_exit_advisories WHERE trade_tag = %s ORDER BY id", tag)]
        assert actions == ["ADVISORY_ONLY", "AUTO_CLOSE"]
    finally:
        run.stop()
