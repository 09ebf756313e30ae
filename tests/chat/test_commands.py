"""Every chat command's answer, the allow-list, /set validation and the TOTP confirmation of
dangerous commands — on a real database, through ChatControl.handle (both channels call it)."""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timedelta

import pyotp
import pytest
from psycopg.types.json import Jsonb

from engine.chat.commands import HANDLERS, HELP, Sender, parse
from engine.chat.control import AllowList, ChatControl
from engine.settings import Settings
from engine.store.tx import transaction
from engine.timeutil import IST

ALICE = Sender("telegram", "111", "111", "alice")
NOW = datetime(2026, 12, 2, 11, 0, tzinfo=IST)


@pytest.fixture
def secret() -> str:
    return pyotp.random_base32()


@pytest.fixture
def control(pool, secret, tmp_path) -> ChatControl:
    return ChatControl(Settings(pool, ttl=0), AllowList.of(["111"], ["bob@example.com"]),
                       totp_secret=secret, log_path=tmp_path / "engine.log", now=lambda: NOW)


def say(pool, control, text: str, sender: Sender = ALICE) -> str | None:
    with transaction(pool) as conn:
        return control.handle(conn, sender, text)


def commands(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT kind, payload, requested_by FROM engine_commands"
                            " ORDER BY id").fetchall()


def test_parse_one_parser_for_both_channels() -> None:
    assert parse("/status@nifty_bot").name == "status"
    assert parse("  /PNL week ").args == ("week",) and parse("/PNL week").name == "pnl"
    assert parse("hello") is None and parse("/") is None


def test_help_lists_every_command_one_line_each(pool, control) -> None:
    reply = say(pool, control, "/help")
    lines = reply.splitlines()
    for usage, text in HELP.values():
        assert sum(1 for ln in lines if ln.startswith(usage + " ") and ln.endswith(text)) == 1
    assert set(HELP) - {"confirm"} <= set(HANDLERS)


def test_status_reports_engine_stages_slots_risk_token(pool, control) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO runtime_state (key, value) VALUES ('engine_heartbeat', %s),"
                     " ('strategy_slots', %s), ('dhan_token', %s)",
                     (Jsonb({"ts": (NOW - timedelta(seconds=20)).isoformat()}),
                      Jsonb({"dc_family": {"used": 1, "limit": 1}}),
                      Jsonb({"expires_at": "2026-12-03T08:00:00+05:30"})))
        conn.execute("INSERT INTO go_live_state (strategy, stage) VALUES ('DC', 'shadow')")
        conn.execute("UPDATE risk_envelope_state SET daily_pnl = -1200.5, pause_reason ="
                     " 'daily loss cap'")
    reply = say(pool, control, "/status")
    assert "heartbeat 20 s ago" in reply and "DC=shadow" in reply
    assert "dc_family 1/1" in reply and "today ₹-1,200.50" in reply
    assert "PAUSED (daily loss cap)" in reply and "2026-12-03T08:00" in reply
    assert "Open positions: 0" in reply


def _closed(conn, day: date, tag: str, pnl: str) -> None:
    conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                 " closed_at, gross_pnl, realized_pnl, exit_reason) VALUES (%s, %s, 'DC',"
                 " 'paper', %s, %s, %s, %s, 'target')",
                 (day, tag, NOW - timedelta(days=(NOW.date() - day).days, hours=2),
                  NOW - timedelta(days=(NOW.date() - day).days), pnl, pnl))


def test_pnl_today_week_month_and_trades(pool, control) -> None:
    with pool.connection() as conn:
        _closed(conn, NOW.date(), "DC-1", "100")              # Wed 2 Dec
        _closed(conn, date(2026, 11, 30), "DC-2", "-40")      # Monday, same week
        _closed(conn, date(2026, 11, 20), "DC-3", "500")      # November
    assert "₹100.00 net over 1 closed trade(s), 1 won" in say(pool, control, "/pnl")
    assert "₹60.00 net over 2 closed trade(s), 1 won" in say(pool, control, "/pnl week")
    assert "₹100.00 net over 1" in say(pool, control, "/pnl month")  # December only
    assert "expected today, week or month" in say(pool, control, "/pnl year")
    trades = say(pool, control, "/trades 2").splitlines()
    assert len(trades) == 2 and "DC-1" in trades[0] and "DC-2" in trades[1]
    assert "expected a whole number" in say(pool, control, "/trades lots")


def _open(conn, tag: str = "DC-9") -> None:
    conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at, payload)"
                 " VALUES (%s, 'DC', 'paper', %s, %s, %s)",
                 (tag, NOW.date(), NOW, Jsonb({"mtm": "-35.5", "legs": [
                     {"security_id": "1", "side": "SELL", "quantity": 75, "kind": "OPTION",
                      "option_type": "CE", "expiry": "2026-12-08", "strike": "24500",
                      "entry_price": "110.5"}]})))


def test_positions_show_legs_and_mtm(pool, control) -> None:
    assert say(pool, control, "/positions") == "No open positions."
    with pool.connection() as conn:
        _open(conn)
    reply = say(pool, control, "/positions")
    assert "DC-9 [DC, paper]" in reply and "MTM ₹-35.50" in reply
    assert "SELL 75 OPTION 24500CE 2026-12-08 @ 110.5" in reply


def test_get_settings_and_set_records_the_chat_user(pool, control) -> None:
    assert say(pool, control, "/get risk_max_loss_streak").startswith(
        "RISK_MAX_LOSS_STREAK = 4 (default 4; allowed: an integer between 1 and 100)")
    assert say(pool, control, "/set RISK_MAX_LOSS_STREAK 6") == "RISK_MAX_LOSS_STREAK: (default) -> 6"
    with pool.connection() as conn:
        row = conn.execute("SELECT value, updated_by FROM bot_settings WHERE key ="
                           " 'RISK_MAX_LOSS_STREAK'").fetchone()
    assert row == {"value": "6", "updated_by": "telegram:alice"}
    listing = say(pool, control, "/settings")
    assert "RISK_MAX_LOSS_STREAK = 6  (set by telegram:alice)" in listing
    assert "1 changed from the default" in listing
    assert "unknown setting" in say(pool, control, "/get NOPE")


def test_set_with_a_bad_value_is_refused_and_changes_nothing(pool, control) -> None:
    say(pool, control, "/set RISK_MAX_LOSS_STREAK 6")
    with pool.connection() as conn:
        before = conn.execute("SELECT * FROM settings_audit ORDER BY id").fetchall()
    for bad in ("/set RISK_MAX_LOSS_STREAK 500", "/set RISK_MAX_LOSS_STREAK six",
                "/set NO_SUCH_KEY 1", "/set RISK_MAX_LOSS_STREAK"):
        reply = say(pool, control, bad)
        assert "refused" in reply or "unknown setting" in reply or "usage" in reply, reply
    assert "expected an integer between 1 and 100" in say(pool, control,
                                                         "/set RISK_MAX_LOSS_STREAK 500")
    with pool.connection() as conn:
        assert conn.execute("SELECT * FROM settings_audit ORDER BY id").fetchall() == before
        assert conn.execute("SELECT value FROM bot_settings WHERE key ="
                            " 'RISK_MAX_LOSS_STREAK'").fetchone()["value"] == "6"


def test_events_and_why_blocked(pool, control) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO market_events (event_date, event_time, name, category,"
                     " risk_level) VALUES (%s, '10:00', 'RBI policy decision', 'RBI_MPC',"
                     " 'high')", (NOW.date() + timedelta(days=3),))
    reply = say(pool, control, "/events 7")
    assert "Sat 05 Dec 10:00 [HIGH] RBI policy decision (RBI_MPC)" in reply
    assert "No market events" in say(pool, control, "/events 1")
    why = say(pool, control, "/why_blocked DC")
    assert why.startswith("DC: ") and "RBI" in why  # the event guard blocks around the MPC
    assert "unknown" in say(pool, control, "/why_blocked NOPE").lower()


def test_logs_tail_only_redacted_capped(pool, control, tmp_path) -> None:
    from engine.redact import register_secret

    register_secret("sup3r-secret-token-value")
    lines = [f"line {i}" for i in range(500)] + ["auth with sup3r-secret-token-value ok"]
    (tmp_path / "engine.log").write_text("\n".join(lines) + "\n")
    reply = say(pool, control, "/logs 3")
    assert reply.splitlines()[:2] == ["line 498", "line 499"]
    assert "sup3r-secret-token-value" not in reply and "auth with" in reply
    assert len(say(pool, control, "/logs 5000").splitlines()) == 50  # capped


def test_commands_that_reach_actors_are_engine_commands_with_channel_and_user(pool,
                                                                              control) -> None:
    with pool.connection() as conn:
        _open(conn, "DC-5")
    assert "command #" in say(pool, control, "/pause lunch break")
    assert "command #" in say(pool, control, "/resume")
    assert "command #" in say(pool, control, "/golive DC shadow")
    assert "command #" in say(pool, control, "/close DC-5")
    assert "no open trade" in say(pool, control, "/close DC-404")
    assert "unknown strategy" in say(pool, control, "/golive NOPE paper")
    got = [(c["kind"], c["payload"], c["requested_by"]) for c in commands(pool)]
    assert got == [
        ("pause_entries", {"reason": "lunch break"}, "telegram:alice"),
        ("resume_entries", {}, "telegram:alice"),
        ("set_go_live_stage", {"strategy": "DC", "stage": "shadow", "confirm": True},
         "telegram:alice"),
        ("close_trade", {"tag": "DC-5"}, "telegram:alice")]
    with pool.connection() as conn:  # each is followed up to the asking chat
        assert conn.execute("SELECT count(*) AS n FROM chat_followups WHERE chat_id = '111'"
                            ).fetchone()["n"] == 4


def test_backtest_queues_a_run_and_answers_when_it_completes(pool, control) -> None:
    from engine.chat.service import check_followups

    reply = say(pool, control, "/backtest IC 2025-01-01 2025-03-31 BT_FILL_MODEL=next_close")
    assert "queued" in reply and "answer when it completes" in reply
    assert "unknown setting" in say(pool, control, "/backtest IC 2025-01-01 2025-03-31 X=1")
    assert "expected dates" in say(pool, control, "/backtest IC 2025-13-01 2025-03-31")
    with pool.connection() as conn:
        run = conn.execute("SELECT * FROM backtest_runs").fetchone()
        assert run["strategy"] == "IC" and run["config_snapshot"]["BT_FILL_MODEL"] == "next_close"
        cmd = conn.execute("SELECT * FROM engine_commands").fetchone()
        assert cmd["kind"] == "run_backtest" and cmd["payload"] == {"run_id": run["run_id"]}
        conn.execute("UPDATE engine_commands SET status = 'done'")
    assert check_followups(pool) == 0  # dispatched, but the run is not finished
    with pool.connection() as conn:
        conn.execute("UPDATE backtest_runs SET status = 'complete', metrics_json = %s",
                     (Jsonb({"net_pnl": "1234.50", "trades": 7, "sharpe": 1.2}),))
    assert check_followups(pool) == 1
    assert check_followups(pool) == 0
    with pool.connection() as conn:
        out = conn.execute("SELECT channel, chat_id, text FROM chat_outbox").fetchall()
    assert out == [{"channel": "telegram", "chat_id": "111", "text":
                    f"Backtest run {run['run_id']} IC 2025-01-01 .. 2025-03-31 complete: "
                    "net_pnl 1234.50, trades 7, sharpe 1.2"}]


def test_rerun_ai_market_says_ai_flows_are_not_configured(pool, control) -> None:
    assert "AI flows are not configured" in say(pool, control, "/rerun_ai_market")
    assert commands(pool) == []


def test_disallowed_sender_is_ignored(pool, control, caplog) -> None:
    mallory = Sender("telegram", "999", "999", "mallory")
    with caplog.at_level(logging.WARNING):
        assert say(pool, control, "/pause", mallory) is None
        assert say(pool, control, "/status", mallory) is None
    assert commands(pool) == []
    assert sum("not on the allow-list" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------- TOTP confirmation
def _code(secret: str, offset: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + offset * totp.interval)


def test_golive_live_without_a_code_queues_nothing(pool, control) -> None:
    reply = say(pool, control, "/golive DC live")
    assert "/confirm" in reply and "60 s" in reply
    assert commands(pool) == []
    assert say(pool, control, "/golive DC live") and commands(pool) == []


def test_golive_live_with_a_wrong_code_cancels(pool, control, secret) -> None:
    say(pool, control, "/golive DC live")
    wrong = f"{(int(_code(secret)) + 1) % 1_000_000:06d}"
    assert "cancelled" in say(pool, control, f"/confirm {wrong}")
    assert commands(pool) == []
    # the right code now finds nothing: the wrong one cancelled the request
    assert say(pool, control, f"/confirm {_code(secret)}") == "Nothing to confirm."
    assert commands(pool) == []


def test_golive_live_with_a_late_code_cancels(pool, control, secret) -> None:
    say(pool, control, "/golive DC live")
    with pool.connection() as conn:
        conn.execute("UPDATE chat_confirmations SET expires_at = now() - interval '1 second'")
    assert "Too late" in say(pool, control, f"/confirm {_code(secret)}")
    assert commands(pool) == []


def test_golive_live_with_the_right_code_queues_once(pool, control, secret) -> None:
    say(pool, control, "/golive DC live")
    other = Sender("telegram", "222", "111", "carol")  # another user cannot confirm it
    assert say(pool, control, f"/confirm {_code(secret)}", other) == "Nothing to confirm."
    code = _code(secret)
    assert "Setting DC to live" in say(pool, control, f"/confirm {code}")
    assert [(c["kind"], c["payload"]) for c in commands(pool)] == [
        ("set_go_live_stage", {"strategy": "DC", "stage": "live", "confirm": True})]
    say(pool, control, "/golive DC live")  # a code works once
    assert "cancelled" in say(pool, control, f"/confirm {code}")
    assert len(commands(pool)) == 1


def test_close_all_needs_confirmation_then_closes_every_open_trade(pool, control,
                                                                   secret) -> None:
    with pool.connection() as conn:
        _open(conn, "DC-1")
        _open(conn, "IC-2")
    say(pool, control, "/close all")
    assert commands(pool) == []
    assert "Closing 2 position(s)" in say(pool, control, f"/confirm {_code(secret)}")
    assert sorted(c["payload"]["tag"] for c in commands(pool)) == ["DC-1", "IC-2"]


def test_killswitch_needs_confirmation_then_queues_the_command(pool, control, secret) -> None:
    reply = say(pool, control, "/killswitch results at 2")
    assert "/confirm" in reply and commands(pool) == []
    assert "kill switch" in say(pool, control, f"/confirm {_code(secret)}")
    assert [(c["kind"], c["payload"]) for c in commands(pool)] == [
        ("kill_switch", {"reason": "results at 2", "confirm": True})]


def test_dangerous_commands_refused_without_a_totp_secret(pool, tmp_path) -> None:
    control = ChatControl(Settings(pool), AllowList.of(["111"], ()), totp_secret="")
    assert "DASHBOARD_TOTP_SECRET" in say(pool, control, "/golive DC live")
    assert commands(pool) == []


def test_plain_text_gets_a_hint_in_private_and_silence_in_a_group(pool) -> None:
    control = ChatControl(Settings(pool), AllowList.of(["111", "-100777"], ()))
    assert say(pool, control, "hello") == "Send /help for the commands."
    group = Sender("telegram", "111", "-100777", "alice", is_group=True)
    assert say(pool, control, "lunch?", group) is None
    assert "Open positions" in say(pool, control, "/status@nifty_bot", group)
