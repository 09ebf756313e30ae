"""Typed configuration from environment variables, validated at start.

A bad value stops the process with the variable's name and what is allowed. Every variable
is documented in ``.env.example``; runtime-tunable knobs live in ``engine.settings`` instead.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from engine.redact import register_secret


class ConfigError(ValueError):
    """An environment variable has a value the engine cannot use."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected true/false (1/0, yes/no, on/off)")


def _int(name: str, raw: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name}={value}: must be between {lo} and {hi}")
    return value


def parse_number(name: str, raw: str, lo: float, hi: float) -> float:
    """``raw`` as a number between ``lo`` and ``hi``; a ConfigError naming ``name`` otherwise."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value}: must be between {lo} and {hi}")
    return value


def _decimal(name: str, raw: str, lo: Decimal | None = None) -> Decimal:
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name}={raw!r}: expected a decimal number") from None
    if lo is not None and value < lo:
        raise ConfigError(f"{name}={value}: must be at least {lo}")
    return value


def parse_origin(text: str) -> str | None:
    """``scheme://host[:port]`` (http/https) in canonical form — lower case, default port
    dropped — or None when ``text`` is not such an origin (a path, query, user or "null")."""
    from urllib.parse import urlsplit

    if not text or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c == "\\"
                       for c in text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username is not None \
            or parts.password is not None or parts.path not in ("", "/") or parts.query \
            or parts.fragment or text.endswith(("?", "#")) or port == 0:
        return None
    if ":" in host:
        host = f"[{host}]"
    if not re.fullmatch(r"[a-z0-9_.-]+|\[[0-9a-f:.]+\]", host):
        return None
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _origins(name: str, raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for item in (x.strip() for x in raw.split(",")):
        if not item:
            continue
        origin = parse_origin(item)
        if origin is None:
            raise ConfigError(f"{name}: {item!r} is not an origin; expected a comma-separated "
                              "list of scheme://host[:port] (http or https, no path), e.g. "
                              "https://dash.example.com")
        out.append(origin)
    return tuple(dict.fromkeys(out))


def _list(raw: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped, order kept, duplicates removed."""
    return tuple(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return value


@dataclass(frozen=True, slots=True)
class Config:
    """Process configuration (environment), immutable once loaded."""

    database_url: str = ""
    var_dir: Path = Path("var")
    log_dir: Path = Path("logs")
    log_level: str = "info"
    # market and broker
    market_source: str = "sim"          # sim | dhan
    broker: str = "paper"               # paper | dhan
    sim_seed: int = 7
    sim_speed: int = 60                 # simulated seconds per real second
    sim_start: str = ""                 # ISO date of the simulated session; default next open
    scan_interval_sec: int = 60
    monitor_interval_sec: int = 15
    paper_slippage_ticks: int = 1
    starting_capital: Decimal = Decimal("500000")
    # go-live seeds (*_DRY_RUN): only seed go_live_state on first run
    dry_run_flags: Mapping[str, bool] = field(default_factory=dict)
    # Dhan
    dhan_client_id: str = ""
    dhan_access_token: str = field(default="", repr=False)
    dhan_pin: str = field(default="", repr=False)
    dhan_totp_secret: str = field(default="", repr=False)
    dhan_api_base: str = "https://api.dhan.co/v2"
    dhan_auth_base: str = "https://auth.dhan.co"
    dhan_instruments_url: str = "https://images.dhan.co/api-data/api-scrip-master.csv"
    dhan_timeout_sec: int = 10
    dhan_retry_backoff_sec: float = 0.5  # first wait before a retried call, doubled each retry
    dhan_product_type: str = "MARGIN"   # carry-forward; INTRADAY is refused (see _validate)
    token_refresher_external: bool = False
    # chat
    telegram_enabled: bool = False
    telegram_bot_token: str = field(default="", repr=False)
    telegram_chat_id: str = ""
    telegram_api_base: str = "https://api.telegram.org"
    telegram_allowed_chat_ids: tuple[str, ...] = ()   # who may command (TELEGRAM_CHAT_ID too)
    telegram_poll_timeout: int = 30                   # getUpdates long-poll seconds
    cliq_enabled: bool = False
    cliq_webhook_url: str = field(default="", repr=False)
    cliq_webhook_secret: str = field(default="", repr=False)  # POST /api/chat/cliq header
    cliq_allowed_users: tuple[str, ...] = ()          # Cliq user ids / emails who may command
    # web
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    dashboard_secret_key: str = field(default="", repr=False)
    dashboard_totp_secret: str = field(default="", repr=False)
    dashboard_secure_cookies: bool = False
    web_allowed_origins: tuple[str, ...] = ()   # extra origins allowed to open /ws
    # backtest data: NSE archive the bhavcopy downloader fetches from (tests: a local server)
    nse_archive_base: str = "https://nsearchives.nseindia.com"

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds (fields hidden from repr, the DB password)."""
        values = [str(getattr(self, f.name)) for f in fields(self) if not f.repr]
        if self.database_url:
            from psycopg.conninfo import conninfo_to_dict

            with contextlib.suppress(Exception):  # a malformed URL fails later, with its own error
                values.append(str(conninfo_to_dict(self.database_url).get("password") or ""))
        return [v for v in values if v]

    def redacted(self) -> dict[str, Any]:
        """The configuration as a dict with every secret replaced by '***'."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not f.repr:
                value = "***" if value else ""
            out[f.name] = value
        return out


DRY_RUN_STRATEGIES = ("CAL_ARB", "DC", "MDC", "IC", "AI_MARKET")
_SECRET_VARIABLE = re.compile(r"_(TOKEN|PIN|SECRET|SECRET_KEY|PASSWORD|API_KEY|APIKEY|ZAPIKEY|WEBHOOK_URL)$")


def load(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate configuration from ``env`` (default: os.environ)."""
    e = os.environ if env is None else env

    def get(name: str, default: str = "") -> str:
        return e.get(name, default)

    dry_run = {s: _bool(f"{s}_DRY_RUN", get(f"{s}_DRY_RUN", "true")) for s in DRY_RUN_STRATEGIES}
    for name, value in e.items():  # secrets of other parts (LLM key, ...) are redacted too
        if _SECRET_VARIABLE.search(name):
            register_secret(value)
    cfg = _validate(Config(
        database_url=get("DATABASE_URL").strip(),
        var_dir=Path(get("ENGINE_VAR_DIR", "var")),
        log_dir=Path(get("LOG_DIR", "logs")),
        log_level=_choice("LOG_LEVEL", get("LOG_LEVEL", "info"),
                          ("debug", "info", "warning", "error")),
        market_source=_choice("MARKET_SOURCE", get("MARKET_SOURCE", "sim"), ("sim", "dhan")),
        broker=_choice("BROKER", get("BROKER", "paper"), ("paper", "dhan")),
        sim_seed=_int("SIM_SEED", get("SIM_SEED", "7"), 0),
        sim_speed=_int("SIM_SPEED", get("SIM_SPEED", "60"), 1, 100_000),
        sim_start=get("SIM_START").strip(),
        scan_interval_sec=_int("SCAN_INTERVAL_SEC", get("SCAN_INTERVAL_SEC", "60"), 1, 3600),
        monitor_interval_sec=_int("MONITOR_INTERVAL_SEC", get("MONITOR_INTERVAL_SEC", "15"), 1, 3600),
        paper_slippage_ticks=_int("PAPER_SLIPPAGE_TICKS", get("PAPER_SLIPPAGE_TICKS", "1"), 0, 100),
        starting_capital=_decimal("STARTING_CAPITAL", get("STARTING_CAPITAL", "500000"), Decimal(0)),
        dry_run_flags=dry_run,
        dhan_client_id=get("DHAN_CLIENT_ID").strip(),
        dhan_access_token=get("DHAN_ACCESS_TOKEN").strip(),
        dhan_pin=get("DHAN_PIN").strip(),
        dhan_totp_secret=get("DHAN_TOTP_SECRET").strip(),
        dhan_api_base=get("DHAN_API_BASE", "https://api.dhan.co/v2").rstrip("/"),
        dhan_auth_base=get("DHAN_AUTH_BASE", "https://auth.dhan.co").rstrip("/"),
        dhan_instruments_url=get("DHAN_INSTRUMENTS_URL",
                                 "https://images.dhan.co/api-data/api-scrip-master.csv"),
        dhan_timeout_sec=_int("DHAN_TIMEOUT_SEC", get("DHAN_TIMEOUT_SEC", "10"), 1, 120),
        dhan_retry_backoff_sec=parse_number("DHAN_RETRY_BACKOFF_SEC",
                                            get("DHAN_RETRY_BACKOFF_SEC", "0.5"), 0.01, 10),
        dhan_product_type=_choice("DHAN_PRODUCT_TYPE", get("DHAN_PRODUCT_TYPE", "MARGIN"),
                                  ("margin", "intraday")).upper(),
        token_refresher_external=_bool("TOKEN_REFRESHER_EXTERNAL",
                                       get("TOKEN_REFRESHER_EXTERNAL", "false")),
        telegram_enabled=_bool("TELEGRAM_ENABLED", get("TELEGRAM_ENABLED", "false")),
        telegram_bot_token=get("TELEGRAM_BOT_TOKEN").strip(),
        telegram_chat_id=get("TELEGRAM_CHAT_ID").strip(),
        telegram_api_base=get("TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/"),
        telegram_allowed_chat_ids=_list(get("TELEGRAM_ALLOWED_CHAT_IDS")),
        telegram_poll_timeout=_int("TELEGRAM_POLL_TIMEOUT", get("TELEGRAM_POLL_TIMEOUT", "30"),
                                   0, 50),
        cliq_enabled=_bool("CLIQ_ENABLED", get("CLIQ_ENABLED", "false")),
        cliq_webhook_url=get("CLIQ_WEBHOOK_URL").strip(),
        cliq_webhook_secret=get("CLIQ_WEBHOOK_SECRET").strip(),
        cliq_allowed_users=_list(get("CLIQ_ALLOWED_USERS")),
        web_host=get("WEB_HOST", "127.0.0.1").strip(),
        web_port=_int("WEB_PORT", get("WEB_PORT", "8080"), 1, 65535),
        dashboard_secret_key=get("DASHBOARD_SECRET_KEY").strip(),
        dashboard_totp_secret=get("DASHBOARD_TOTP_SECRET").strip(),
        dashboard_secure_cookies=_bool("DASHBOARD_SECURE_COOKIES",
                                       get("DASHBOARD_SECURE_COOKIES", "false")),
        web_allowed_origins=_origins("WEB_ALLOWED_ORIGINS", get("WEB_ALLOWED_ORIGINS")),
        nse_archive_base=_archive_base(get("NSE_ARCHIVE_BASE", "https://nsearchives.nseindia.com")),
    ))
    for value in cfg.secret_values():
        register_secret(value)
    return cfg


def _archive_base(raw: str) -> str:
    """``NSE_ARCHIVE_BASE``: an http(s) URL without query, trailing slash dropped."""
    from urllib.parse import urlsplit

    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"NSE_ARCHIVE_BASE={raw!r}: expected an http(s) URL such as "
                          "https://nsearchives.nseindia.com")
    return value


#: Strategies whose structures are held across sessions (calendars, condors): their live
#: legs must be carry-forward (MARGIN). Dhan squares INTRADAY positions off at 15:20 by itself.
OVERNIGHT_STRATEGIES = ("CAL_ARB", "DC", "MDC", "IC")


def _validate(cfg: Config) -> Config:
    if cfg.broker == "dhan" and not cfg.dhan_client_id:
        raise ConfigError("BROKER=dhan needs DHAN_CLIENT_ID")
    if cfg.broker == "dhan" and cfg.dhan_product_type == "INTRADAY":
        raise ConfigError(
            "DHAN_PRODUCT_TYPE='INTRADAY': refused: strategies "
            f"{', '.join(OVERNIGHT_STRATEGIES)} hold positions overnight and Dhan squares "
            "INTRADAY positions off at 15:20, which would silently close them; use MARGIN")
    if cfg.telegram_enabled and not (cfg.telegram_bot_token and cfg.telegram_chat_id):
        raise ConfigError("TELEGRAM_ENABLED=true needs TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID")
    if cfg.cliq_enabled and not cfg.cliq_webhook_url:
        raise ConfigError("CLIQ_ENABLED=true needs CLIQ_WEBHOOK_URL")
    if cfg.sim_start:
        from datetime import date

        try:
            date.fromisoformat(cfg.sim_start)
        except ValueError:
            raise ConfigError(f"SIM_START={cfg.sim_start!r}: expected YYYY-MM-DD") from None
    return cfg

