"""Reads and writes the risk envelope rows (owned by the RiskActor).

* ``risk_envelope_state`` (singleton): the pause that applies to every stage (operator,
  supervisor, trades on hold, token) and, for display, the counters summed over all stages.
* ``risk_envelope_stages``: one envelope per go-live stage; its counters are derived from
  ``closed_trades`` (``envelope.derive``), never accumulated from events.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from psycopg_pool import ConnectionPool

from engine.risk.envelope import STAGES, Close, EnvelopeState, derive

COLUMNS = tuple(EnvelopeState.__dataclass_fields__)


def load(pool: ConnectionPool) -> EnvelopeState:
    """The singleton row (global pause, all-stage totals)."""
    with pool.connection() as conn:
        row = conn.execute("SELECT * FROM risk_envelope_state WHERE id = 1").fetchone()
    return EnvelopeState.from_row(row) if row else EnvelopeState()


def save(conn, state: EnvelopeState) -> None:
    values = asdict(state)
    sets = ", ".join(f"{c} = %({c})s" for c in COLUMNS)
    conn.execute("INSERT INTO risk_envelope_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
    conn.execute(f"UPDATE risk_envelope_state SET {sets}, updated_at = now() WHERE id = 1", values)


def load_stages(pool: ConnectionPool) -> dict[str, tuple[EnvelopeState, int]]:
    """Stage -> (stored envelope, closes it was derived from)."""
    with pool.connection() as conn:
        rows = conn.execute("SELECT * FROM risk_envelope_stages").fetchall()
    found = {r["stage"]: (EnvelopeState.from_row(r), int(r["closes_seen"])) for r in rows}
    return {s: found.get(s, (EnvelopeState(), 0)) for s in STAGES}


def save_stage(conn, stage: str, state: EnvelopeState, closes_seen: int) -> None:
    values = {**asdict(state), "stage": stage, "closes_seen": closes_seen}
    cols = (*COLUMNS, "closes_seen")
    conn.execute(
        f"INSERT INTO risk_envelope_stages (stage, {', '.join(cols)}) VALUES (%(stage)s, "
        + ", ".join(f"%({c})s" for c in cols)
        + ") ON CONFLICT (stage) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols) + ", updated_at = now()", values)


def load_closes(conn) -> list[tuple[str, Close]]:
    """(stage, close) of every close, in the order the envelope counts them."""
    rows = conn.execute(
        "SELECT mode, trade_date, realized_pnl, closed_at FROM closed_trades"
        " ORDER BY trade_date, closed_at, id").fetchall()
    return [(r["mode"], Close(r["trade_date"], r["realized_pnl"], r["closed_at"])) for r in rows]


def close_counts(conn) -> dict[str, int]:
    """Closes per stage: a cheap check whether the envelope must be derived again."""
    rows = conn.execute("SELECT mode, count(*) AS n FROM closed_trades GROUP BY mode").fetchall()
    counts = {s: 0 for s in STAGES}
    counts.update({r["mode"]: int(r["n"]) for r in rows})
    return counts


def all_stages(closes: list[tuple[str, Close]], global_state: EnvelopeState) -> EnvelopeState:
    """The singleton for display: counters over every stage's closes, the global pause kept."""
    return derive((c for _, c in closes), global_state)


def stage_rows(pool: ConnectionPool) -> list[dict[str, Any]]:
    """The stage rows, live first (for display)."""
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM risk_envelope_stages ORDER BY "
                            "array_position(ARRAY['live','shadow','paper'], stage)").fetchall()
