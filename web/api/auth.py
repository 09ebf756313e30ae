"""/api/auth/*: login by one-time code, session info, logout, nginx auth_request check."""

from __future__ import annotations

import math
from typing import Any

from flask import current_app, jsonify

from web.api import COOKIE_NAME, bp, client_ip, error, services, session_token
from web.authn import CODE_RE, CodeRequestRefused
from web.security import safe_next
from web.validate import BadRequest, Str, check, request_json


def _set_cookie(response: Any, value: str, max_age: int | None) -> None:
    response.set_cookie(COOKIE_NAME, value, max_age=max_age, httponly=True, samesite="Strict",
                        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")), path="/")


def _retry(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


@bp.post("/auth/login")
def auth_login() -> Any:
    """Exchange a 6-digit code (authenticator app or chat) for a session cookie.

    ``next`` (optional) is where the page wants to go afterwards; the answer's ``next`` is it
    when it is one of the dashboard's pages, else ``/`` (web.security.safe_next)."""
    data = check(request_json(), {"code": Str(max_len=6, min_len=6),
                                  "next": Str(optional=True, default="/", min_len=0,
                                              max_len=2000)})
    if not CODE_RE.fullmatch(data["code"]):
        raise BadRequest("code", "expected 6 digits")
    auth = services().auth
    result = auth.login(data["code"], client_ip())
    if not result.ok:
        if result.retry_after > 0:
            body, status = error(429 if result.locked else 401, result.reason,
                                 retry_after=math.ceil(result.retry_after))
            return body, status, _retry(result.retry_after)
        return error(401, result.reason)
    response = jsonify({"authenticated": True, "csrf_token": auth.csrf_token(result.token),
                        "expires_at": result.expires_at, "next": safe_next(data["next"])})
    ttl = int(auth.policy.session_ttl.total_seconds())
    _set_cookie(response, auth.cookie_value(result.token), ttl)
    return response


@bp.post("/auth/request-code")
def auth_request_code() -> Any:
    """Queue a one-time login code for the configured chat channel(s).

    The web only queues it (chat_outbox); the engine's notifier delivers it. The answer says
    so (``status: queued``) with a ``request_id`` for /api/auth/code-status/<request_id>,
    which tells whether it was delivered or why not."""
    request_json()  # JSON only: a cross-site form post cannot trigger it
    try:
        queued = services().auth.request_code(client_ip())
    except CodeRequestRefused as exc:
        body, status = error(exc.status, str(exc), retry_after=math.ceil(exc.retry_after))
        return body, status, (_retry(exc.retry_after) if exc.retry_after else {})
    minutes = int(services().auth.policy.code_ttl.total_seconds() // 60)
    return jsonify({"status": "queued", "request_id": queued.handle,
                    "status_url": f"/api/auth/code-status/{queued.handle}",
                    "channels": list(services().auth.policy.chat_channels),
                    "valid_minutes": minutes}), 202


@bp.get("/auth/code-status/<request_id>")
def auth_code_status(request_id: str) -> Any:
    """Whether a requested chat code was delivered: queued, delivered or failed (with why)."""
    status = services().auth.code_status(request_id)
    if status is None:
        return error(404, "no such code request")
    return jsonify(status)


@bp.get("/auth/session")
def auth_session() -> Any:
    """Whether the caller is logged in; the CSRF token to echo in X-CSRF-Token."""
    auth = services().auth
    token = session_token()
    methods = ["totp"] if auth.policy.totp_secret else []
    if auth.policy.chat_channels:
        methods.append("chat")
    if token is None:
        return jsonify({"authenticated": False, "login_methods": methods})
    info = auth.session(token)
    return jsonify({"authenticated": True, "csrf_token": auth.csrf_token(token),
                    "expires_at": info.expires_at if info else None, "login_methods": methods})


@bp.post("/auth/logout")
def auth_logout() -> Any:
    token = session_token()
    if token:
        services().auth.logout(token)
    response = jsonify({"authenticated": False})
    _set_cookie(response, "", 0)
    return response


@bp.get("/auth/nginx-check")
def auth_nginx_check() -> Any:
    """For nginx ``auth_request``: 200 with a live session, 401 without (no body needed)."""
    if session_token() is None:
        return "", 401
    return "", 200
