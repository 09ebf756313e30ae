"""Flows 1 and 2 end to end against the fake server and a real database: stored rows,
the malformed answer and the timeout (stored with the error, nothing traded), the daily cap
(count and insert in one transaction), one advisory row per event, the debrief budget."""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal

from psycopg.types.json import Jsonb

from engine.ai import store
from engine.ai.brief import messages_for
from engine.ai.debrief import debrief_day, debrief_payload, estimate_tokens
from engine.ai.llm import LlmClient, LlmConfig
from engine.ai.runner import run_analysis, run_prediction
from engine.store.tx import transaction
from engine.timeutil import IST
from tests.ai.fake_llm import Scripted

NOW = datetime(2025, 2, 3, 9, 30, tzinfo=IST)
DAY = NOW.date()
BRIEF = {"spot": 23500.0, "pcr": 1.1}


def rows(pool, sql: str, *args):
    with pool.connection() as conn:
        return conn.execute(sql, args).fetchall()


def test_good_analysis_is_stored_with_verdict_tokens_brief_and_model(pool, fake, llm) -> None:
    aid, verdict = run_analysis(pool, llm, BRIEF, trigger="scheduled", now=NOW)
    assert verdict is not None and verdict.idea.option_type == "CE"
    (row,) = rows(pool, "SELECT * FROM ai_market_analysis")
    assert row["id"] == aid and row["verdict"] == "BULLISH" and row["confidence_pct"] == 72
    assert (row["input_tokens"], row["output_tokens"]) == (120, 40)
    assert row["parsed"]["trade_idea"]["strike_offset"] == 1 and row["error_text"] is None
    assert row["brief"] == {"spot": Decimal("23500.0"), "pcr": Decimal("1.1")}
    assert row["model"] == "fake-1" and row["trigger"] == "scheduled"
    assert row["execution_status"] == "validated"
    (call,) = rows(pool, "SELECT * FROM ai_llm_calls")
    assert (call["purpose"], call["status"], call["input_tokens"]) == ("ai_market", "ok", 120)
    sent = fake.requests[0]["messages"]
    assert "TASK: ai_market" in sent[0]["content"] and '"spot":23500.0' in sent[1]["content"]


def test_malformed_answer_is_stored_with_the_error_and_not_traded(pool, fake, llm) -> None:
    fake.queue(Scripted(content="I think the market will go up today."))
    _aid, verdict = run_analysis(pool, llm, BRIEF, trigger="rerun", now=NOW)
    assert verdict is None
    (row,) = rows(pool, "SELECT * FROM ai_market_analysis")
    assert row["raw_response"] == "I think the market will go up today."
    assert row["error_text"].startswith("invalid answer: answer is not valid JSON")
    assert row["verdict"] is None and row["parsed"] is None
    assert row["execution_status"] == "not traded: invalid answer" and row["trigger"] == "rerun"
    assert rows(pool, "SELECT * FROM ai_market_trades") == []


def test_timeout_is_stored_with_the_error(pool, fake) -> None:
    slow = LlmClient(LlmConfig(base_url=fake.url, model="fake-1"), timeout_s=0.2, retries=2)
    fake.queue(Scripted(content="{}", delay=0.6))
    _aid, verdict = run_analysis(pool, slow, BRIEF, trigger="scheduled", now=NOW)
    assert verdict is None and len(fake.requests) == 1
    (row,) = rows(pool, "SELECT * FROM ai_market_analysis")
    assert "no answer from the LLM within 0.2 s" in row["error_text"]
    assert row["execution_status"] == "not traded: LLM call failed"
    assert [r["status"] for r in rows(pool, "SELECT status FROM ai_llm_calls")] == ["timeout"]


def test_prediction_rows_and_the_daily_cap_before_the_call(pool, fake, llm) -> None:
    assert run_prediction(pool, llm, "breakout_risk", BRIEF, cap=2, now=NOW) is not None
    assert run_prediction(pool, llm, "breakout_risk", BRIEF, cap=2, now=NOW) is not None
    calls = len(fake.requests)
    assert run_prediction(pool, llm, "breakout_risk", BRIEF, cap=2, now=NOW) is None
    assert len(fake.requests) == calls  # at the cap: no tokens spent
    assert run_prediction(pool, llm, "market_view", BRIEF, cap=2, now=NOW) is not None  # per task
    got = rows(pool, "SELECT task, verdict, confidence_pct, input_tokens, payload FROM"
                     " ai_predictions ORDER BY id")
    assert [(r["task"], r["verdict"]) for r in got] == [
        ("breakout_risk", "LOW"), ("breakout_risk", "LOW"), ("market_view", "NEUTRAL")]
    assert got[0]["payload"]["horizon_minutes"] == 60 and got[0]["input_tokens"] == 120


def test_concurrent_inserts_at_cap_minus_one_exactly_one_succeeds(pool) -> None:
    cap = 3
    for _ in range(cap - 1):
        assert store.insert_prediction_capped(pool, day=DAY, task="market_view", created_at=NOW,
                                              payload={}, verdict="NEUTRAL", confidence=None,
                                              input_tokens=0, output_tokens=0, cap=cap)
    barrier = threading.Barrier(6)
    results: list[int | None] = []

    def insert() -> None:
        barrier.wait()
        results.append(store.insert_prediction_capped(
            pool, day=DAY, task="market_view", created_at=NOW, payload={}, verdict="NEUTRAL",
            confidence=None, input_tokens=0, output_tokens=0, cap=cap))

    threads = [threading.Thread(target=insert) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(r is not None for r in results) == 1 and len(results) == 6
    assert store.count_predictions(pool, DAY, "market_view") == cap


def test_one_advisory_row_per_event(pool) -> None:
    kw = dict(day=DAY, tag="IC-1", strategy="IC", reason="AI_BREAKOUT_RISK",
              confidence=Decimal("85"), at=NOW)
    assert store.insert_advisory(pool, action="ADVISORY_ONLY", **kw)
    assert not store.insert_advisory(pool, action="ADVISORY_ONLY", **kw)
    assert store.insert_advisory(pool, action="AUTO_CLOSE", **kw)
    assert store.insert_advisory(pool, action="ADVISORY_ONLY", **{**kw, "reason": "AI_SENTIMENT_RISK"})
    assert len(rows(pool, "SELECT * FROM ai_exit_advisories")) == 3


def _journal(pool, tag: str) -> None:
    with transaction(pool) as conn:
        conn.execute("INSERT INTO trade_journal (tag, trade_date, strategy, realized_pnl,"
                     " exit_reason, selection_context) VALUES (%s, %s, 'DC', 512.5, 'target', %s)",
                     (tag, DAY, Jsonb({"reason": "z"})))


def test_debriefs_within_the_daily_token_budget_and_verdict_outcome(pool, fake, llm) -> None:
    for tag in ("DC-1", "DC-2", "DC-3"):
        _journal(pool, tag)
    with transaction(pool) as conn:
        conn.execute("INSERT INTO ai_market_analysis (trade_date, verdict, confidence_pct)"
                     " VALUES (%s, 'BULLISH', 70)", (DAY,))
        for t, spot in ((NOW, 23000), (NOW.replace(hour=15), 23120)):
            conn.execute("INSERT INTO strategy_battle_log (created_at, trade_date, spot)"
                         " VALUES (%s, %s, %s)", (t, DAY, spot))
    # each call costs 160 tokens and is estimated at e before it is made: a budget of
    # 160 + e + 100 allows two (the third would need 320 + e)
    e = estimate_tokens(messages_for("debrief", debrief_payload(
        {"strategy": "DC", "realized_pnl": Decimal("512.50"), "exit_reason": "target",
         "selection_context": {"reason": "z"}, "ai_verdict": "BULLISH"})), 400)
    done = debrief_day(pool, llm, DAY, budget=160 + e + 100, max_output=400)
    assert done == {"rows": 3, "debriefed": 2, "skipped_budget": 1, "failed": 0}
    got = rows(pool, "SELECT tag, ai_debrief, ai_debrief_json, ai_verdict, ai_verdict_outcome"
                     " FROM trade_journal ORDER BY tag")
    assert got[0]["ai_debrief"].startswith("Entered on a calm tape")
    assert got[0]["ai_debrief_json"]["grade"] == "B" and got[2]["ai_debrief"] is None
    assert {r["ai_verdict"] for r in got} == {"BULLISH"}
    assert got[2]["ai_verdict_outcome"].startswith("RIGHT (NIFTY +0.52 %")
    assert store.debrief_tokens_used(pool, DAY) == 320
    assert '"strategy":"DC"' in fake.requests[0]["messages"][1]["content"]
    assert debrief_day(pool, None, date(2025, 2, 3), budget=1200)["debriefed"] == 0
