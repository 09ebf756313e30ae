"""Fixtures for the dashboard: an app on the per-test database, logged-in clients, a live server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

import web
from web.api import COOKIE_NAME

SECRET_KEY = "test-secret-key-" + "k" * 32


@pytest.fixture
def totp_secret() -> str:
    return pyotp.random_base32()


@pytest.fixture
def make_app(pool, db_url: str, tmp_path, totp_secret: str) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        config = {"POOL": pool, "DATABASE_URL": db_url, "SECRET_KEY": SECRET_KEY,
                  "DASHBOARD_TOTP_SECRET": totp_secret, "CHAT_CHANNELS": ("telegram",),
                  "VAR_DIR": str(tmp_path / "var"), "LOG_DIR": str(tmp_path / "logs"),
                  "START_BRIDGE": False, "TESTING": True}
        config.update(overrides)
        app = web.create_app(config)
        made.append(app)
        return app

    yield make
    for app in made:
        web.shutdown(app)


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


def login(app: Flask, client: FlaskClient, ip: str = "127.0.0.1") -> str:
    """Give ``client`` a live session; return its CSRF token."""
    auth = web.services_of(app).auth
    token = auth.open_session(ip)
    client.set_cookie(COOKIE_NAME, auth.cookie_value(token))
    return auth.csrf_token(token)


class Api:
    """A logged-in test client that sends the CSRF header on unsafe methods."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = app.test_client()
        self.csrf = login(app, self.client)

    def get(self, path: str, **kw: Any):
        return self.client.get(path, **kw)

    def _unsafe(self, method: str, path: str, json: Any = None, **kw: Any):
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.client.open(path, method=method, json=json, headers=headers, **kw)

    def post(self, path: str, json: Any = None, **kw: Any):
        return self._unsafe("POST", path, json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any):
        return self._unsafe("PUT", path, json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any):
        return self._unsafe("PATCH", path, json, **kw)

    def delete(self, path: str, **kw: Any):
        return self._unsafe("DELETE", path, None, **kw)


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app)


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def session_cookie(self) -> str:
        auth = web.services_of(self.app).auth
        return f"{COOKIE_NAME}={auth.cookie_value(auth.open_session('127.0.0.1'))}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_server(make_app) -> Iterator[LiveServer]:
    server = LiveServer(make_app(START_BRIDGE=True, WS_QUEUE_SIZE=8))
    yield server
    web.shutdown(server.app)
    server.stop()


@pytest.fixture
def chat():
    """A local HTTP server that plays the Telegram Bot API (tests/notify)."""
    from tests.notify.test_channels import ChatServer

    server = ChatServer()
    yield server
    server.close()


@pytest.fixture
def notifier(pool, db_url: str):
    """Start the engine's chat delivery as the engine wires it: a NotifierActor with the given
    channels, woken by LISTEN 'chat_outbox' (the NOTIFY the web sends with each code)."""
    import pykka

    from engine.actors.base import ActorContext
    from engine.actors.directory import Directory
    from engine.actors.notifier import DrainOutbox, NotifierActor
    from engine.clock import RealClock
    from engine.store.notify import Listener

    started: list[Any] = []

    def start(channels: list) -> None:
        ctx = ActorContext(clock=RealClock(), directory=Directory(),
                           services={"pool": pool, "chat_channels": channels})
        ref = NotifierActor.start(supervisor_ref=None, name="notifier", ctx=ctx)
        listener = Listener(db_url, ["chat_outbox"], lambda _c, _p: ref.tell(DrainOutbox()),
                            name="test-outbox-listener").start()
        started.extend([listener, ref])

    yield start
    for item in started:
        item.stop()
    pykka.ActorRegistry.stop_all(timeout=10)
