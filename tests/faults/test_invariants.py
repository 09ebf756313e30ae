"""The invariant checker itself: silent on a real session's books, loud on each kind of damage.

Each mutation below breaks the books the way a money-path bug would (a lost close, a duplicate
execution, a stale counter, ...); the checker must name exactly that invariant.
"""

from __future__ import annotations

import pykka
import pytest

from tests.engine.harness import Harness
from tests.faults.invariants import INVARIANTS, violations

pytestmark = pytest.mark.faults

MUTATIONS = {
    "a trade is never both open and closed":
        "INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at, payload)"
        " SELECT tag, strategy, mode, trade_date, opened_at, '{}' FROM closed_trades LIMIT 1",
    "every close has its exit executions":
        "DELETE FROM executions WHERE action = 'CLOSE' AND tag = (SELECT tag FROM closed_trades"
        " ORDER BY id LIMIT 1)",
    "no entry execution without a trade (orphan)":
        "INSERT INTO executions (trade_date, executed_at, tag, strategy, mode, action, security_id,"
        " side, quantity, price) VALUES ('2025-02-03', now(), 'GHOST', 'DC', 'paper', 'OPEN', '1',"
        " 'BUY', 65, 1)",
    "no execution recorded twice (same trade, action, security, correlation id)":
        "DROP INDEX executions_correlation_uq;"
        " INSERT INTO executions (trade_date, executed_at, tag, strategy, mode, action, security_id,"
        " side, quantity, price, correlation_id) SELECT trade_date, executed_at, tag, strategy,"
        " mode, action, security_id, side, quantity, price, correlation_id"
        " FROM executions WHERE correlation_id IS NOT NULL LIMIT 1",
    "metrics_days realized P&L = sum over closed_trades":
        "UPDATE metrics_days SET realized_pnl = realized_pnl + 1",
    "stage envelope lifetime P&L = sum over its closes":
        "UPDATE risk_envelope_stages SET lifetime_pnl = 0 WHERE stage = 'paper'",
    "stage envelope loss streak = trailing losing closes":
        "UPDATE risk_envelope_stages SET loss_streak = loss_streak + 1 WHERE stage = 'paper'",
    "one journal row per close":
        "DELETE FROM trade_journal WHERE tag = (SELECT tag FROM closed_trades LIMIT 1)",
    "net P&L = gross - charges on every close":
        "UPDATE closed_trades SET charges = charges + 1 WHERE id = (SELECT min(id) FROM"
        " closed_trades)",
    "one close per (trade day, tag)":
        "ALTER TABLE closed_trades DROP CONSTRAINT closed_trades_day_tag_uq;"
        " INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at, closed_at,"
        " gross_pnl, charges, realized_pnl, exit_reason) SELECT trade_date, tag, strategy, mode,"
        " opened_at, closed_at, gross_pnl, charges, realized_pnl, exit_reason FROM closed_trades"
        " LIMIT 1",
}


@pytest.fixture(scope="module")
def session_books(new_database_module):
    url = new_database_module()
    h = Harness(url).start()
    try:
        h.run_until(12, 0)
    finally:
        h.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
    return url


@pytest.fixture(scope="module")
def new_database_module(admin_url, template_db):
    import uuid

    import psycopg

    from tests.conftest import _drop, with_dbname

    made = []

    def make():
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        made.append(name)
        return with_dbname(admin_url, name)

    yield make
    for name in made:
        _drop(admin_url, name)


def test_a_real_session_violates_nothing(session_books) -> None:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(session_books, row_factory=dict_row) as conn:
        n_closed = conn.execute("SELECT count(*) AS n FROM closed_trades").fetchone()["n"]
        assert n_closed >= 1, "the session must close trades for the invariants to mean much"
        assert violations(conn) == {}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_kind_of_damage_is_named(session_books, name: str) -> None:
    import psycopg
    from psycopg.rows import dict_row

    assert name in INVARIANTS
    with psycopg.connect(session_books, row_factory=dict_row) as conn:
        try:
            for statement in MUTATIONS[name].split(";"):
                conn.execute(statement)
            found = violations(conn)
        finally:
            conn.rollback()
    assert name in found, f"{name!r} not reported; reported: {sorted(found)}"
