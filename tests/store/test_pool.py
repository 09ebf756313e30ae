"""Pool behaviour against a real server: reconnect after every backend is terminated."""

from __future__ import annotations

from decimal import Decimal

import psycopg

from engine.store.notify import Listener, notify
from engine.store.tx import transaction
from tests.conftest import eventually


def test_pool_after_backends_terminated_next_query_succeeds(pool, db_url: str) -> None:
    with pool.connection() as conn:
        assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1
    with psycopg.connect(db_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert killed >= 1
    with pool.connection() as conn:
        assert conn.execute("SELECT 2 AS two").fetchone()["two"] == 2


def test_pool_numeric_comes_back_as_decimal(pool) -> None:
    with pool.connection() as conn:
        value = conn.execute("SELECT 0.1::numeric + 0.2::numeric AS v").fetchone()["v"]
    assert value == Decimal("0.3")


def test_transaction_rolls_back_on_error(pool) -> None:
    try:
        with transaction(pool) as conn:
            conn.execute("INSERT INTO runtime_state (key) VALUES ('half')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM runtime_state").fetchone()["n"] == 0


def test_listener_receives_notify_after_commit(pool, db_url: str) -> None:
    got: list[dict] = []
    listener = Listener(db_url, ["test_chan"], lambda _c, p: got.append(p)).start()
    try:
        with transaction(pool) as conn:
            notify(conn, "test_chan", {"x": Decimal("1.5")})
        eventually(lambda: got)
        assert got == [{"x": "1.5"}]
    finally:
        listener.stop()
