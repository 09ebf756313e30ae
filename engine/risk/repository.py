"""Reads and writes the singleton risk_envelope_state row (owned by the RiskActor)."""

from __future__ import annotations

from dataclasses import asdict

from psycopg_pool import ConnectionPool

from engine.risk.envelope import EnvelopeState

COLUMNS = tuple(EnvelopeState.__dataclass_fields__)


def load(pool: ConnectionPool) -> EnvelopeState:
    with pool.connection() as conn:
        row = conn.execute("SELECT * FROM risk_envelope_state WHERE id = 1").fetchone()
    return EnvelopeState.from_row(row) if row else EnvelopeState()


def save(conn, state: EnvelopeState) -> None:
    values = asdict(state)
    sets = ", ".join(f"{c} = %({c})s" for c in COLUMNS)
    conn.execute("INSERT INTO risk_envelope_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
    conn.execute(f"UPDATE risk_envelope_state SET {sets}, updated_at = now() WHERE id = 1", values)
