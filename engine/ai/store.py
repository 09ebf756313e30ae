"""Every write (and the reads the flows need) of the ai_* tables.

The prediction cap is enforced here: :func:`insert_prediction_capped` takes a transaction
advisory lock on (day, task), counts the day's rows of the task and inserts only below the
cap, all in one transaction — two concurrent inserts at cap − 1 give exactly one row.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.store.tx import transaction

__all__ = [
    "close_ai_trade",
    "count_predictions",
    "debrief_tokens_used",
    "first_sentiment",
    "insert_advisory",
    "insert_ai_trade",
    "insert_analysis",
    "insert_prediction_capped",
    "insert_sentiment",
    "latest_sentiment",
    "open_ai_trades",
    "predictions_of_day",
    "record_call",
    "set_ai_trade_entry",
    "set_analysis_status",
]

_LOCK_SPACE = 19_019  # advisory-lock class id of the AI prediction cap


def record_call(pool: ConnectionPool, *, day: date, purpose: str, model: str, status: str,
                input_tokens: int = 0, output_tokens: int = 0, attempts: int = 1,
                latency_ms: int = 0, error_text: str | None = None) -> int:
    """One ai_llm_calls row (what a call cost and how it ended)."""
    with transaction(pool) as conn:
        return conn.execute(
            "INSERT INTO ai_llm_calls (trade_date, purpose, model, status, input_tokens,"
            " output_tokens, attempts, latency_ms, error_text) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (day, purpose, model, status, input_tokens, output_tokens, max(1, attempts),
             max(0, latency_ms), error_text)).fetchone()["id"]


# ---------------------------------------------------------------- flow 1
def insert_analysis(pool: ConnectionPool, *, day: date, called_at: datetime, trigger: str,
                    model: str, brief: Mapping[str, Any], raw: str | None,
                    parsed: Mapping[str, Any] | None, verdict: str | None,
                    confidence: Decimal | None, input_tokens: int | None,
                    output_tokens: int | None, error: str | None, status: str) -> int:
    with transaction(pool) as conn:
        return conn.execute(
            "INSERT INTO ai_market_analysis (trade_date, called_at, raw_response, parsed, verdict,"
            " confidence_pct, input_tokens, output_tokens, error_text, execution_status, trigger,"
            " model, brief) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (day, called_at, raw, Jsonb(dict(parsed)) if parsed is not None else None, verdict,
             confidence, input_tokens, output_tokens, error, status, trigger, model,
             Jsonb(dict(brief)))).fetchone()["id"]


def set_analysis_status(pool: ConnectionPool, analysis_id: int, status: str) -> None:
    with transaction(pool) as conn:
        conn.execute("UPDATE ai_market_analysis SET execution_status = %s WHERE id = %s",
                     (status[:500], analysis_id))


def analyses_of_day(pool: ConnectionPool, day: date, trigger: str | None = None) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT * FROM ai_market_analysis WHERE trade_date = %s AND (%s::text IS NULL OR"
            " trigger = %s) ORDER BY id", (day, trigger, trigger)).fetchall()


def insert_ai_trade(pool: ConnectionPool, *, analysis_id: int, day: date, tag: str,
                    strike: Decimal, option_type: str) -> int:
    """The mirror row of an AI_MARKET intent (prices filled when the executor opens it)."""
    with transaction(pool) as conn:
        return conn.execute(
            "INSERT INTO ai_market_trades (analysis_id, trade_date, open_tag, strike, option_type)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (analysis_id, day, tag, strike, option_type)).fetchone()["id"]


def set_ai_trade_entry(pool: ConnectionPool, tag: str, *, entry: Decimal, target: Decimal,
                       stop: Decimal) -> None:
    with transaction(pool) as conn:
        conn.execute("UPDATE ai_market_trades SET entry_price = %s, target = %s, stop = %s"
                     " WHERE open_tag = %s AND entry_price IS NULL", (entry, target, stop, tag))


def close_ai_trade(pool: ConnectionPool, tag: str, *, exit_price: Decimal | None,
                   realized_pnl: Decimal | None, closed_at: datetime) -> bool:
    with transaction(pool) as conn:
        return conn.execute(
            "UPDATE ai_market_trades SET exit_price = %s, realized_pnl = %s, closed_at = %s"
            " WHERE open_tag = %s AND closed_at IS NULL",
            (exit_price, realized_pnl, closed_at, tag)).rowcount > 0


def open_ai_trades(pool: ConnectionPool) -> list[dict[str, Any]]:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM ai_market_trades WHERE closed_at IS NULL"
                            " ORDER BY id").fetchall()


# ---------------------------------------------------------------- flow 2
def count_predictions(pool: ConnectionPool, day: date, task: str) -> int:
    with pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM ai_predictions WHERE trade_date = %s"
                            " AND task = %s", (day, task)).fetchone()["n"]


def insert_prediction_capped(pool: ConnectionPool, *, day: date, task: str, created_at: datetime,
                             payload: Mapping[str, Any], verdict: str | None,
                             confidence: Decimal | None, input_tokens: int | None,
                             output_tokens: int | None, cap: int) -> int | None:
    """Insert one prediction unless the day already has ``cap`` rows of ``task``: the id, or
    None at the cap. Count and insert run in one transaction under an advisory lock on
    (day, task), so concurrent callers can never exceed the cap."""
    key = zlib.crc32(f"{day.isoformat()}:{task}".encode()) & 0x7FFFFFFF
    with transaction(pool) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, key))
        n = conn.execute("SELECT count(*) AS n FROM ai_predictions WHERE trade_date = %s AND"
                         " task = %s", (day, task)).fetchone()["n"]
        if n >= cap:
            return None
        return conn.execute(
            "INSERT INTO ai_predictions (trade_date, task, payload, verdict, confidence_pct,"
            " input_tokens, output_tokens, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (day, task, Jsonb(dict(payload)), verdict, confidence, input_tokens, output_tokens,
             created_at)).fetchone()["id"]


def predictions_of_day(pool: ConnectionPool, day: date) -> list[dict[str, Any]]:
    """The day's predictions, oldest first (what ``hints_for`` and the overlay read)."""
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM ai_predictions WHERE trade_date = %s"
                            " ORDER BY created_at, id", (day,)).fetchall()


# ---------------------------------------------------------------- flow 3 / 4 overlays
def insert_advisory(pool: ConnectionPool, *, day: date, tag: str, strategy: str, reason: str,
                    confidence: Decimal | None, action: str, at: datetime) -> bool:
    """One ai_exit_advisories row per event: False when this (day, trade, reason, action)
    was recorded already."""
    with transaction(pool) as conn:
        return conn.execute(
            "INSERT INTO ai_exit_advisories (trade_date, trade_tag, strategy, reason,"
            " confidence_pct, action_taken, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (trade_date, trade_tag, reason, action_taken) DO NOTHING RETURNING id",
            (day, tag, strategy, reason, confidence, action, at)).fetchone() is not None


def insert_sentiment(pool: ConnectionPool, *, day: date, at: datetime, sentiment: Any) -> int:
    s = sentiment
    with transaction(pool) as conn:
        return conn.execute(
            "INSERT INTO ai_market_sentiment (trade_date, created_at, score, label, strength_pct,"
            " coverage_pct, spot, prev_close, pcr, iv, components, note) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (day, at, s.score, s.label, s.strength_pct, s.coverage_pct, s.spot, s.prev_close,
             s.pcr, s.iv, Jsonb(dict(s.components)), s.note)).fetchone()["id"]


def first_sentiment(pool: ConnectionPool, day: date) -> dict[str, Any] | None:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM ai_market_sentiment WHERE trade_date = %s"
                            " ORDER BY created_at, id LIMIT 1", (day,)).fetchone()


def latest_sentiment(pool: ConnectionPool, day: date) -> dict[str, Any] | None:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM ai_market_sentiment WHERE trade_date = %s"
                            " ORDER BY created_at DESC, id DESC LIMIT 1", (day,)).fetchone()


# ---------------------------------------------------------------- debriefs
def debrief_tokens_used(pool: ConnectionPool, day: date) -> int:
    with pool.connection() as conn:
        return int(conn.execute(
            "SELECT coalesce(sum(input_tokens + output_tokens), 0) AS n FROM ai_llm_calls"
            " WHERE trade_date = %s AND purpose = 'debrief'", (day,)).fetchone()["n"])
