"""The chat outbox (``chat_outbox``): every chat message is a row, delivered by the engine's
NotifierActor, de-duplicated by ``dedup_key`` and retried until delivered or given up.

Two kinds of rows:

* ``fallback = false`` — bound to one channel (dashboard login codes): tried once, then the
  text is scrubbed whatever happened (it may hold a login code); a row older than five
  minutes is useless and is not sent.
* ``fallback = true`` — notifications and command replies: routed by the channel registry
  (the row's channel first, then the primary, then the others); ``delivered_via`` says which
  one delivered; a failed attempt is retried on the next drain, up to ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from engine.chat.registry import ChannelRegistry, send_on
from engine.notify.channels import ChatError
from engine.store.notify import notify
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)

CHANNEL = "chat_outbox"                  # the NOTIFY channel that wakes the notifier
OUTBOX_MAX_AGE = timedelta(minutes=5)    # a login code is useless after five minutes
DELIVERED_TEXT = "[delivered; text removed]"
UNDELIVERED_TEXT = "[not delivered; text removed]"
MAX_ATTEMPTS = 5
BATCH = 20


def queue(conn: Any, text: str, *, channel: str = "telegram", chat_id: str | None = None,
          dedup_key: str | None = None, silent: bool = False) -> int | None:
    """Queue a routed message (in the caller's transaction). Returns the row id, or None when
    a row with ``dedup_key`` exists already (the message was queued before)."""
    row = conn.execute(
        "INSERT INTO chat_outbox (channel, text, chat_id, fallback, dedup_key, silent)"
        " VALUES (%s, %s, %s, true, %s, %s)"
        " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id",
        (channel, text, chat_id, dedup_key, silent)).fetchone()
    if row is None:
        return None
    notify(conn, CHANNEL, {"id": row["id"], "channel": channel})
    return int(row["id"])


def drain(pool: Any, registry: ChannelRegistry) -> int:
    """Deliver pending rows once each (rows locked: several drains never send one twice).
    Returns how many rows were delivered."""
    delivered = 0
    with pool.connection() as conn, conn.transaction():
        rows = conn.execute(
            "SELECT id, created_at, channel, text, chat_id, fallback, attempts, silent"
            " FROM chat_outbox WHERE sent_at IS NULL AND error IS NULL ORDER BY id"
            " LIMIT %s FOR UPDATE SKIP LOCKED", (BATCH,)).fetchall()
        for row in rows:
            if row["fallback"]:
                delivered += _routed(conn, registry, row)
            else:
                delivered += _bound(conn, registry, row)
    return delivered


def _routed(conn: Any, registry: ChannelRegistry, row: dict[str, Any]) -> int:
    try:
        via = registry.deliver(row["text"], chat_id=row["chat_id"], silent=row["silent"],
                               prefer=row["channel"])
    except ChatError as exc:
        attempts = row["attempts"] + 1
        error = str(exc)[:500] if attempts >= MAX_ATTEMPTS else None
        conn.execute("UPDATE chat_outbox SET attempts = %s, error = %s WHERE id = %s",
                     (attempts, error, row["id"]))
        return 0
    conn.execute("UPDATE chat_outbox SET sent_at = now(), delivered_via = %s,"
                 " attempts = attempts + 1, error = NULL WHERE id = %s", (via, row["id"]))
    return 1


def _bound(conn: Any, registry: ChannelRegistry, row: dict[str, Any]) -> int:
    channel = registry.get(row["channel"])
    error = None
    if channel is None:
        error = f"channel {row['channel']} is not configured in the engine"
    elif now_ist() - row["created_at"] > OUTBOX_MAX_AGE:  # wall clock: rows are real
        error = "expired before delivery"
    else:
        try:
            send_on(channel, row["text"], chat_id=row["chat_id"])
        except Exception as exc:
            error = delivery_error(exc)
    if error is None:
        conn.execute("UPDATE chat_outbox SET sent_at = now(), error = NULL, text = %s,"
                     " delivered_via = %s, attempts = attempts + 1 WHERE id = %s",
                     (DELIVERED_TEXT, row["channel"], row["id"]))
        return 1
    logger.warning("chat outbox row %s not delivered via %s: %s", row["id"], row["channel"],
                   error)
    conn.execute("UPDATE chat_outbox SET sent_at = NULL, error = %s, text = %s,"
                 " attempts = attempts + 1 WHERE id = %s",
                 (error, UNDELIVERED_TEXT, row["id"]))
    return 0


def delivery_error(exc: Exception) -> str:
    """Why a send failed, fit to show on the login page: a ChatError's message names the
    channel and the HTTP status, never its URL or token; anything else only by type."""
    from engine.logsetup import redact

    if isinstance(exc, ChatError):
        return redact(str(exc))[:300]
    return f"{type(exc).__name__} while sending"
