"""The dashboard: Flask app factory, JSON API, HTML pages and the live WebSocket.

Run under gunicorn (``gunicorn -c web/gunicorn.conf.py "web:create_app()"`` or
``python -m engine web``). Each worker process builds its own app: two connection pools (the
checked, transactional ``pool`` for writes, and the autocommit ``read_pool`` from which each
request takes at most one connection for its session lookup and its reads, see
:func:`web.api.read_connection`), an :class:`~web.authn.Authenticator`, a :class:`~web.hub.Hub`
and one :class:`~web.hub.WebActor` that LISTENs for engine events.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from psycopg_pool import ConnectionPool

from web.authn import Authenticator, AuthPolicy
from web.hub import Hub, WebActor
from web.security import SecurityHeaders

logger = logging.getLogger(__name__)

__all__ = ["WebServices", "create_app", "services_of", "shutdown", "shutdown_all"]


@dataclass(slots=True)
class WebServices:
    """Per-app services, kept in ``app.extensions['engine']``."""

    pool: ConnectionPool
    dsn: str
    auth: Authenticator
    hub: Hub
    log_dir: Path
    engine_log_dir: Path | None = None  # default: log_dir
    owns_pool: bool = False
    read_pool: ConnectionPool | None = None  # autocommit, unchecked: web.api.read_connection
    owns_read_pool: bool = False
    actor: Any = None
    settings: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    health_rows: tuple[float, list[Any]] | None = None  # (monotonic, rows): web.api.system


_apps: list[Flask] = []
#: Connections of a worker's read pool: one per request in flight that reads the database
#: (the rest wait for one); grown on demand, shrunk after max_idle.
READ_POOL_SIZE = 10


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the dashboard app. ``config`` overrides the environment (see web.appconfig)."""
    from web.appconfig import build_config
    from web.jsonutil import ApiJSONProvider

    app = Flask(__name__)
    app.json_provider_class = ApiJSONProvider
    app.json = ApiJSONProvider(app)
    app.config.update(build_config(config))
    app.config["ALLOWED_ORIGINS"] = _allowed_origins(app.config.get("ALLOWED_ORIGINS") or ())
    if app.config.get("SETUP_LOGGING"):
        from engine.logsetup import setup_logging

        setup_logging(app.config["LOG_LEVEL"], Path(app.config["LOG_DIR"]), filename="web.log")
    app.wsgi_app = SecurityHeaders(BodyLimit(app.wsgi_app, app),  # type: ignore[method-assign]
                                   app.static_url_path or "/static")
    if app.config.get("TRUST_PROXY"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]

    pool = app.config.get("POOL")
    owns = pool is None
    if pool is None:
        from engine.store.pool import open_pool

        pool = open_pool(app.config["DATABASE_URL"], min_size=1, max_size=10, name="web")
    dsn = app.config.get("DATABASE_URL") or pool.conninfo
    # A pool given without a READ_POOL (tests, embedding) serves the reads too: its
    # connections are switched to autocommit for the request (web.api.read_connection).
    read_pool = app.config.get("READ_POOL") or (pool if not owns else None)
    owns_read = read_pool is None
    if read_pool is None:
        from engine.store.pool import open_pool

        read_pool = open_pool(dsn, min_size=1, max_size=READ_POOL_SIZE, name="web-read",
                              autocommit=True, checked=False)
    policy = app.config.get("AUTH_POLICY") or AuthPolicy()
    policy = AuthPolicy(**{**{f: getattr(policy, f) for f in policy.__dataclass_fields__},
                           "totp_secret": app.config.get("DASHBOARD_TOTP_SECRET") or "",
                           "session_cache_s": float(app.config["SESSION_CACHE_S"]),
                           "chat_channels": tuple(app.config.get("CHAT_CHANNELS") or ())})
    services = WebServices(pool=pool, dsn=dsn, hub=Hub(int(app.config["WS_QUEUE_SIZE"])),
                           auth=Authenticator(pool, app.config["SECRET_KEY"], policy),
                           log_dir=Path(app.config["LOG_DIR"]),
                           engine_log_dir=Path(app.config.get("ENGINE_LOG_DIR")
                                               or app.config["LOG_DIR"]),
                           owns_pool=owns, read_pool=read_pool, owns_read_pool=owns_read)
    app.extensions["engine"] = services

    from web import api, docs, views, ws

    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(ws.bp)
    from web.api import metrics as metrics_api  # /metrics (Prometheus), outside /api

    app.register_blueprint(metrics_api.bp)
    ws.sock.init_app(app)
    app.session_interface = _NoFlaskSession()
    app.register_error_handler(404, _not_found)
    app.register_error_handler(413, _too_large)
    app.teardown_appcontext(api.release_read_connection)

    if app.config.get("START_BRIDGE", True):
        services.actor = WebActor.start(dsn, services.hub, services.auth.forget)
    _apps.append(app)
    return app


class _NoFlaskSession(SecureCookieSessionInterface):
    """Sessions are server-side (web.authn); Flask's signed-cookie session is unused, so it
    is neither decoded nor signed on every request (flask.session is a NullSession)."""

    def open_session(self, app: Flask, request: Any) -> Any:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        return None


def _allowed_origins(values: Any) -> tuple[str, ...]:
    from engine.config import parse_origin

    out = []
    for value in ([values] if isinstance(values, str) else values):
        origin = parse_origin(str(value).strip())
        if origin is None:
            raise ValueError(f"ALLOWED_ORIGINS: {value!r} is not an origin "
                             "(scheme://host[:port])")
        out.append(origin)
    return tuple(out)


def _not_found(exc: Exception) -> Any:
    from flask import jsonify, request

    if request.path.startswith("/api/"):
        return jsonify({"error": f"no such resource {request.path}"}), 404
    return exc


def _limit_text(limit: int | None) -> str:
    return f"the limit is {limit} bytes (WEB_MAX_BODY_BYTES)"


class BodyLimit:
    """WSGI middleware: a body declared larger than the app's MAX_CONTENT_LENGTH gets 413
    JSON before a byte of it is read, before Flask builds a request and before the session
    check (nobody needs a bigger body). A chunked body that grows past the limit while it
    is read is Flask's 413 (:func:`_too_large`)."""

    def __init__(self, wsgi_app: Any, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.config = app.config

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        declared = environ.get("CONTENT_LENGTH")
        limit = self.config.get("MAX_CONTENT_LENGTH")
        if declared and limit is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1  # werkzeug reads a malformed Content-Length as none
            if length > limit:
                body = json.dumps({"error": f"request body of {length} bytes is too large; "
                                            + _limit_text(limit), "field": "body"}).encode()
                # (no Connection header: WSGI forbids hop-by-hop headers; gunicorn drains at
                # most 64 KiB of the unread body for 5 s, then closes the connection)
                start_response("413 REQUEST ENTITY TOO LARGE",
                               [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))])
                return [body]
        return self.wsgi_app(environ, start_response)


def _too_large(_exc: Exception) -> Any:
    # a chunked body (no Content-Length) that grows past the limit while it is read
    from flask import current_app, jsonify

    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    return jsonify({"error": "request body is too large; " + _limit_text(limit),
                    "field": "body"}), 413


def services_of(app: Flask) -> WebServices:
    return app.extensions["engine"]


def shutdown(app: Flask) -> None:
    """Stop the WebActor, close sockets and (if the app opened it) the pool."""
    services = app.extensions.get("engine")
    if services is None:
        return
    if services.actor is not None:
        services.actor.stop(timeout=10)
        services.actor = None
    services.hub.close_all()
    if services.settings is not None:
        services.settings.close()
    if services.owns_pool:
        services.pool.close()
    if services.owns_read_pool and services.read_pool is not None:
        services.read_pool.close()
    if app in _apps:
        _apps.remove(app)


def shutdown_all() -> None:
    for app in list(_apps):
        shutdown(app)


atexit.register(shutdown_all)
