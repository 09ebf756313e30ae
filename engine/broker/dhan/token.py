"""Access-token lifecycle helpers: JWT expiry, renew, TOTP mint, persistence, TokenManager.

The TokenActor is a thin wrapper around :class:`TokenManager`: on every clock tick (and on a
reported 401) it calls :meth:`TokenManager.check` and publishes the result.

Persistence: runtime_state row ``dhan_token`` holds ``{"access_token", "expires_at",
"source", "updated_at", "last_mint_at"}``; the raw token lives only in ``access_token``
and is never logged. Every save sends NOTIFY ``dhan_token`` with no token in the payload.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import pyotp
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.config import DEFAULT_AUTH_BASE
from engine.broker.dhan.errors import DhanError, register_secret
from engine.broker.dhan.models import TokenGrant
from engine.store.notify import notify
from engine.store.tx import transaction
from engine.timeutil import IST, now_ist

logger = logging.getLogger(__name__)

RUNTIME_KEY = "dhan_token"
NOTIFY_CHANNEL = "dhan_token"
MINT_THROTTLE = timedelta(minutes=2)  # reference §7: a re-mint within ~2 min is refused


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """Decode a JWT payload without verifying the signature.

    Raises:
        ValueError: not a three-part base64url JWT with a JSON object payload (the message
            never includes the token).
    """
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise ValueError("access token is not a JWT (expected three dot-separated parts)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("access token payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ValueError("access token payload is not a JSON object")
    return claims


def jwt_expiry(token: str) -> datetime:
    """The ``exp`` claim as an aware IST datetime.

    Raises:
        ValueError: malformed token or no numeric ``exp`` claim.
    """
    exp = decode_jwt_claims(token).get("exp")
    if not isinstance(exp, int | float):
        raise ValueError("access token has no numeric exp claim")
    return datetime.fromtimestamp(exp, IST)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenState:
    """Public facts about the current token (safe to log and publish)."""

    expires_at: datetime
    source: str
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredToken:
    """The token plus its state; ``access_token`` never appears in repr."""

    access_token: str = field(repr=False)
    state: TokenState
    last_mint_at: datetime | None = None


class TokenStore(Protocol):
    """Where the current token lives."""

    def load(self) -> StoredToken | None:
        """The stored token, or ``None``."""

    def save(self, stored: StoredToken) -> None:
        """Replace the stored token."""


class MemoryTokenStore:
    """In-process :class:`TokenStore` (simulator rehearsals, single-process tools)."""

    def __init__(self, stored: StoredToken | None = None) -> None:
        self._stored = stored
        self._lock = threading.Lock()

    def load(self) -> StoredToken | None:
        with self._lock:
            return self._stored

    def save(self, stored: StoredToken) -> None:
        register_secret(stored.access_token)
        with self._lock:
            self._stored = stored


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class PgTokenStore:
    """runtime_state row ``dhan_token`` + NOTIFY ``dhan_token`` (token-free payload)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def load(self) -> StoredToken | None:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT value FROM runtime_state WHERE key = %s",
                               (RUNTIME_KEY,)).fetchone()
        value = (row["value"] if isinstance(row, dict) else row[0]) if row else None
        if not value or not value.get("access_token"):
            return None
        register_secret(value["access_token"])
        last = value.get("last_mint_at")
        return StoredToken(
            access_token=value["access_token"],
            state=TokenState(expires_at=datetime.fromisoformat(value["expires_at"]),
                             source=str(value.get("source", "unknown")),
                             updated_at=datetime.fromisoformat(value["updated_at"])),
            last_mint_at=datetime.fromisoformat(last) if last else None)

    def save(self, stored: StoredToken) -> None:
        register_secret(stored.access_token)
        public = {"expires_at": _iso(stored.state.expires_at), "source": stored.state.source,
                  "updated_at": _iso(stored.state.updated_at),
                  "last_mint_at": _iso(stored.last_mint_at)}
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO runtime_state (key, value, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
                "updated_at = EXCLUDED.updated_at",
                (RUNTIME_KEY, Jsonb({**public, "access_token": stored.access_token}),
                 stored.state.updated_at))
            notify(conn, NOTIFY_CHANNEL, public)


def renew(client: DhanClient) -> TokenGrant:
    """``GET /RenewToken`` with the client's current token (which dies at once)."""
    return client.renew_token()


def mint(client_id: str, pin: str, totp_secret: str, *, auth_base: str = DEFAULT_AUTH_BASE,
         timeout: float = 10.0, client: DhanClient | None = None) -> TokenGrant:
    """Mint a token with PIN + the current TOTP code of ``totp_secret``."""
    if not pin or not totp_secret:
        raise ValueError("minting needs DHAN_PIN and DHAN_TOTP_SECRET")
    code = pyotp.TOTP(totp_secret).now()
    minter = client or DhanClient(client_id, access_token=None, auth_base=auth_base,
                                  timeout=timeout)
    return minter.generate_access_token(pin, code)


class CachedTokenProvider:
    """``token_provider`` for clients: reads the store at most every ``ttl`` seconds."""

    def __init__(self, store: TokenStore, ttl: float = 5.0) -> None:
        self._store, self._ttl = store, ttl
        self._lock = threading.Lock()
        self._token: str | None = None
        self._read_at = float("-inf")

    def __call__(self) -> str | None:
        with self._lock:
            if time.monotonic() - self._read_at > self._ttl:
                stored = self._store.load()
                self._token = stored.access_token if stored else None
                self._read_at = time.monotonic()
            return self._token

    def invalidate(self) -> None:
        """Force the next call to re-read the store (on NOTIFY or an auth error)."""
        with self._lock:
            self._read_at = float("-inf")


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenConfig:
    """TokenManager settings (``pin``/``totp_secret``/``initial_token`` hidden from repr)."""

    client_id: str
    pin: str | None = field(default=None, repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    initial_token: str | None = field(default=None, repr=False)
    renew_before: timedelta = timedelta(hours=1)
    mint_throttle: timedelta = MINT_THROTTLE


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCheck:
    """Outcome of :meth:`TokenManager.check`: renewed / minted / still_valid / blocked."""

    action: str
    expires_at: datetime | None = None
    source: str | None = None
    reason: str = ""

    @property
    def changed(self) -> bool:
        """True when a new token was stored (publish ``TokenRefreshed``)."""
        return self.action in ("renewed", "minted")


class TokenManager:
    """Keeps one valid token in the store: renew ahead of expiry, TOTP mint as fallback.

    Args:
        client_factory: ``client_factory(token)`` returns a :class:`DhanClient` using
            ``token`` (``None`` for a client that only mints).
        store: a :class:`TokenStore`.
        clock: returns the current aware datetime.
        config: :class:`TokenConfig`.
    """

    def __init__(self, client_factory: Callable[[str | None], DhanClient], store: TokenStore,
                 clock: Callable[[], datetime] = now_ist,
                 config: TokenConfig | None = None) -> None:
        if config is None:
            raise ValueError("TokenManager needs a TokenConfig")
        self._factory, self._store, self._clock, self.config = client_factory, store, clock, config
        self._lock = threading.Lock()
        self._last_mint_attempt: datetime | None = None

    def check(self, now: datetime | None = None, *, force: bool = False) -> TokenCheck:
        """Make sure a usable token is stored.

        Args:
            now: the instant to judge expiry against (default ``clock()``).
            force: the token was reported invalid (401 / revoked): refresh regardless.
        """
        with self._lock:
            return self._check(now or self._clock(), force)

    def _check(self, now: datetime, force: bool) -> TokenCheck:
        stored = self._store.load()
        if stored is None and self.config.initial_token:
            stored = self._seed(now)
        if stored is not None and not force:
            left = stored.state.expires_at - now
            if left > self.config.renew_before:
                return TokenCheck(action="still_valid", expires_at=stored.state.expires_at,
                                  source=stored.state.source)
        renew_error = ""
        if stored is not None and stored.state.expires_at > now:
            try:
                grant = renew(self._factory(stored.access_token))
                return self._store_grant(grant, "renew", now, stored.last_mint_at, "renewed")
            except (DhanError, ValueError) as exc:
                renew_error = f"renew failed: {exc}"
                logger.warning("token renew failed, falling back to TOTP mint: %s", exc)
        return self._mint(now, stored, renew_error)

    def _seed(self, now: datetime) -> StoredToken | None:
        token = self.config.initial_token or ""
        try:
            expires = jwt_expiry(token)
        except ValueError as exc:
            logger.warning("DHAN_ACCESS_TOKEN ignored: %s", exc)
            return None
        stored = StoredToken(access_token=token, state=TokenState(
            expires_at=expires, source="env", updated_at=now))
        self._store.save(stored)
        return stored

    def _mint(self, now: datetime, stored: StoredToken | None, why: str) -> TokenCheck:
        prefix = f"{why}; " if why else ""
        if not (self.config.pin and self.config.totp_secret):
            return TokenCheck(action="blocked", reason=prefix + "no DHAN_PIN/DHAN_TOTP_SECRET "
                              "configured for a TOTP mint")
        attempts = [t for t in (stored.last_mint_at if stored else None,
                                self._last_mint_attempt) if t is not None]
        last = max(attempts) if attempts else None
        if last is not None and now - last < self.config.mint_throttle:
            retry_at = last + self.config.mint_throttle
            return TokenCheck(action="blocked", reason=prefix + "TOTP mint throttled until "
                              f"{retry_at.isoformat()} (Dhan refuses re-mints within ~2 min)")
        self._last_mint_attempt = now
        if stored is not None:
            self._store.save(replace(stored, last_mint_at=now))
        try:
            grant = mint(self.config.client_id, self.config.pin, self.config.totp_secret,
                         client=self._factory(None))
        except (DhanError, ValueError) as exc:
            logger.error("TOTP mint failed: %s", exc)
            return TokenCheck(action="blocked", reason=prefix + f"TOTP mint failed: {exc}")
        return self._store_grant(grant, "totp", now, now, "minted")

    def _store_grant(self, grant: TokenGrant, source: str, now: datetime,
                     last_mint_at: datetime | None, action: str) -> TokenCheck:
        try:
            expires = jwt_expiry(grant.access_token)
        except ValueError:
            expires = grant.expiry_time or now + timedelta(hours=24)
        self._store.save(StoredToken(access_token=grant.access_token, last_mint_at=last_mint_at,
                                     state=TokenState(expires_at=expires, source=source,
                                                      updated_at=now)))
        logger.info("dhan token %s; expires %s", action, expires.isoformat())
        return TokenCheck(action=action, expires_at=expires, source=source)
