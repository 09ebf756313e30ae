"""Telegram Bot API over ``requests``: sendMessage (escaped, split, rate-limited, 429-aware)
and getUpdates long polling with the offset kept in PostgreSQL and one poller per bot token.

The bot token is a secret: it is registered for log redaction, the URL holding it is never
logged, errors name the method and the HTTP status only, and the advisory-lock key and the
offset's runtime_state key are derived from a hash of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import requests
from psycopg.types.json import Jsonb

from engine.notify.channels import ChatError
from engine.redact import register_secret

logger = logging.getLogger(__name__)

MAX_MESSAGE = 4096          # Telegram's limit on one message's text
MAX_RETRIES = 3             # attempts per message part (429s wait retry_after and do not count)
MAX_RETRY_AFTER = 60.0      # never wait longer than this on one 429
PER_CHAT_INTERVAL = 1.0     # Telegram: about one message per second per chat
GLOBAL_PER_SECOND = 25      # Telegram: about 30 messages per second per bot


class RateLimitExceeded(ChatError):
    """Telegram kept answering 429."""


def escape(text: str) -> str:
    """Text safe for parse_mode=HTML (only &, < and > are special there)."""
    return html.escape(text, quote=False)


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """``text`` in parts of at most ``limit`` characters, cut at a line break when one is in
    the last half of the part, else hard. Empty text is one empty part."""
    if limit < 2:
        raise ValueError("limit: expected at least 2 characters")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", limit // 2, limit)
        if cut <= 0:
            parts.append(rest[:limit])
            rest = rest[limit:]
        else:
            parts.append(rest[:cut])
            rest = rest[cut + 1:]
    parts.append(rest)
    return parts


def escaped_parts(text: str) -> list[str]:
    """``text`` split into parts of at most 4096 characters AFTER HTML escaping (escaping can
    grow a part up to five times: such a part is split again, finer)."""
    out: list[str] = []
    for part in split_message(text, MAX_MESSAGE):
        escaped = escape(part)
        if len(escaped) <= MAX_MESSAGE:
            out.append(escaped)
        else:
            out.extend(escape(p) for p in split_message(part, MAX_MESSAGE // 5))
    return out


def token_hash(token: str) -> str:
    """A short, stable, non-secret name for a bot token."""
    return hashlib.sha256(b"telegram-bot:" + token.encode()).hexdigest()[:16]


def lock_key(token: str) -> int:
    """The PostgreSQL advisory-lock key (signed 64-bit) of the poller of ``token``."""
    digest = hashlib.sha256(b"telegram-poller:" + token.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RateLimiter:
    """At most one message per ``per_chat`` seconds to a chat and ``global_rate`` per second
    overall; :meth:`wait` sleeps until the next send is allowed."""

    def __init__(self, per_chat: float = PER_CHAT_INTERVAL, global_rate: int = GLOBAL_PER_SECOND,
                 *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._per_chat = per_chat
        self._global_gap = 1.0 / global_rate if global_rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._last_chat: dict[str, float] = {}
        self._last_any = float("-inf")
        self._lock = threading.Lock()

    def wait(self, chat_id: str) -> float:
        """Block until ``chat_id`` may get a message; returns the seconds slept."""
        with self._lock:
            now = self._clock()
            ready = max(self._last_chat.get(chat_id, float("-inf")) + self._per_chat,
                        self._last_any + self._global_gap, now)
            pause = ready - now
            if pause > 0:
                self._sleep(pause)
            self._last_chat[chat_id] = self._last_any = ready
            return max(pause, 0.0)


class TelegramClient:
    """The two Bot API methods the engine uses, against ``api_base`` (tests: a local server)."""

    name = "telegram"
    supports_targets = True

    def __init__(self, api_base: str, bot_token: str, default_chat_id: str = "", *,
                 timeout: float = 10.0, limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None) -> None:
        if not bot_token:
            raise ValueError("bot_token: required for Telegram")
        register_secret(bot_token)
        self._base = f"{api_base.rstrip('/')}/bot{bot_token}"
        self.token_hash = token_hash(bot_token)
        self.lock_key = lock_key(bot_token)
        self.default_chat_id = default_chat_id
        self._timeout = timeout
        self._limiter = limiter or RateLimiter(sleep=sleep)
        self._sleep = sleep
        self._session = session or requests.Session()

    # ------------------------------------------------------------ low level
    def _call(self, method: str, body: dict[str, Any], timeout: float) -> tuple[int, dict]:
        try:
            r = self._session.post(f"{self._base}/{method}", json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise ChatError(f"telegram unreachable: {type(exc).__name__}") from None
        try:
            data = r.json()
        except ValueError:
            data = {}
        return r.status_code, data if isinstance(data, dict) else {}

    # ------------------------------------------------------------ sending
    def send(self, text: str, *, chat_id: str | None = None, silent: bool = False) -> int:
        """Send ``text`` (plain text: HTML-escaped here) to ``chat_id`` (default chat when
        None), in parts of at most 4096 characters. Returns the number of parts sent; raises
        ChatError when a part could not be delivered after the retries."""
        target = str(chat_id or self.default_chat_id)
        if not target:
            raise ChatError("telegram: no chat id to send to (TELEGRAM_CHAT_ID)")
        parts = escaped_parts(text)
        for part in parts:
            self._send_part(target, part, silent)
        return len(parts)

    def _send_part(self, chat_id: str, text: str, silent: bool) -> None:
        body = {"chat_id": chat_id, "text": text, "parse_mode": "HTML",
                "disable_web_page_preview": True, "disable_notification": silent}
        failures, waits = 0, 0
        while True:
            self._limiter.wait(chat_id)
            try:
                status, data = self._call("sendMessage", body, self._timeout)
            except ChatError:
                failures += 1
                if failures >= MAX_RETRIES:
                    raise
                self._sleep(min(2.0 ** failures * 0.25, 5.0))
                continue
            if status == 200 and data.get("ok"):
                return
            if status == 429:
                waits += 1
                retry = (data.get("parameters") or {}).get("retry_after", 1)
                if waits > MAX_RETRIES:
                    raise RateLimitExceeded(f"telegram rate limit: HTTP 429 {waits} times")
                pause = min(float(retry), MAX_RETRY_AFTER)
                logger.warning("telegram asked to wait %.0f s (429); waiting", pause)
                self._sleep(pause)
                continue
            description = str(data.get("description", ""))[:200]
            if status >= 500:
                failures += 1
                if failures < MAX_RETRIES:
                    self._sleep(min(2.0 ** failures * 0.25, 5.0))
                    continue
            raise ChatError(f"telegram refused the message: HTTP {status} {description}".strip())

    # ------------------------------------------------------------ receiving
    def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        """One getUpdates long poll (``timeout`` seconds on the server)."""
        body: dict[str, Any] = {"timeout": timeout, "allowed_updates": ["message"]}
        if offset is not None:
            body["offset"] = offset
        status, data = self._call("getUpdates", body, timeout + 10)
        if status == 429:
            retry = float((data.get("parameters") or {}).get("retry_after", 1))
            self._sleep(min(retry, MAX_RETRY_AFTER))
            return []
        if status != 200 or not data.get("ok"):
            raise ChatError(f"telegram getUpdates failed: HTTP {status} "
                            f"{str(data.get('description', ''))[:200]}".strip())
        result = data.get("result") or []
        return [u for u in result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]


# ---------------------------------------------------------------- polling
def offset_key(client: TelegramClient) -> str:
    return f"telegram_offset:{client.token_hash}"


def load_offset(conn: Any, client: TelegramClient) -> int | None:
    row = conn.execute("SELECT value FROM runtime_state WHERE key = %s",
                       (offset_key(client),)).fetchone()
    return int(row["value"]["offset"]) if row and "offset" in row["value"] else None


def save_offset(conn: Any, client: TelegramClient, offset: int) -> None:
    """Store the next update id to ask for (never moves backwards)."""
    conn.execute(
        "INSERT INTO runtime_state AS s (key, value, updated_at) VALUES (%s, %s, now())"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
        " WHERE (s.value->>'offset')::bigint < (EXCLUDED.value->>'offset')::bigint",
        (offset_key(client), Jsonb({"offset": offset})))


class TelegramPoller:
    """Long-polls getUpdates and hands each update to ``handle(conn, update)`` inside the
    transaction that also stores the next offset: an update is handled exactly once across
    restarts (a crash before the commit leaves the offset, so it is fetched and handled again;
    the handler's own writes in that transaction roll back with it).

    Only the holder of the bot token's advisory lock polls (:meth:`acquire`); a second engine
    with the same token logs that and does not poll."""

    def __init__(self, dsn: str, pool: Any, client: TelegramClient,
                 handle: Callable[[Any, dict[str, Any]], None], *, poll_timeout: int = 30,
                 idle: Callable[[], None] | None = None) -> None:
        self._dsn, self._pool, self.client = dsn, pool, client
        self._handle, self._idle = handle, idle
        self.poll_timeout = poll_timeout
        self._lock_conn: psycopg.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the lock
    def acquire(self) -> bool:
        """Take the bot's advisory lock on a connection of its own (held while polling)."""
        if self._lock_conn is not None:
            return True
        conn = psycopg.connect(self._dsn, autocommit=True)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.client.lock_key,)).fetchone()
        if not got[0]:
            conn.close()
            logger.warning("telegram: another engine already polls this bot (token %s...); "
                           "this one only sends", self.client.token_hash[:6])
            return False
        self._lock_conn = conn
        return True

    def release(self) -> None:
        if self._lock_conn is not None:
            self._lock_conn.close()  # closing the session releases the lock
            self._lock_conn = None

    @property
    def holds_lock(self) -> bool:
        return self._lock_conn is not None

    def _lock_alive(self) -> bool:
        """Whether the lock's session still exists (a database restart ends it, and with it
        the lock: another engine may have taken over, so stop until re-acquired)."""
        if self._lock_conn is None:
            return False
        try:
            self._lock_conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            logger.warning("telegram: lost the poller lock's database session; re-acquiring")
            with contextlib.suppress(Exception):
                self._lock_conn.close()
            self._lock_conn = None
            return False

    # ------------------------------------------------------------ polling
    def poll_once(self) -> int:
        """One getUpdates round: handle each update and advance the offset. Returns how many
        updates were handled. Needs the lock."""
        if not self.holds_lock:
            raise RuntimeError("telegram poller: poll_once without the bot's lock")
        with self._pool.connection() as conn:
            offset = load_offset(conn, self.client)
        updates = self.client.get_updates(offset, self.poll_timeout)
        handled = 0
        for update in sorted(updates, key=lambda u: u["update_id"]):
            uid = update["update_id"]
            if offset is not None and uid < offset:
                continue  # the server resent one we already confirmed
            with self._pool.connection() as conn, conn.transaction():
                self._handle(conn, update)
                save_offset(conn, self.client, uid + 1)
            handled += 1
            offset = uid + 1
        return handled

    def start(self) -> TelegramPoller:
        self._thread = threading.Thread(target=self._run, name="telegram-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.release()

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            if not self._lock_alive() and not self.acquire():
                self._stop.wait(60.0)  # try again later: the other engine may stop
                continue
            try:
                handled = self.poll_once()
                backoff = 1.0
                if handled == 0 and self.poll_timeout < 1:
                    self._stop.wait(0.2)  # short polls (tests): do not spin
            except ChatError as exc:
                logger.warning("telegram poll failed: %s; retrying in %.0f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
            except Exception:
                logger.exception("telegram poll: unexpected error")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
            if self._idle is not None:
                try:
                    self._idle()
                except Exception:
                    logger.exception("chat follow-ups failed")
