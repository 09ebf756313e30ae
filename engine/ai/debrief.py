"""Journal debriefs: a narrative and a structured JSON debrief per closed trade, within a
daily token budget, plus the day's AI verdict and whether it was right.

Pure parts: :func:`debrief_payload` (what the model sees of a trade: strategy, P&L, exit
reason, entry/exit spot and IV, MFE/MAE, holding time — no account data), :func:`parse_debrief`,
:func:`estimate_tokens` (a pre-call estimate, ~4 characters a token, so a call that would
overrun the budget is not made) and :func:`verdict_outcome`.

The writer :func:`debrief_day` fills ``trade_journal.ai_debrief`` / ``ai_debrief_json`` of the
day's rows that have none (oldest first) while the day's debrief tokens (ai_llm_calls,
purpose ``debrief``) stay within ``AI_DEBRIEF_DAILY_TOKEN_BUDGET``, and sets ``ai_verdict`` /
``ai_verdict_outcome`` of every row of the day (no LLM needed for those).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.ai import store
from engine.ai.brief import messages_for
from engine.ai.llm import LlmError, LlmTimeout
from engine.ai.verdict import AnswerInvalid, parse_json_object
from engine.store.tx import transaction

__all__ = ["debrief_day", "debrief_payload", "estimate_tokens", "parse_debrief",
           "verdict_outcome"]

logger = logging.getLogger(__name__)

FLAT_PCT = Decimal("0.2")  # a move smaller than this (%) is flat
GRADES = ("A", "B", "C", "D")


def debrief_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """What the model is told of one trade_journal row."""
    ctx = row.get("selection_context") or {}
    out = {"strategy": row.get("strategy"), "realized_pnl_inr": row.get("realized_pnl"),
           "exit_reason": row.get("exit_reason"), "entry_spot": row.get("entry_spot"),
           "exit_spot": row.get("exit_spot"), "entry_iv_pct": row.get("entry_iv"),
           "exit_iv_pct": row.get("exit_iv"), "skew": row.get("skew"), "mfe": row.get("mfe"),
           "mae": row.get("mae"), "holding": ctx.get("holding_time") or ctx.get("holding"),
           "reason": ctx.get("reason"), "events": row.get("event_risk_label"),
           "ai_verdict_of_day": row.get("ai_verdict")}
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in out.items() if v is not None}


def estimate_tokens(messages: list[dict[str, str]], max_output: int) -> int:
    return sum(len(m["content"]) for m in messages) // 4 + 8 * len(messages) + max_output


def parse_debrief(text: str) -> tuple[str, dict[str, Any]]:
    """(narrative, the structured debrief) of an answer, or AnswerInvalid."""
    obj = parse_json_object(text)
    narrative = obj.get("narrative")
    if not isinstance(narrative, str) or not narrative.strip():
        raise AnswerInvalid(f"narrative={narrative!r}: expected a short text")
    grade = obj.get("grade")
    if grade is not None and str(grade).upper() not in GRADES:
        raise AnswerInvalid(f"grade={grade!r}: expected one of {', '.join(GRADES)}")
    return narrative.strip()[:1000], obj


def verdict_outcome(verdict: str | None, day_open: Decimal | None,
                    day_close: Decimal | None) -> str | None:
    """RIGHT / WRONG of the day's verdict against the day's move (open → close; a move
    under 0.2 % is flat: right for NEUTRAL, wrong for a directional verdict); None without
    a verdict or prices."""
    if verdict is None or not day_open or day_close is None:
        return None
    move = (day_close - day_open) / day_open * 100
    actual = "NEUTRAL" if abs(move) < FLAT_PCT else ("BULLISH" if move > 0 else "BEARISH")
    return f"{'RIGHT' if actual == verdict else 'WRONG'} (NIFTY {move:+.2f} % open to close)"


def _day_move(conn, day: date) -> tuple[Decimal | None, Decimal | None]:
    row = conn.execute(
        "SELECT (SELECT spot FROM strategy_battle_log WHERE trade_date = %s AND spot IS NOT NULL"
        " ORDER BY created_at LIMIT 1) AS o, (SELECT spot FROM strategy_battle_log WHERE"
        " trade_date = %s AND spot IS NOT NULL ORDER BY created_at DESC LIMIT 1) AS c",
        (day, day)).fetchone()
    return row["o"], row["c"]


def debrief_day(pool, llm, day: date, *, budget: int, max_output: int = 400) -> dict[str, int]:
    """Debrief the day's journal rows (see the module docstring); counts of what was done."""
    with pool.connection() as conn:
        verdict_row = conn.execute(
            "SELECT verdict FROM ai_market_analysis WHERE trade_date = %s AND verdict IS NOT"
            " NULL AND error_text IS NULL ORDER BY id DESC LIMIT 1", (day,)).fetchone()
        rows = conn.execute("SELECT * FROM trade_journal WHERE trade_date = %s ORDER BY"
                            " created_at, tag", (day,)).fetchall()
        day_open, day_close = _day_move(conn, day)
    verdict = verdict_row["verdict"] if verdict_row else None
    outcome = verdict_outcome(verdict, day_open, day_close)
    done = {"rows": len(rows), "debriefed": 0, "skipped_budget": 0, "failed": 0}
    if verdict is not None:
        with transaction(pool) as conn:
            conn.execute("UPDATE trade_journal SET ai_verdict = %s, ai_verdict_outcome = %s,"
                         " updated_at = now() WHERE trade_date = %s", (verdict, outcome, day))
    if llm is None or budget <= 0:
        done["skipped_budget"] = sum(1 for r in rows if r["ai_debrief"] is None)
        return done
    for row in rows:
        if row["ai_debrief"] is not None:
            continue
        messages = messages_for("debrief", debrief_payload({**row, "ai_verdict": verdict}))
        used = store.debrief_tokens_used(pool, day)
        if used + estimate_tokens(messages, max_output) > budget:
            done["skipped_budget"] += 1
            continue
        try:
            answer = llm.chat(messages)
        except LlmError as exc:
            store.record_call(pool, day=day, purpose="debrief", model=llm.model,
                              status="timeout" if isinstance(exc, LlmTimeout) else "error",
                              attempts=exc.attempts, error_text=str(exc))
            done["failed"] += 1
            continue
        store.record_call(pool, day=day, purpose="debrief", model=answer.model, status="ok",
                          input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
                          attempts=answer.attempts, latency_ms=answer.latency_ms)
        try:
            narrative, parsed = parse_debrief(answer.text)
        except AnswerInvalid as exc:
            logger.warning("debrief of %s not stored: %s", row["tag"], exc)
            done["failed"] += 1
            continue
        with transaction(pool) as conn:
            conn.execute("UPDATE trade_journal SET ai_debrief = %s, ai_debrief_json = %s,"
                         " updated_at = now() WHERE tag = %s AND ai_debrief IS NULL",
                         (narrative, Jsonb(parsed), row["tag"]))
        done["debriefed"] += 1
    return done
