"""NOTIFY helpers: small JSON payloads between processes (PostgreSQL caps them at 8000 bytes)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from engine.store.pool import _decimal_loads, json_dumps

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 7900
#: How often a listener with nothing to read looks at its stop flag: stop() returns within
#: this (an engine stops its listeners one after another: at 0.5 s each, a shutdown waited
#: ~1.5 s for them).
STOP_POLL_S = 0.1


class PayloadTooLarge(ValueError):
    """A NOTIFY payload would exceed PostgreSQL's limit."""


def encode_payload(payload: dict[str, Any]) -> str:
    text = json_dumps(payload)
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"NOTIFY payload is {len(text.encode())} bytes, limit {MAX_PAYLOAD_BYTES}: "
            "send an id and let the listener read the row"
        )
    return text


def notify(conn: psycopg.Connection[Any], channel: str, payload: dict[str, Any]) -> None:
    """Queue a NOTIFY on ``channel``; delivered when the surrounding transaction commits."""
    conn.execute("SELECT pg_notify(%s, %s)", (channel, encode_payload(payload)))


class Listener:
    """LISTEN on channels from a dedicated autocommit connection in a daemon thread.

    Reconnects with back-off when the connection drops, and calls ``on_reconnect`` after a
    reconnect so the owner can re-read state it may have missed.
    """

    def __init__(
        self,
        dsn: str,
        channels: Iterable[str],
        handler: Callable[[str, dict[str, Any]], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        name: str = "pg-listener",
    ) -> None:
        self._dsn = dsn
        self._channels = tuple(channels)
        self._handler = handler
        self._on_reconnect = on_reconnect
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, wait: float = 10.0) -> Listener:
        self._thread.start()
        if not self._ready.wait(wait):
            raise TimeoutError(f"LISTEN on {self._channels} not ready after {wait}s")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.2
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    for channel in self._channels:
                        conn.execute(f'LISTEN "{channel}"')
                    self._ready.set()
                    if not first and self._on_reconnect is not None:
                        self._on_reconnect()
                    first = False
                    backoff = 0.2
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=STOP_POLL_S):
                            self._dispatch(note.channel, note.payload)
            except psycopg.OperationalError as exc:
                logger.warning("listener %s lost its connection (%s); retrying in %.1fs",
                               self._channels, exc.__class__.__name__, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, channel: str, raw: str) -> None:
        try:
            payload = _decimal_loads(raw) if raw else {}
        except ValueError:
            logger.error("ignoring malformed NOTIFY payload on %s", channel)
            return
        try:
            self._handler(channel, payload)
        except Exception:
            logger.exception("NOTIFY handler for %s failed", channel)
