"""JSON API blueprint (/api): session guard, CSRF check, error handlers, shared helpers.

Reads go through one connection per request (:func:`read_connection`): taken from the
autocommit read pool on first use (by the session lookup or the handler's first
:func:`rows` / :func:`one`), shared by everything the request reads, given back when the
request ends. Autocommit means no BEGIN/COMMIT round trips and nothing of one request's
transaction state can reach the next: every statement is its own transaction, and a
connection still in a transaction when it is given back is rolled back by the pool. A
connection the server dropped while it sat in the pool is noticed without a round trip (its
socket is readable) and replaced; one that fails mid-statement is replaced and the read
retried once. Writes keep using the checked, transactional ``services().pool``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from flask import Blueprint, Response, current_app, g, jsonify, request
from psycopg_pool import ConnectionPool, PoolTimeout

from engine.store.pool import connection_dropped
from web.validate import BadRequest

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api")

COOKIE_NAME = "nifty_session"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Endpoints reachable without a session (and, being pre-session, without CSRF).
PUBLIC_ENDPOINTS = frozenset({"api.health", "api.auth_login", "api.auth_request_code",
                              "api.auth_code_status", "api.auth_session",
                              "api.auth_nginx_check",
                              "api.chat_cliq"})  # authenticated by CLIQ_WEBHOOK_SECRET


def services():
    return current_app.extensions["engine"]


def runtime_settings():
    """This worker's engine.settings.Settings (runtime knobs, audited), made on first use."""
    from engine.settings import Settings

    svc = services()
    with svc.lock:
        if svc.settings is None:
            svc.settings = Settings(svc.pool)
        return svc.settings


def error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def client_ip() -> str:
    return request.remote_addr or "unknown"


T = TypeVar("T")
_READ_CONN = "_read_connection"


def _checkout(pool: ConnectionPool, timeout: float | None) -> psycopg.Connection[Any]:
    """A live connection from ``pool``; dropped ones are closed (the pool replaces them)."""
    for _ in range(pool.max_size + 1):
        conn = pool.getconn(timeout)
        if not connection_dropped(conn):
            return conn
        logger.info("read pool %s: discarding a connection the server closed", pool.name)
        conn.close()
        pool.putconn(conn)
    return pool.getconn(timeout)


def read_connection(timeout: float | None = None) -> psycopg.Connection[Any]:
    """This request's read connection (autocommit), taken on first use, waiting at most
    ``timeout`` seconds (default: the pool's) for one; given back when the request ends."""
    conn = g.get(_READ_CONN)
    if conn is None:
        conn = _checkout(services().read_pool, timeout)
        if not conn.autocommit:  # a transactional pool shared for reads (web.create_app)
            conn.autocommit = True
            g._read_conn_was_transactional = True
        setattr(g, _READ_CONN, conn)
    return conn


def release_read_connection(_exc: BaseException | None = None) -> None:
    """Give the request's read connection back (app-context teardown)."""
    conn = g.pop(_READ_CONN, None)
    if conn is None:
        return
    if g.pop("_read_conn_was_transactional", False) and not conn.closed:
        try:
            conn.autocommit = False
        except psycopg.Error:  # in a transaction or broken: the pool rolls back or drops it
            conn.close()
    services().read_pool.putconn(conn)


def read(work: Callable[[psycopg.Connection[Any]], T], timeout: float | None = None) -> T:
    """``work(conn)`` on the request's read connection; when the connection breaks under it
    (the server went away), once more on a fresh one. Only for reads (and idempotent
    writes): ``work`` may run twice."""
    conn = read_connection(timeout)
    try:
        return work(conn)
    except psycopg.OperationalError:
        if not conn.broken:
            raise
        logger.warning("read connection lost; retrying the read on a new one")
        release_read_connection()
        return work(read_connection(timeout))


@contextmanager
def short_read() -> Iterator[psycopg.Connection[Any]]:
    """A read connection for one block only (long-lived requests such as /ws, which must not
    hold one for their lifetime)."""
    pool = services().read_pool
    conn = _checkout(pool, None)
    transactional = not conn.autocommit
    try:
        conn.autocommit = True
        yield conn
    finally:
        if transactional and not conn.closed:
            try:
                conn.autocommit = False
            except psycopg.Error:
                conn.close()
        pool.putconn(conn)


def session_token() -> str | None:
    """The caller's live session token (cached on ``g``), or None.

    API requests look the session up on their read connection (which the handler then
    reuses); pages and /ws take a connection for the lookup only."""
    if "session_token" not in g:
        auth = services().auth
        cookie = request.cookies.get(COOKIE_NAME)
        token = auth.cached_token(cookie)  # found live in this worker a moment ago
        if token is None and (token := auth.token_from_cookie(cookie)):
            if request.blueprint == bp.name:
                info = read(lambda conn: auth.session(token, conn))
            else:
                with short_read() as conn:
                    info = auth.session(token, conn)
            if info is None:
                token = None
            else:
                auth.remember(cookie, token, info)
        g.session_token = token
    return g.session_token


@bp.before_request
def guard() -> Any:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    token = session_token()
    if token is None:
        return error(401, "not logged in (or the session expired)")
    if request.method in UNSAFE_METHODS and not services().auth.csrf_ok(
            token, request.headers.get(CSRF_HEADER)):
        return error(403, f"missing or wrong {CSRF_HEADER} header (read it from "
                          "/api/auth/session)")
    return None


@bp.errorhandler(BadRequest)
def bad_request(exc: BadRequest) -> Any:
    return error(400, str(exc), field=exc.field)


@bp.errorhandler(404)
def not_found(_exc: Exception) -> Any:
    return error(404, "no such resource")


@bp.errorhandler(405)
def not_allowed(_exc: Exception) -> Any:
    return error(405, "method not allowed")


@bp.errorhandler(Exception)
def unexpected(exc: Exception) -> Any:
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return error(exc.code or 500, exc.description or exc.name)
    if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
        logger.error("database unavailable on %s %s: %s", request.method, request.path, exc)
        return error(503, "the database is unavailable; retry shortly")
    logger.exception("API error on %s %s", request.method, request.path)
    return error(500, "internal error; see the web log")


def rows(sql: str, params: Any = None) -> list[dict[str, Any]]:
    """All rows of a read, on the request's read connection."""
    return read(lambda conn: conn.execute(sql, params).fetchall())


def one(sql: str, params: Any = None) -> dict[str, Any] | None:
    """The first row of a read (None when there is none), on the request's read connection."""
    return read(lambda conn: conn.execute(sql, params).fetchone())


from web.api import (  # noqa: E402,F401
    auth,
    backtest,
    chat,
    control,
    events,
    market,
    orders,
    parity,
    positions,
    reconciliation,
    strategies,
    system,
    trading,
)
