"""Backstops at the broker against the real simulator: Dhan's kill switch (only when flat)
armed after an escalation, and the P&L-based exit set each trading morning."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from engine.broker.dhan.errors import OrderError
from engine.market.calendar import NseCalendar
from engine.ops.daily import LiveDailyChecks
from engine.ops.live import LiveOps
from engine.timeutil import IST
from tests.broker.conftest import atm_option, order, wait_for

SETTINGS = {"LIVE_KILL_SWITCH_ON_ESCALATION": True, "LIVE_PNL_EXIT_ENABLED": True,
            "RISK_DAILY_LOSS_CAP": Decimal("10000"), "LIVE_PNL_EXIT_PROFIT": Decimal("900000"),
            "LIVE_PNL_EXIT_KILL_SWITCH": True, "LIVE_DAILY_CHECK_TIME": "09:00",
            "LIVE_MAX_MARGIN_UTIL": Decimal("0.8"), "LIVE_IP_ECHO_URL": "http://127.0.0.1:9/"}


def _ops(client, **overrides) -> tuple[LiveOps, list[str]]:
    settings = {**SETTINGS, **overrides}
    alerts: list[str] = []
    ops = LiveOps(client, settings.__getitem__, NseCalendar())
    ops.start(alerts.append, daily=False)
    return ops, alerts


def _kill_calls(sim) -> list[dict]:
    return sim.sim.requests("POST", "/v2/killswitch")


def test_sim_refuses_the_kill_switch_while_a_position_is_open(sim, client) -> None:
    sid, lot = atm_option(sim)
    client.place_order(order(sid, lot, "KS-open"))
    wait_for(lambda: any(p.net_qty for p in client.positions()))
    with pytest.raises(OrderError, match="1 open position"):
        client.kill_switch(True)
    assert client.kill_switch_status() is False


def test_kill_switch_armed_on_escalation_once_the_account_is_flat(sim, client) -> None:
    sid, lot = atm_option(sim)
    client.place_order(order(sid, lot, "KS-1"))
    wait_for(lambda: any(p.net_qty for p in client.positions()))
    ops, alerts = _ops(client)

    ops.on_escalation("executor failed 4 times within 60s").join(10)
    assert client.kill_switch_status() is False, "not while a position is open"
    assert ops.backstops.waiting and len(alerts) == 1 and "NOT activated" in alerts[0]
    assert f"{sid} net {lot}" in alerts[0], "the alert names what is still open"
    assert _kill_calls(sim) == [], "it checked the account instead of asking Dhan blindly"
    assert ops.backstops.poll().activated is False and len(alerts) == 1, "told once"

    client.place_order(order(sid, lot, "KS-2", transaction_type="SELL"))  # the engine flattens
    wait_for(lambda: not any(p.net_qty for p in client.positions()))
    outcome = ops.daily.run_due(datetime(2025, 2, 3, 10, 0, tzinfo=IST))  # the next round
    assert "kill_switch" in outcome
    assert client.kill_switch_status() is True and ops.backstops.waiting is None
    assert "KILL SWITCH ACTIVATED" in alerts[-1] and "supervisor escalation" in alerts[-1]
    assert len(_kill_calls(sim)) == 1
    with pytest.raises(OrderError, match="Kill Switch is active"):
        client.place_order(order(sid, lot, "KS-3"))


def test_kill_switch_on_escalation_off_by_setting(sim, client) -> None:
    ops, alerts = _ops(client, LIVE_KILL_SWITCH_ON_ESCALATION=False)
    ops.on_escalation("stuck scanner").join(10)
    assert _kill_calls(sim) == [] and alerts == [] and ops.backstops.waiting is None


def test_operator_kill_switch_on_a_flat_account(sim, client) -> None:
    ops, alerts = _ops(client, LIVE_KILL_SWITCH_ON_ESCALATION=False)
    outcome = ops.backstops.arm_kill_switch("operator pressed the kill switch")
    assert outcome.activated and client.kill_switch_status() is True
    assert "operator pressed the kill switch" in alerts[-1]


def test_pnl_exit_set_each_trading_morning_at_the_daily_loss_cap(sim, client) -> None:
    ops, _ = _ops(client)
    daily: LiveDailyChecks = ops.daily
    daily.ip_check = None  # this test is about the P&L exit
    posts = lambda: sim.sim.requests("POST", "/v2/pnlExit")  # noqa: E731

    assert "pnl_exit" in daily.run_due(datetime(2025, 2, 3, 8, 40, tzinfo=IST))  # at start
    cfg = client.pnl_exit()
    assert cfg["pnlExitStatus"] == "ACTIVE" and Decimal(cfg["loss"]) == Decimal("10000")
    assert Decimal(cfg["profit"]) == Decimal("900000") and cfg["enableKillSwitch"] is True
    assert daily.run_due(datetime(2025, 2, 3, 11, 0, tzinfo=IST)) == [], "once a day"
    assert daily.run_due(datetime(2025, 2, 4, 8, 59, tzinfo=IST)) == [], "not before 09:00"
    assert "pnl_exit" in daily.run_due(datetime(2025, 2, 4, 9, 0, tzinfo=IST))
    assert daily.run_due(datetime(2025, 2, 8, 9, 30, tzinfo=IST)) == [], "Saturday"
    assert len(posts()) == 2
    client.stop_pnl_exit()
    assert client.pnl_exit()["pnlExitStatus"] == "DISABLED"


def test_pnl_exit_disabled_sends_nothing(sim, client) -> None:
    ops, _ = _ops(client, LIVE_PNL_EXIT_ENABLED=False)
    ops.daily.ip_check = None
    ops.daily.run_due(datetime(2025, 2, 3, 9, 30, tzinfo=IST))
    assert sim.sim.requests("POST", "/v2/pnlExit") == []


def test_sim_pnl_exit_squares_the_account_off_then_kill_switch(sim, client) -> None:
    sid, lot = atm_option(sim)
    client.set_pnl_exit(loss=Decimal("0.01"), profit=Decimal("900000"), kill_switch=True)
    client.place_order(order(sid, lot, "PNL-1"))  # bought at the ask, marked lower: a loss
    wait_for(lambda: client.kill_switch_status(), timeout=10)
    assert not any(p.net_qty for p in client.positions()), "Dhan squared it off"
    assert any(o.body.get("correlationId") != "PNL-1" and o.body["transactionType"] == "SELL"
               for o in sim.sim.exchange.orders.values())
    with pytest.raises(ValueError, match="positive"):
        client.set_pnl_exit(loss=Decimal("0"), profit=Decimal("1"))
