"""A scan cycle's writes are all or nothing, also in pipeline mode.

The scanner sends one cycle's writes (battle log, IV sample, spread sample, futures ids,
funnel counts) as one pipelined transaction. Here the database session is killed
(``pg_terminate_backend`` of itself, from a trigger on the cycle's last write) after every
other statement of the cycle reached the server and before the commit: nothing of that
cycle may be left, and the next cycles are applied as usual.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from engine.timeutil import IST
from tests.conftest import eventually
from tests.engine.harness import Harness

pytestmark = pytest.mark.faults

KILL_ONCE = """
CREATE SEQUENCE scan_kill_once;
CREATE FUNCTION scan_kill() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- the scanner's funnel bump (the cycle's last write) carries "cycles"; a sequence is not
    -- rolled back with the killed transaction, so this fires exactly once
    IF NEW.funnel ? 'cycles' AND nextval('scan_kill_once') = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER scan_kill BEFORE INSERT ON metrics_days FOR EACH ROW EXECUTE FUNCTION scan_kill();
"""


def _at(hh: int, mm: int) -> datetime:
    return datetime(2025, 2, 3, hh, mm, tzinfo=IST)


def _rows_at(h: Harness, at: datetime) -> dict[str, int]:
    return {table: h.query(f"SELECT count(*) AS n FROM {table} WHERE {col} = %s", at)[0]["n"]
            for table, col in (("strategy_battle_log", "created_at"),
                               ("iv_snapshots", "created_at"),
                               ("calendar_spread_history", "sampled_at"))}


def _cycles(h: Harness) -> int:
    rows = h.query("SELECT coalesce((funnel->>'cycles')::int, 0) AS n FROM metrics_days"
                   " WHERE trade_date = %s", _at(9, 15).date())
    return rows[0]["n"] if rows else 0


def test_a_kill_between_a_cycles_writes_leaves_none_of_them(db_url) -> None:
    h = Harness(db_url).start()
    try:
        h.run_until(9, 18)
        assert _rows_at(h, _at(9, 18)) == {"strategy_battle_log": 1, "iv_snapshots": 1,
                                           "calendar_spread_history": 1}
        before = _cycles(h)
        assert before >= 3
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(KILL_ONCE)

        scanner = h.engine.directory.get("scanner")
        h.run_until(9, 19)  # this cycle's session is killed before its commit
        # the scanner fails and is restarted (a tick sent meanwhile is a dead letter)
        eventually(lambda: (r := h.engine.directory.get("scanner")) is not None
                   and r is not scanner and r.is_alive(), timeout=10)

        with psycopg.connect(db_url, autocommit=True) as conn:
            fired = conn.execute("SELECT last_value, is_called FROM scan_kill_once").fetchone()
        assert fired == (1, True), "the trigger never killed a cycle's session"
        assert _rows_at(h, _at(9, 19)) == {"strategy_battle_log": 0, "iv_snapshots": 0,
                                           "calendar_spread_history": 0}
        assert _cycles(h) == before

        h.run_until(9, 21)  # later cycles are applied whole
        for mm in (20, 21):
            assert _rows_at(h, _at(9, mm)) == {"strategy_battle_log": 1, "iv_snapshots": 1,
                                               "calendar_spread_history": 1}
        assert _cycles(h) == before + 2
    finally:
        h.stop()
