"""Live events from the engine to every web process: NOTIFY 'engine_events' with small JSON.

Payload: ``{"kind": ..., "ts": ISO-8601, "data": {...}}``, under PostgreSQL's 8000-byte
limit. An event that would not fit is not sent whole: its data is replaced by
``{"truncated": true, "bytes": n}`` (the dashboard re-reads the tables), or, with
``strict=True``, :class:`EventTooLarge` is raised.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.store.notify import MAX_PAYLOAD_BYTES, notify
from engine.store.pool import json_dumps
from engine.timeutil import IST, now_ist

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "engine_events"
EVENT_KINDS = frozenset({
    "position_opened", "position_closed", "mtm", "risk_paused", "risk_resumed",
    "actor_restarted", "backtest_progress", "heartbeat", "entry_denied", "order_rejected",
    "alert",  # an AlertRaised: the text the chat channels get (holds, reconciliation, ...)
    "sessions_ended",  # dashboard sessions were ended: web workers drop their cached ones
})
HEARTBEAT_KEY = "engine_heartbeat"
#: dashboard sessions were ended (logout, ``auth logout-all``): every web worker drops the
#: sessions it trusted without asking the database (web.authn.Authenticator.cached_token)
SESSIONS_ENDED = "sessions_ended"


class EventTooLarge(ValueError):
    """An event payload does not fit in one NOTIFY."""


def build_event(kind: str, data: Mapping[str, Any], *, now: datetime | None = None,
                strict: bool = False) -> dict[str, Any]:
    """Return the NOTIFY payload for an event, checked against the kinds and the size limit."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {sorted(EVENT_KINDS)}")
    if not isinstance(data, Mapping):
        raise ValueError(f"event {kind}: data must be a mapping, got {type(data).__name__}")
    ts = (now or now_ist()).astimezone(IST).isoformat(timespec="milliseconds")
    event: dict[str, Any] = {"kind": kind, "ts": ts, "data": dict(data)}
    size = len(json_dumps(event).encode())
    if size > MAX_PAYLOAD_BYTES:
        if strict:
            raise EventTooLarge(f"event {kind} is {size} bytes, limit {MAX_PAYLOAD_BYTES}")
        logger.warning("event %s is %d bytes; sending it truncated", kind, size)
        event["data"] = {"truncated": True, "bytes": size}
    return event


def publish_event(conn_or_pool: psycopg.Connection[Any] | ConnectionPool, kind: str,
                  data: Mapping[str, Any], *, strict: bool = False) -> dict[str, Any]:
    """NOTIFY 'engine_events' with ``{kind, ts, data}``; returns the payload sent.

    With a connection, the NOTIFY is delivered when its transaction commits (so an event can
    ride in the same transaction as the state change it announces); with a pool, at once.
    """
    event = build_event(kind, data, strict=strict)
    if isinstance(conn_or_pool, ConnectionPool):
        with conn_or_pool.connection() as conn:
            notify(conn, EVENTS_CHANNEL, event)
    else:
        notify(conn_or_pool, EVENTS_CHANNEL, event)
    return event


def write_heartbeat(pool: ConnectionPool, now: datetime, engine_time: datetime | None = None,
                    *, simulated: bool | None = None) -> None:
    """Record the engine heartbeat (runtime_state 'engine_heartbeat' = {ts, pid, engine_time,
    clock}) and publish it.

    Called by the engine on each monitor tick; /api/health reports its age and the engine's
    clock (``clock`` is "simulated" or "real"; without ``simulated`` it is inferred from how
    far ``engine_time`` is from ``now``).
    """
    if now.tzinfo is None:
        raise ValueError("write_heartbeat: now must be timezone-aware")
    value = {"ts": now.astimezone(IST).isoformat(timespec="seconds"), "pid": os.getpid(),
             # the engine clock (simulated or real): the dashboard's "today" is its date
             "engine_time": (engine_time or now).astimezone(IST).isoformat(timespec="seconds")}
    if simulated is None:
        simulated = engine_time is not None and abs((engine_time - now).total_seconds()) > 120
    value["clock"] = "simulated" if simulated else "real"
    with pool.connection() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO runtime_state (key, value, updated_at) VALUES (%s, %s, now())"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            (HEARTBEAT_KEY, Jsonb(value)))
        notify(conn, EVENTS_CHANNEL, build_event("heartbeat", value, now=now))
