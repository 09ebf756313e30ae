"""One read connection per API request (web.api.read_connection): shared by the session
lookup and the handler, autocommit, no state carried from one request to the next, and a
connection the server dropped is replaced without failing the request."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from flask import Flask, jsonify
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.store.pool import open_pool
from tests.conftest import eventually
from tests.web.conftest import Api
from web.api import read_connection, rows

READER = "test-web-read"


@pytest.fixture
def read_pool(db_url: str) -> Iterator:
    """The production read pool (autocommit, unchecked), one connection: every request
    reuses the same one, so anything it carried over would show."""
    p = open_pool(make_conninfo(db_url, application_name=READER), min_size=1, max_size=1,
                  name="test-read", autocommit=True, checked=False, timeout=5)
    yield p
    p.close()


@pytest.fixture
def app(make_app, read_pool) -> Flask:
    app = make_app(READ_POOL=read_pool)

    @app.get("/t/dirty")
    def dirty():  # a handler that leaves a transaction open, with transaction-local state
        conn = read_connection()
        conn.execute("BEGIN")
        conn.execute("SELECT set_config('bench.leak', 'leaked', true)")
        return jsonify({"pid": conn.info.backend_pid})

    @app.get("/t/peek")
    def peek():
        conn = read_connection()
        status = conn.info.transaction_status.name
        leak = conn.execute("SELECT current_setting('bench.leak', true) AS v").fetchone()["v"]
        return jsonify({"status": status, "leak": leak, "autocommit": conn.autocommit,
                        "pid": conn.info.backend_pid})

    @app.get("/t/killed-under-me")
    def killed_under_me():  # the server drops the connection between two reads
        conn = read_connection()
        first = conn.info.backend_pid
        with psycopg.connect(app.config["DATABASE_URL"], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        eventually(lambda: _gone(app.config["DATABASE_URL"], first))
        value = rows("SELECT 42 AS x, pg_backend_pid() AS pid")[0]
        return jsonify({"first": first, **value})

    return app


def _gone(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                            (pid,)).fetchone()[0] == 0


def _kill_read_connections(dsn: str) -> list[int]:
    """Terminate the read pool's connections on the server (pg_terminate_backend)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        pids = [r[0] for r in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s", (READER,)).fetchall()]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    for pid in pids:
        eventually(lambda pid=pid: _gone(dsn, pid))
    return pids


def test_one_read_checkout_per_request_shared_by_session_and_handler(app, pool, read_pool):
    api = Api(app)
    for path in ("/api/trades", "/api/pnl/today", "/api/health", "/api/trades?status=open"):
        before_read = read_pool.get_stats().get("requests_num", 0)
        before_write = pool.get_stats().get("requests_num", 0)
        assert api.get(path).status_code == 200, path
        assert read_pool.get_stats().get("requests_num", 0) - before_read == 1, path
        assert pool.get_stats().get("requests_num", 0) == before_write, path  # no write checkout
        assert read_pool.get_stats()["pool_available"] == 1, path  # given back


def test_pages_do_not_keep_a_read_connection(app, read_pool):
    api = Api(app)
    assert api.get("/").status_code in (200, 302)
    assert read_pool.get_stats()["pool_available"] == 1


def test_no_transaction_state_reaches_the_next_request(app, read_pool):
    api = Api(app)
    dirty = api.get("/t/dirty")
    assert dirty.status_code == 200
    peek = api.get("/t/peek").json
    assert peek["pid"] == dirty.json["pid"]  # the same connection (a pool of one)
    assert peek["status"] == "IDLE" and peek["autocommit"] is True
    assert peek["leak"] in ("", None)  # the open transaction was rolled back, not inherited
    assert api.get("/api/trades").status_code == 200


def test_a_failed_statement_leaves_the_connection_usable(app):
    api = Api(app)
    assert api.get("/api/trades?from=2025-02-10&to=2025-02-01").status_code == 400
    assert api.get("/api/trades?limit=oops").status_code == 400
    assert api.get("/t/peek").json["status"] == "IDLE"


def test_connection_killed_in_the_pool_is_replaced_on_the_next_request(app, db_url, caplog):
    api = Api(app)
    before = api.get("/t/peek").json["pid"]
    assert _kill_read_connections(db_url) == [before]
    caplog.set_level(logging.INFO, logger="web.api")
    # the very next requests succeed: the dead connection is noticed (readable socket) and
    # replaced before the session lookup runs on it
    trades = api.get("/api/trades")
    assert trades.status_code == 200 and trades.json["count"] == 0
    health = api.client.get("/api/health")
    assert health.status_code == 200 and health.json["database"] == "ok"
    assert api.get("/t/peek").json["pid"] != before
    said = [r.getMessage() for r in caplog.records if r.name == "web.api"]
    assert any("discarding a connection the server closed" in m for m in said), said
    assert not any("retrying" in m for m in said), said  # found before use, not by failing


def test_connection_killed_mid_request_is_retried_once(app):
    api = Api(app)
    body = api.get("/t/killed-under-me").json
    assert body["x"] == 42 and body["pid"] != body["first"]
    assert api.get("/api/pnl/today").status_code == 200


def test_database_refusing_connections_gives_503_then_recovers(make_app, db_url, admin_url):
    reads = open_pool(db_url, min_size=1, max_size=1, name="test-read-down", autocommit=True,
                      checked=False, timeout=2)
    try:
        app = make_app(READ_POOL=reads)
        api = Api(app)
        name = conninfo_to_dict(db_url)["dbname"]
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = %s", (name,))
            down = api.get("/api/trades")
            assert down.status_code == 503 and "database is unavailable" in down.json["error"]
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        # the pool reconnects by itself (psycopg_pool, with back-off): no restart needed
        up = eventually(lambda: (r := api.client.get("/api/health")).status_code == 200 and r,
                        timeout=20, interval=0.2)
        assert up.json["database"] == "ok"
        api2 = Api(app)  # the old session row survived; a new login works as well
        assert api2.get("/api/trades").status_code == 200
    finally:
        reads.close()


def test_pnl_today_in_one_statement_sums_closed_and_open(app, pool):
    with pool.connection() as conn:
        conn.execute("INSERT INTO runtime_state (key, value) VALUES ('engine_heartbeat',"
                     " jsonb_build_object('engine_time', '2025-02-03T11:00:00+05:30'))"
                     " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()")
        for tag, pnl, charges in (("A", "150.50", "20.10"), ("B", "-40.25", "19.90")):
            conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                         " closed_at, quantity, gross_pnl, realized_pnl, charges, exit_reason) VALUES"
                         " ('2025-02-03', %s, 'IC', 'paper', now(), now(), 75, 0, %s, %s, 'tp')",
                         (tag, pnl, charges))
        conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                     " closed_at, quantity, gross_pnl, realized_pnl, charges, exit_reason) VALUES"
                     " ('2025-01-31', 'OLD', 'IC', 'paper', now(), now(), 75, 0, 999, 1, 'tp')")
        for tag, payload in (("O1", '{"mtm": 12.5}'), ("O2", '{"mtm": "bad"}'), ("O3", "{}")):
            conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                         " quantity, payload) VALUES (%s, 'DC', 'paper', '2025-02-03', now(), 75,"
                         " %s)", (tag, payload))
    body = Api(app).get("/api/pnl/today").json
    assert body["date"] == "2025-02-03"
    assert (Decimal(body["realized"]), Decimal(body["unrealized"]), Decimal(body["total"])) \
        == (Decimal("110.25"), Decimal("12.5"), Decimal("122.75"))
    assert (body["trades_closed"], body["wins"], body["losses"], body["open_positions"]) \
        == (2, 1, 1, 3)
    assert Decimal(body["charges"]) == Decimal("40.00")
