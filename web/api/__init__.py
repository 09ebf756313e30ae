"""JSON API blueprint (/api): session guard, CSRF check, error handlers, shared helpers."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

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


def error(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": message, **extra}), status


def client_ip() -> str:
    return request.remote_addr or "unknown"


def session_token() -> str | None:
    """The caller's live session token (cached on ``g``), or None."""
    if "session_token" not in g:
        auth = services().auth
        token = auth.token_from_cookie(request.cookies.get(COOKIE_NAME))
        g.session_token = token if token and auth.session(token) is not None else None
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
    logger.exception("API error on %s %s", request.method, request.path)
    return error(500, "internal error; see the web log")


def rows(sql: str, params: Any = None) -> list[dict[str, Any]]:
    with services().pool.connection() as conn:
        return conn.execute(sql, params).fetchall()


def one(sql: str, params: Any = None) -> dict[str, Any] | None:
    with services().pool.connection() as conn:
        return conn.execute(sql, params).fetchone()


from web.api import auth, backtest, chat, control, events, orders, system, trading  # noqa: E402,F401
