"""One psycopg_pool.ConnectionPool per process.

Connections are checked before they are handed out, so after a server restart the next
query reconnects instead of failing. The check costs no round trip
(:func:`check_without_round_trip`): an idle connection that does not LISTEN has nothing to
read unless the server closed it. Rows come back as dicts, NUMERIC as Decimal, and JSONB
floats as Decimal (money never passes through a binary float on its way out of the store).
"""

from __future__ import annotations

import json
import logging
import select
import threading
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

_decimal_loads = partial(json.loads, parse_float=Decimal)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


json_dumps = partial(json.dumps, default=_json_default, separators=(",", ":"))


def configure_connection(conn: psycopg.Connection[Any]) -> None:
    """Per-connection set-up: JSON with Decimal, timeouts, IST session zone."""
    set_json_loads(_decimal_loads, conn)
    set_json_dumps(json_dumps, conn)
    # configure must leave the connection idle: run in autocommit.
    autocommit = conn.autocommit
    conn.autocommit = True
    conn.execute("SET idle_in_transaction_session_timeout = '60s'")
    conn.execute("SET TIME ZONE 'Asia/Kolkata'")
    conn.autocommit = autocommit


def connection_dropped(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection is already dead, without a round trip: an idle connection
    that does not LISTEN has nothing to read unless the server closed it (a terminated
    backend sends its FATAL error, then end-of-file)."""
    if conn.closed or conn.pgconn.status != psycopg.pq.ConnStatus.OK:
        return True
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def check_without_round_trip(conn: psycopg.Connection[Any]) -> None:
    """The pool's ``check``: refuse a connection the server closed while it sat idle (the
    pool then discards it and hands out another or a new one). ``ConnectionPool.
    check_connection`` would ask the server, one round trip per checkout."""
    if connection_dropped(conn):
        conn.close()  # so the pool discards it instead of handing it out again
        raise psycopg.OperationalError("the server closed this connection while it was idle")


def _reconnect_failed(pool: ConnectionPool) -> None:
    logger.critical("database pool %s could not reconnect; the process cannot work without it",
                    pool.name)


def open_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 8,
    name: str = "engine",
    timeout: float = 30.0,
    reconnect_timeout: float = 300.0,
    autocommit: bool = False,
    checked: bool = True,
) -> ConnectionPool:
    """Open a pool on ``dsn`` and wait until it has its first connections.

    ``checked`` (the default) tests every connection before handing it out
    (:func:`check_without_round_trip`). ``autocommit=True, checked=False`` is the
    dashboard's read pool: every statement is its own transaction and the caller detects a
    dead connection itself (web.api.read_connection)."""
    pool = ConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        kwargs={"row_factory": dict_row, "autocommit": autocommit},
        configure=configure_connection,
        check=check_without_round_trip if checked else None,
        timeout=timeout,
        reconnect_timeout=reconnect_timeout,
        reconnect_failed=_reconnect_failed,
        max_lifetime=3600,
        max_idle=600,
    )
    pool.open()
    try:
        pool.wait(timeout=timeout)
    except Exception:
        pool.close()
        raise
    return pool


_process_pool: ConnectionPool | None = None
_process_lock = threading.Lock()


def get_pool() -> ConnectionPool:
    """Return the process-wide pool, opening it from configuration on first use."""
    global _process_pool
    with _process_lock:
        if _process_pool is None or _process_pool.closed:
            from engine.store.server import database_url

            _process_pool = open_pool(database_url())
        return _process_pool


def close_pool() -> None:
    """Close the process-wide pool (at shutdown)."""
    global _process_pool
    with _process_lock:
        if _process_pool is not None:
            _process_pool.close()
            _process_pool = None
