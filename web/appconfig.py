"""Flask configuration of the dashboard: environment (engine.config) merged with overrides.

Keys (all optional in the mapping given to ``create_app``): DATABASE_URL, POOL (an open
ConnectionPool to use instead of opening one), SECRET_KEY, DASHBOARD_TOTP_SECRET,
SESSION_COOKIE_SECURE, CHAT_CHANNELS, LOG_DIR, VAR_DIR, WS_QUEUE_SIZE, START_BRIDGE,
TRUST_PROXY, ALLOWED_ORIGINS (origins besides the app's own allowed to open /ws),
SETUP_LOGGING, AUTH_POLICY (a web.authn.AuthPolicy), MAX_CONTENT_LENGTH (the largest
request body in bytes, default WEB_MAX_BODY_BYTES = 1 MiB; larger ones get 413),
SESSION_CACHE_S (WEB_SESSION_CACHE_S, default 2: how long a worker trusts a session it found
live) and HEALTH_CACHE_S (WEB_HEALTH_CACHE_S, default 1: how old /api/health's database read
may be).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine import config as engine_config

logger = logging.getLogger(__name__)

SECRET_FILE = "dashboard_secret_key"  # noqa: S105 - a file name, not a secret
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def max_body_bytes(raw: str | None) -> int:
    """WEB_MAX_BODY_BYTES: a positive integer (bytes); unset means 1 MiB."""
    text = (raw or "").strip()
    if not text:
        return DEFAULT_MAX_BODY_BYTES
    if not text.isascii() or not text.isdigit() or int(text) < 1024:
        raise ValueError(f"configuration error: WEB_MAX_BODY_BYTES={raw!r}: expected an "
                         "integer number of bytes, at least 1024")
    return int(text)


def cache_seconds(name: str, raw: str | None, default: float) -> float:
    """WEB_SESSION_CACHE_S / WEB_HEALTH_CACHE_S: seconds from 0 (no cache) to 10."""
    text = (raw or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 10:
        raise ValueError(f"configuration error: {name}={raw!r}: expected seconds from 0 "
                         "(no cache) to 10")
    return value


def persistent_secret_key(var_dir: Path) -> str:
    """Read (or create once, mode 0600) a random cookie-signing key under ``var_dir``."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise RuntimeError(f"{path} holds no usable key; delete it to generate a new one") \
                from None
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    logger.warning("DASHBOARD_SECRET_KEY is not set: generated one in %s (set it in .env for "
                   "production)", path)
    return key


def build_config(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults from the environment, then ``overrides`` on top."""
    over = dict(overrides or {})
    cfg = engine_config.load()
    channels = tuple(c for c, on in (("telegram", cfg.telegram_enabled),
                                     ("cliq", cfg.cliq_enabled)) if on)
    out: dict[str, Any] = {
        "DATABASE_URL": cfg.database_url,
        "DASHBOARD_TOTP_SECRET": cfg.dashboard_totp_secret,
        "SESSION_COOKIE_SECURE": cfg.dashboard_secure_cookies,
        "CHAT_CHANNELS": channels,
        "LOG_DIR": str(cfg.log_dir),
        # where the engine's engine.log is read from (compose mounts the engine's volume
        # read-only there); default: the same directory
        "ENGINE_LOG_DIR": os.environ.get("ENGINE_LOG_DIR", "").strip(),
        "VAR_DIR": str(cfg.var_dir),
        "LOG_LEVEL": cfg.log_level,
        "WS_QUEUE_SIZE": int(os.environ.get("WEB_WS_QUEUE", "256")),
        "START_BRIDGE": True,
        "ALLOWED_ORIGINS": cfg.web_allowed_origins,
        "TRUST_PROXY": os.environ.get("WEB_TRUST_PROXY", "0").lower() in ("1", "true", "yes"),
        "SETUP_LOGGING": overrides is None,
        "JSON_SORT_KEYS": False,
        "MAX_CONTENT_LENGTH": max_body_bytes(os.environ.get("WEB_MAX_BODY_BYTES")),
        # how long a worker trusts a session it found live (web.authn.AuthPolicy)
        "SESSION_CACHE_S": cache_seconds("WEB_SESSION_CACHE_S",
                                         os.environ.get("WEB_SESSION_CACHE_S"), 2.0),
        # how old the database part of /api/health may be (web.api.system.health)
        "HEALTH_CACHE_S": cache_seconds("WEB_HEALTH_CACHE_S",
                                        os.environ.get("WEB_HEALTH_CACHE_S"), 1.0),
    }
    out.update(over)
    if not out.get("SECRET_KEY"):
        out["SECRET_KEY"] = cfg.dashboard_secret_key or persistent_secret_key(
            Path(out["VAR_DIR"]))
    if not out.get("DATABASE_URL") and out.get("POOL") is None:
        from engine.store.server import database_url

        out["DATABASE_URL"] = database_url()
    return out
