"""End-to-end paper trading on the simulated market: real actors, real database."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pykka
import pytest

from engine.messages.commands import GetStatus
from engine.settings import Settings
from tests.engine.harness import Harness

pytestmark = pytest.mark.usefixtures("_stop_all")


@pytest.fixture
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def test_session_scans_trades_and_records_everything(db_url: str) -> None:
    h = Harness(db_url).start()
    try:
        h.run_until(12, 0)
        battle = h.query("SELECT count(*) AS n FROM strategy_battle_log")[0]["n"]
        assert battle == 166  # one row per scan cycle, 09:15..12:00 inclusive
        assert h.query("SELECT count(*) AS n FROM iv_snapshots")[0]["n"] == battle
        spread_rows = h.query("SELECT count(*) AS n FROM calendar_spread_history")[0]["n"]
        assert spread_rows == 100  # rolling window kept at 100 samples
        warming = h.query("SELECT rejections FROM strategy_battle_log ORDER BY id LIMIT 1")[0]
        assert "warming up" in warming["rejections"]["CAL_ARB"][0]
        closed = h.query("SELECT * FROM closed_trades")
        opened = h.query("SELECT DISTINCT tag FROM executions WHERE action = 'OPEN'")
        assert opened, "the CAL_ARB strategy should trade in a 3-hour simulated session"
        open_now = h.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
        assert sorted(r["tag"] for r in h.query("SELECT tag FROM open_trades")) == open_now
        assert {r["tag"] for r in opened} == {r["tag"] for r in closed} | set(open_now)
        metrics = h.query("SELECT * FROM metrics_days")[0]
        assert metrics["trades_opened"] == len(opened)
        assert metrics["funnel"]["cycles"] == battle
        assert metrics["realized_pnl"] == sum((c["realized_pnl"] for c in closed), Decimal(0))
        risk = h.query("SELECT * FROM risk_envelope_state")[0]
        assert risk["daily_pnl"] == metrics["realized_pnl"]
        assert h.query("SELECT count(*) AS n FROM trade_journal")[0]["n"] == len(closed)
    finally:
        h.stop()


def test_restart_continues_from_database(db_url: str) -> None:
    h = Harness(db_url).start()
    h.run_until(11, 0)
    before_open = sorted(r["tag"] for r in h.query("SELECT tag FROM open_trades"))
    before_risk = h.query("SELECT * FROM risk_envelope_state")[0]
    h.stop()
    pykka.ActorRegistry.stop_all(timeout=10)
    second = Harness(db_url).start()
    try:
        executor_open = second.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
        assert executor_open == before_open
        after_risk = second.query("SELECT * FROM risk_envelope_state")[0]
        assert after_risk["daily_pnl"] == before_risk["daily_pnl"]
        assert after_risk["loss_streak"] == before_risk["loss_streak"]
    finally:
        second.stop()


def test_daily_loss_cap_blocks_entries_and_survives_restart(db_url: str) -> None:
    h = Harness(db_url)
    Settings(h.pool).set("RISK_DAILY_LOSS_CAP", "1", updated_by="test")
    Settings(h.pool).set("RISK_MAX_LOSS_STREAK", "100", updated_by="test")
    h.start()
    h.run_until(12, 0)
    # the cap pauses the stage that lost (paper), not every stage
    risk = h.query("SELECT * FROM risk_envelope_stages WHERE stage = 'paper'")[0]
    assert risk["pause_reason"] and "daily loss cap" in risk["pause_reason"]
    assert h.query("SELECT pause_reason FROM risk_envelope_stages WHERE stage = 'live'"
                   )[0]["pause_reason"] is None
    assert h.query("SELECT pause_reason FROM risk_envelope_state")[0]["pause_reason"] is None
    closes_at_pause = h.query("SELECT count(*) AS n FROM closed_trades")[0]["n"]
    h.stop()
    pykka.ActorRegistry.stop_all(timeout=10)
    again = Harness(db_url, start=h.engine.clock.now()).start()
    try:
        again.run_until(14, 0)
        denied = again.query(
            "SELECT count(*) AS n FROM strategy_battle_log WHERE created_at > '2025-02-03 12:00+05:30'"
            " AND (rejections::text LIKE '%%risk paused%%' OR rejections::text LIKE '%%entries paused%%')")
        opened_after = again.query(
            "SELECT count(*) AS n FROM executions WHERE action = 'OPEN'"
            " AND executed_at > '2025-02-03 12:00+05:30'")[0]["n"]
        assert opened_after == 0
        assert denied[0]["n"] > 0, "the pause must show up as a rejection reason in the battle log"
        assert again.query("SELECT count(*) AS n FROM closed_trades")[0]["n"] >= closes_at_pause
    finally:
        again.stop()


def test_trade_past_expiry_alerts_once_and_held_trade_is_not_auto_closed(db_url: str, caplog) -> None:
    """A paper trade whose near leg expired while the engine was away cannot be marked: one
    alert, no crash; a held trade is never sent an automatic close."""
    import logging
    from datetime import date

    from psycopg.types.json import Jsonb

    h = Harness(db_url).start()
    try:
        h.run_until(10, 30)
        tags = h.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
        if not tags:
            h.run_until(11, 30)
            tags = h.engine.directory.get("executor").ask(GetStatus(), timeout=10)["open"]
        assert tags, "seed 7 holds a DC position in the morning"
        tag = tags[0]
    finally:
        h.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
    with psycopg.connect(db_url) as conn:
        payload = conn.execute("SELECT payload FROM open_trades WHERE tag = %s", (tag,)).fetchone()[0]
        payload["legs"][1]["expiry"] = date(2025, 1, 30).isoformat()  # expired last week,
        payload["legs"][1]["security_id"] = "99999"                    # so no longer quoted
        payload["hold"] = "test: operator must look"
        conn.execute("UPDATE open_trades SET payload = %s WHERE tag = %s", (Jsonb(payload), tag))
    caplog.set_level(logging.INFO, logger="engine.chat")
    again = Harness(db_url, start=h.engine.clock.now()).start()
    try:
        again.run_until(12, 0)
        alerts = [r.getMessage() for r in caplog.records if "past its expiry" in r.getMessage()]
        assert len(alerts) == 1, alerts
        assert again.query("SELECT count(*) AS n FROM closed_trades WHERE tag = %s", tag)[0]["n"] == 0
        assert again.escalations == []
    finally:
        again.stop()
