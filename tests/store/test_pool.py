"""Pool behaviour against a real server: reconnect after every backend is terminated
(``pg_terminate_backend(pid, timeout)`` waits until the backend has gone, as a restarted
server has closed every socket before anyone reconnects)."""

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
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
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



def test_pool_check_sends_nothing_to_the_server(db_url: str, tmp_path) -> None:
    """The checkout check is a local poll: libpq's wire trace stays empty while it runs."""
    from engine.store.pool import check_without_round_trip

    trace = tmp_path / "wire.trace"
    with psycopg.connect(db_url, autocommit=True) as conn, trace.open("w") as sink:
        conn.execute("SELECT 1")
        conn.pgconn.trace(sink.fileno())
        check_without_round_trip(conn)
        conn.pgconn.untrace()
        assert trace.read_text() == ""
        conn.pgconn.trace(sink.fileno())
        conn.execute("SELECT 1")  # the trace does record a real round trip
        conn.pgconn.untrace()
    assert trace.read_text() != ""


def test_pool_discards_a_connection_the_server_closed_while_idle(db_url: str) -> None:
    from engine.store.pool import connection_dropped, open_pool

    pool = open_pool(db_url, min_size=1, max_size=1, name="check-test")
    try:
        with pool.connection() as conn:
            pid = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
            assert not connection_dropped(conn)
        with psycopg.connect(db_url, autocommit=True) as admin:  # waits until it is gone
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        with pool.connection() as conn:  # the check discarded the dead one
            assert conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] != pid
    finally:
        pool.close()
