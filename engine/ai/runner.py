"""One LLM call of a flow, end to end: call, record the cost, validate, store (I/O).

Run in the AI actor's worker thread (never on an actor's own thread: a slow model must not
look like a stuck actor). Errors never escape: a failed or invalid call is stored with its
error text and nothing downstream happens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg_pool import ConnectionPool

from engine.ai import store
from engine.ai.brief import messages_for
from engine.ai.llm import LlmAnswer, LlmClient, LlmError, LlmTimeout
from engine.ai.verdict import AnswerInvalid, MarketVerdict, parse_market_verdict, parse_prediction
from engine.timeutil import IST

__all__ = ["run_analysis", "run_prediction"]

logger = logging.getLogger(__name__)


def _call(pool: ConnectionPool, llm: LlmClient, purpose: str, payload: Mapping[str, Any],
          now: datetime) -> LlmAnswer | LlmError:
    day = now.astimezone(IST).date()
    try:
        answer = llm.chat(messages_for(purpose, payload))
    except LlmError as exc:
        store.record_call(pool, day=day, purpose=purpose, model=llm.model,
                          status="timeout" if isinstance(exc, LlmTimeout) else "error",
                          attempts=exc.attempts, error_text=str(exc))
        logger.warning("AI %s call failed: %s", purpose, exc)
        return exc
    store.record_call(pool, day=day, purpose=purpose, model=answer.model, status="ok",
                      input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
                      attempts=answer.attempts, latency_ms=answer.latency_ms)
    return answer


def run_analysis(pool: ConnectionPool, llm: LlmClient, brief: Mapping[str, Any], *,
                 trigger: str, now: datetime) -> tuple[int, MarketVerdict | None]:
    """Flow 1: the analysis row's id and the verdict (None: failed or invalid, not traded)."""
    day = now.astimezone(IST).date()
    result = _call(pool, llm, "ai_market", brief, now)
    common: dict[str, Any] = {"day": day, "called_at": now, "trigger": trigger,
                              "model": llm.model, "brief": brief}
    if isinstance(result, LlmError):
        return store.insert_analysis(pool, **common, raw=None, parsed=None, verdict=None,
                                     confidence=None, input_tokens=None, output_tokens=None,
                                     error=str(result), status="not traded: LLM call failed"), None
    tokens = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
    try:
        verdict = parse_market_verdict(result.text)
    except AnswerInvalid as exc:
        logger.warning("AI_MARKET answer refused: %s", exc)
        return store.insert_analysis(pool, **common, raw=result.text, parsed=None, verdict=None,
                                     confidence=None, **tokens, error=f"invalid answer: {exc}",
                                     status="not traded: invalid answer"), None
    analysis_id = store.insert_analysis(pool, **common, raw=result.text, parsed=verdict.parsed,
                                        verdict=verdict.verdict, confidence=verdict.confidence_pct,
                                        **tokens, error=None, status="validated")
    return analysis_id, verdict


def run_prediction(pool: ConnectionPool, llm: LlmClient, task: str, brief: Mapping[str, Any], *,
                   cap: int, now: datetime) -> int | None:
    """Flow 2: the ai_predictions id, or None (cap reached, call failed, answer invalid).
    The cap is checked before the call (no tokens spent at the cap) and again, atomically,
    at the insert."""
    day = now.astimezone(IST).date()
    if store.count_predictions(pool, day, task) >= cap:
        return None
    result = _call(pool, llm, task, brief, now)
    if isinstance(result, LlmError):
        return None
    try:
        pred = parse_prediction(task, result.text)
    except AnswerInvalid as exc:
        logger.warning("AI %s answer refused: %s", task, exc)
        return None
    payload = {**pred.parsed, "horizon_minutes": pred.horizon_minutes, "direction": pred.direction}
    pid = store.insert_prediction_capped(
        pool, day=day, task=task, created_at=now, payload=payload, verdict=pred.verdict,
        confidence=Decimal(pred.confidence_pct), input_tokens=result.input_tokens,
        output_tokens=result.output_tokens, cap=cap)
    if pid is None:
        logger.info("AI %s prediction dropped: AI_PREDICT_DAILY_RUN_CAP %d reached", task, cap)
    return pid
