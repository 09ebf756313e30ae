"""Fan-out of engine events to WebSocket clients: a Hub of bounded queues and the WebActor.

One :class:`WebActor` per web process owns a LISTEN connection on 'engine_events' and
'engine_command_results' and publishes each event to the :class:`Hub`. The Hub never blocks:
each client has a bounded queue, and a client whose queue is full is dropped (its socket is
shut down, which also unblocks a handler thread stuck in ``send``) so one slow browser cannot
delay the others. Each WebSocket handler thread is the only writer for its socket.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from engine.bus.commands import RESULTS_CHANNEL
from engine.bus.events import EVENTS_CHANNEL, SESSIONS_ENDED
from engine.store.notify import Listener
from engine.store.pool import json_dumps
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)


class HubClient:
    """One connected socket: its queue, and how to cut it off."""

    def __init__(self, client_id: int, maxsize: int, kill: Callable[[], None]) -> None:
        self.id = client_id
        self.queue: queue.Queue[str] = queue.Queue(maxsize=maxsize)
        self.closed = threading.Event()
        self._kill = kill

    def drop(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self._kill()
        except Exception:  # the socket may already be gone
            logger.debug("client %s: kill failed", self.id, exc_info=True)


class Hub:
    """Thread-safe registry of WebSocket clients with non-blocking publish."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._clients: dict[int, HubClient] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.published = 0
        self.dropped = 0

    def register(self, kill: Callable[[], None], maxsize: int | None = None) -> HubClient:
        client = HubClient(next(self._ids), maxsize or self.maxsize, kill)
        with self._lock:
            self._clients[client.id] = client
        return client

    def unregister(self, client: HubClient) -> None:
        client.closed.set()
        with self._lock:
            self._clients.pop(client.id, None)

    def publish(self, text: str) -> int:
        """Queue ``text`` for every client; drop clients whose queue is full. Returns deliveries."""
        with self._lock:
            clients = list(self._clients.values())
            self.published += 1
        delivered = 0
        for client in clients:
            if client.closed.is_set():
                continue
            try:
                client.queue.put_nowait(text)
                delivered += 1
            except queue.Full:
                logger.warning("websocket client %s is too slow (queue of %d full); dropping it",
                               client.id, client.queue.maxsize)
                with self._lock:
                    self._clients.pop(client.id, None)
                    self.dropped += 1
                client.drop()
        return delivered

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"clients": len(self._clients), "published": self.published,
                    "dropped": self.dropped}

    def close_all(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.drop()


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineEventReceived:
    """A NOTIFY from the engine arrived on ``channel``."""

    channel: str
    payload: dict[str, Any]


class WebActor(pykka.ThreadingActor):
    """Bridges PostgreSQL NOTIFY from the engine into this web process's Hub."""

    use_daemon_thread = True

    def __init__(self, dsn: str, hub: Hub,
                 forget_sessions: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._dsn = dsn
        self._hub = hub
        self._forget_sessions = forget_sessions  # Authenticator.forget: see SESSIONS_ENDED
        self._listener: Listener | None = None

    def on_start(self) -> None:
        self._listener = Listener(self._dsn, [EVENTS_CHANNEL, RESULTS_CHANNEL], self._on_notify,
                                  on_reconnect=self._on_reconnect, name="web-events").start()

    def on_stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self._hub.close_all()

    def _on_notify(self, channel: str, payload: dict[str, Any]) -> None:
        # Listener thread: hand over to the actor's own thread.
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(EngineEventReceived(channel=channel, payload=payload))

    def _on_reconnect(self) -> None:
        # a notification may have been missed while the listener was away: trust no cached
        # session (web.authn.Authenticator.cached_token)
        if self._forget_sessions is not None:
            self._forget_sessions()
        self._on_notify(EVENTS_CHANNEL, {"kind": "reconnected", "data": {}})

    def on_receive(self, message: Any) -> Any:
        match message:
            case EngineEventReceived(channel=channel, payload=payload):
                if channel == RESULTS_CHANNEL:
                    payload = {"kind": "command_result", "data": payload}
                elif payload.get("kind") == SESSIONS_ENDED:
                    if self._forget_sessions is not None:
                        self._forget_sessions()
                    return None
                payload.setdefault("ts", now_ist().isoformat(timespec="milliseconds"))
                try:
                    self._hub.publish(json_dumps(payload))
                except Exception:  # an observer: log and keep going
                    logger.exception("could not publish %s to websocket clients", channel)
                return None
            case _:
                return super().on_receive(message)
