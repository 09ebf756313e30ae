"""Dashboard authentication: one-time codes, server-side sessions, CSRF tokens, lock-out.

* TOTP (RFC 6238, pyotp) from DASHBOARD_TOTP_SECRET; codes of the previous, current and next
  30-second step are accepted, but only for a step later than the last one accepted (kept in
  runtime_state, so every worker and restart agrees): a code works once, and once a later
  step's code was used no earlier one works.
* Chat codes: 6 digits, valid 5 minutes, single use, stored as sha256(salt || code); the code
  exists in clear only in the ``chat_outbox`` row the NotifierActor delivers (and scrubs once
  it tried). The web only queues; :meth:`Authenticator.code_status` reports what happened.
* Sessions: a random 256-bit token in a signed cookie; the database keeps only its sha256,
  so logout and expiry are real. CSRF token = HMAC(secret key, token) (double submit: the
  client reads it from /api/auth/session and echoes it in X-CSRF-Token).
* Lock-out: failed codes are counted per client IP and globally, in the database; past a
  threshold each further failure locks that scope for base * 2^(n - threshold) seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from psycopg_pool import ConnectionPool

from engine.bus.events import SESSIONS_ENDED, publish_event
from engine.commands.auth import TOTP_STATE_KEY  # noqa: F401  (the last accepted TOTP step)
from engine.store.notify import notify
from engine.store.tx import transaction

logger = logging.getLogger(__name__)

CODE_RE = re.compile(r"\d{6}")
MAX_CACHED_SESSIONS = 1024
OUTBOX_CHANNEL = "chat_outbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthPolicy:
    """Tunables of the login flow (all have safe defaults)."""

    totp_secret: str = ""
    chat_channels: tuple[str, ...] = ()
    session_ttl: timedelta = timedelta(hours=12)
    session_idle: timedelta = timedelta(hours=4)
    code_ttl: timedelta = timedelta(minutes=5)
    code_interval: timedelta = timedelta(seconds=30)
    ip_threshold: int = 5
    global_threshold: int = 30
    lock_base_s: float = 30.0
    lock_max_s: float = 3600.0
    #: How long a worker trusts a session it found live without asking the database again
    #: (WEB_SESSION_CACHE_S; 0 = ask on every request). Logout and ``auth logout-all`` end
    #: the session at once in the worker that served them and, through the engine_events
    #: NOTIFY each worker LISTENs to, in the others; this bound only matters if that
    #: notification is lost.
    session_cache_s: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginResult:
    ok: bool
    token: str = ""
    expires_at: datetime | None = None
    retry_after: float = 0.0
    locked: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    id_hash: str
    created_at: datetime
    expires_at: datetime
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRequest:
    """A queued chat code: its web_login_codes id, its chat_outbox rows, a status handle."""

    code_id: int
    outbox_ids: tuple[int, ...]
    handle: str


class CodeRequestRefused(Exception):
    """A chat code cannot be sent now (no channel, lock-out, or asked too soon)."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Authenticator:
    """All authentication state lives in PostgreSQL, so every web worker agrees."""

    def __init__(self, pool: ConnectionPool, secret_key: str, policy: AuthPolicy) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to sign session cookies")
        self._pool = pool
        self._secret = secret_key.encode()
        self._signer = URLSafeSerializer(secret_key, salt="web-session")
        self._request_signer = URLSafeSerializer(secret_key, salt="chat-code-request")
        self.policy = policy
        # cookie value -> (token, monotonic deadline): sessions found live recently
        self._live: dict[str, tuple[str, float]] = {}
        self._live_lock = threading.Lock()

    # ------------------------------------------------------------ cookies and CSRF
    def cookie_value(self, token: str) -> str:
        return self._signer.dumps(token)

    def token_from_cookie(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            token = self._signer.loads(value)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None

    def csrf_token(self, token: str) -> str:
        return hmac.new(self._secret, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, token: str, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_token(token), presented or "")

    # ------------------------------------------------------------ recently live sessions
    def cached_token(self, cookie: str | None) -> str | None:
        """The token of ``cookie`` when its session was found live less than
        ``policy.session_cache_s`` ago (and has not expired since), else None."""
        if not cookie:
            return None
        entry = self._live.get(cookie)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            with self._live_lock:
                self._live.pop(cookie, None)
            return None
        return entry[0]

    def remember(self, cookie: str, token: str, info: SessionInfo) -> None:
        """Trust ``cookie``'s live session for ``session_cache_s`` (never past its expiry)."""
        ttl = self.policy.session_cache_s
        if ttl <= 0:
            return
        left = (info.expires_at - datetime.now(info.expires_at.tzinfo)).total_seconds()
        deadline = time.monotonic() + min(ttl, left)
        with self._live_lock:
            if len(self._live) >= MAX_CACHED_SESSIONS:
                now = time.monotonic()
                for key in [k for k, (_t, d) in self._live.items() if d <= now]:
                    del self._live[key]
                if len(self._live) >= MAX_CACHED_SESSIONS:
                    self._live.clear()
            self._live[cookie] = (token, deadline)

    def forget(self, token: str | None = None) -> None:
        """Stop trusting ``token``'s cached session (every one when ``token`` is None)."""
        with self._live_lock:
            if token is None:
                self._live.clear()
                return
            for key in [k for k, (t, _d) in self._live.items() if t == token]:
                del self._live[key]

    # ------------------------------------------------------------ sessions
    def session(self, token: str | None, conn: Any = None) -> SessionInfo | None:
        """The live session for ``token`` (refreshing last_seen at most once a minute).

        On ``conn`` when given (the request's autocommit read connection: the refresh
        commits by itself), else on a connection of the pool."""
        if not token:
            return None
        if conn is None:
            with self._pool.connection() as own:
                return self.session(token, own)
        id_hash = _sha256(token)
        row = conn.execute(
            "SELECT id_hash, created_at, expires_at, method, last_seen < now() - interval"
            " '60 seconds' AS stale FROM web_sessions WHERE id_hash = %s"
            " AND expires_at > now() AND last_seen > now() - %s",
            (id_hash, self.policy.session_idle)).fetchone()
        if row is None:
            return None
        if row["stale"]:
            conn.execute("UPDATE web_sessions SET last_seen = now() WHERE id_hash = %s",
                         (id_hash,))
        return SessionInfo(id_hash=row["id_hash"], created_at=row["created_at"],
                           expires_at=row["expires_at"], method=row["method"])

    def logout(self, token: str) -> None:
        """End ``token``'s session: in the database, in this worker's cache, and (by the
        NOTIFY sent with the commit) in every other worker's."""
        self.forget(token)
        with transaction(self._pool) as conn:
            conn.execute("DELETE FROM web_sessions WHERE id_hash = %s", (_sha256(token),))
            publish_event(conn, SESSIONS_ENDED, {})

    def open_session(self, ip: str, method: str = "totp") -> str:
        """Create a session without a code (CLI and tests); returns the token."""
        with transaction(self._pool) as conn:
            return self._new_session(conn, ip, method)[0]

    def _new_session(self, conn: Any, ip: str, method: str) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        row = conn.execute(
            "INSERT INTO web_sessions (id_hash, expires_at, client_ip, method)"
            " VALUES (%s, now() + %s, %s, %s) RETURNING expires_at",
            (_sha256(token), self.policy.session_ttl, ip, method)).fetchone()
        conn.execute("DELETE FROM web_sessions WHERE expires_at < now() - interval '1 day'")
        return token, row["expires_at"]

    # ------------------------------------------------------------ lock-out
    def retry_after(self, ip: str) -> float:
        """Seconds until ``ip`` may try again (0 when not locked)."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM max(locked_until) - now())::float AS wait"
                " FROM web_auth_throttle WHERE scope IN (%s, 'global') AND locked_until > now()",
                (f"ip:{ip}",)).fetchone()
        return max(0.0, float(row["wait"] or 0.0))

    def _record_failure(self, conn: Any, ip: str) -> None:
        p = self.policy
        for scope, threshold in ((f"ip:{ip}", p.ip_threshold), ("global", p.global_threshold)):
            conn.execute(
                "INSERT INTO web_auth_throttle AS t (scope, failures, last_failure_at)"
                " VALUES (%(scope)s, 1, now()) ON CONFLICT (scope) DO UPDATE SET"
                "  failures = CASE WHEN t.last_failure_at < now() - interval '1 day'"
                "                  THEN 1 ELSE t.failures + 1 END,"
                "  last_failure_at = now()",
                {"scope": scope})
            conn.execute(
                "UPDATE web_auth_throttle SET locked_until = now() + make_interval(secs =>"
                " least(%(max)s, %(base)s * power(2, failures - %(th)s)))"
                " WHERE scope = %(scope)s AND failures >= %(th)s",
                {"scope": scope, "th": threshold, "base": p.lock_base_s, "max": p.lock_max_s})

    # ------------------------------------------------------------ login
    def login(self, code: str, ip: str) -> LoginResult:
        """Check a 6-digit code (TOTP or chat); on success create a session."""
        wait = self.retry_after(ip)
        if wait > 0:
            return LoginResult(ok=False, retry_after=wait, locked=True,
                               reason="too many wrong codes; try again later")
        with transaction(self._pool) as conn:
            method = self._match_totp(conn, code) or self._match_chat_code(conn, code)
            if method is None:
                self._record_failure(conn, ip)
            else:
                conn.execute("DELETE FROM web_auth_throttle WHERE scope IN (%s, 'global')",
                             (f"ip:{ip}",))
                token, expires_at = self._new_session(conn, ip, method)
        if method is None:
            logger.warning("dashboard login refused for %s: wrong or used code", ip)
            return LoginResult(ok=False, retry_after=self.retry_after(ip),
                               reason="wrong or already used code")
        logger.info("dashboard login from %s by %s code", ip, method)
        return LoginResult(ok=True, token=token, expires_at=expires_at)

    def _match_totp(self, conn: Any, code: str) -> str | None:
        """Accept a code of the previous, current or next 30-second step only when that step
        is later than the last one accepted (see engine.commands.auth.accept_totp, shared
        with chat /confirm)."""
        from engine.commands.auth import accept_totp

        return "totp" if accept_totp(conn, self.policy.totp_secret, code) else None

    def _match_chat_code(self, conn: Any, code: str) -> str | None:
        rows = conn.execute(
            "SELECT id, salt, code_hash FROM web_login_codes"
            " WHERE used_at IS NULL AND expires_at > now() ORDER BY id DESC LIMIT 20").fetchall()
        for row in rows:
            if hmac.compare_digest(_sha256(row["salt"] + code), row["code_hash"]):
                used = conn.execute(
                    "UPDATE web_login_codes SET used_at = now() WHERE id = %s AND used_at IS NULL"
                    " RETURNING id", (row["id"],)).fetchone()
                return "chat" if used else None
        return None

    # ------------------------------------------------------------ chat codes
    def request_code(self, ip: str) -> CodeRequest:
        """Create a chat login code and queue it in chat_outbox (the engine's NotifierActor
        delivers it). Returns the code's row id and a handle for :meth:`code_status`."""
        p = self.policy
        if not p.chat_channels:
            raise CodeRequestRefused(409, "no chat channel is configured (Telegram or Cliq); "
                                          "use the authenticator app code")
        wait = self.retry_after(ip)
        if wait > 0:
            raise CodeRequestRefused(429, "too many wrong codes; wait", wait)
        code = f"{secrets.randbelow(1_000_000):06d}"
        salt = secrets.token_hex(16)
        minutes = int(p.code_ttl.total_seconds() // 60)
        text = (f"Dashboard login code: {code}\nValid {minutes} minutes, single use. "
                f"Requested from {ip}. If this was not you, ignore it.")
        outbox: list[int] = []
        with transaction(self._pool) as conn:
            recent = conn.execute(
                "SELECT extract(epoch FROM max(created_at) + %s - now())::float AS wait"
                " FROM web_login_codes WHERE created_at > now() - %s",
                (p.code_interval, p.code_interval)).fetchone()
            if recent["wait"] is not None and recent["wait"] > 0:
                raise CodeRequestRefused(429, "a code was sent moments ago; check the chat",
                                         float(recent["wait"]))
            row = conn.execute(
                "INSERT INTO web_login_codes (expires_at, salt, code_hash, client_ip)"
                " VALUES (now() + %s, %s, %s, %s) RETURNING id",
                (p.code_ttl, salt, _sha256(salt + code), ip)).fetchone()
            for channel in p.chat_channels:
                out = conn.execute("INSERT INTO chat_outbox (channel, text) VALUES (%s, %s)"
                                   " RETURNING id", (channel, text)).fetchone()
                outbox.append(int(out["id"]))
                notify(conn, OUTBOX_CHANNEL, {"id": out["id"], "channel": channel})
        logger.info("dashboard login code requested from %s; queued for %s", ip,
                    ", ".join(p.chat_channels))
        return CodeRequest(code_id=int(row["id"]), outbox_ids=tuple(outbox),
                           handle=self._request_signer.dumps(outbox))

    def code_status(self, handle: str) -> dict[str, Any] | None:
        """Delivery of a requested chat code, from its chat_outbox rows (None for a handle
        this app did not issue). ``status`` is 'delivered' when any channel delivered it,
        'failed' when every channel failed (each with its ``error``, which never holds the
        code or a channel secret), else 'queued'."""
        try:
            ids = self._request_signer.loads(handle)
        except BadSignature:
            return None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
            return None
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, channel, sent_at, error, now() - created_at > %s AS overdue"
                " FROM chat_outbox WHERE id = ANY(%s) ORDER BY id",
                (self.policy.code_ttl, ids)).fetchall()
        if not rows:
            return None
        channels = []
        for row in rows:
            if row["sent_at"] is not None:
                entry = {"channel": row["channel"], "status": "delivered",
                         "sent_at": row["sent_at"]}
            elif row["error"] is not None:
                entry = {"channel": row["channel"], "status": "failed", "error": row["error"]}
            elif row["overdue"]:
                entry = {"channel": row["channel"], "status": "failed",
                         "error": "not delivered in time (is the engine running?)"}
            else:
                entry = {"channel": row["channel"], "status": "queued"}
            channels.append(entry)
        states = {c["status"] for c in channels}
        status = ("delivered" if "delivered" in states else
                  "failed" if states == {"failed"} else "queued")
        return {"status": status, "channels": channels}
