"""Composition of the Dhan adapters for ``engine.app.build`` and the token-refresher.

* :func:`dhan_market_data` -> :class:`DhanMarketData` (``MARKET_SOURCE=dhan``).
* :func:`dhan_services` -> ``live_broker``, ``positions`` (net quantity per security for
  the monitor's reconciliation), ``margin_calculator`` (Dhan's multi-order margin
  calculator, the RiskActor's live-stage margin), ``token_manager`` and the token plumbing, and
  ``dhan_order_feed`` (the order-update WebSocket, :func:`order_feed`) (``BROKER=dhan``).
* :func:`token_services` -> what the TokenActor needs, alone (``python -m engine
  token-refresher``).

Token following: every Dhan client reads its token through a :class:`StoredTokenProvider`
(runtime_state ``dhan_token``, cached 5 s, falling back to ``DHAN_ACCESS_TOKEN`` until a
token is stored). A :class:`TokenFollower` LISTENs on ``dhan_token`` and drops the cache at
once when any process saves a new token (a renew kills the old token immediately). The
TokenActor starts and stops the follower. With ``TOKEN_REFRESHER_EXTERNAL=true`` the
in-process ``token_manager`` is a :class:`FollowOnlyTokenManager`: it never renews or mints,
it only reports whether the stored token is usable.

A 401 / revoked token seen by any client goes to :class:`AuthErrorHook`: it drops the cache
and (at most once per ``quiet_s``) calls the connected callback, which the TokenActor sets to
"tell myself ``RefreshToken``".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.config import DEFAULT_API_BASE, DhanConfig
from engine.broker.dhan.errors import DhanError, register_secret
from engine.broker.dhan.instruments import InstrumentMaster
from engine.broker.dhan.live_broker import DhanLiveBroker
from engine.broker.dhan.margin import DhanMarginCalculator
from engine.broker.dhan.order_feed import DEFAULT_URL as DEFAULT_ORDER_FEED_URL
from engine.broker.dhan.order_feed import OrderFeed
from engine.broker.dhan.slicing import MasterOrderLimits
from engine.broker.dhan.snapshot_source import DhanMarketData
from engine.broker.dhan.token import (
    NOTIFY_CHANNEL,
    CachedTokenProvider,
    PgTokenStore,
    StoredToken,
    TokenCheck,
    TokenConfig,
    TokenManager,
)
from engine.clock import Clock
from engine.config import Config, ConfigError, parse_number
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- configuration
def dhan_config(config: Config | None = None) -> DhanConfig:
    """``DhanConfig`` from the engine ``Config`` (``DHAN_*`` variables via ``from_env`` when
    ``config`` has no client id).

    Raises:
        ConfigError: no Dhan client id anywhere.
    """
    if config is None or not config.dhan_client_id:
        try:
            return DhanConfig.from_env()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return DhanConfig(client_id=config.dhan_client_id,
                      access_token=config.dhan_access_token or None,
                      pin=config.dhan_pin or None, totp_secret=config.dhan_totp_secret or None,
                      api_base=config.dhan_api_base, auth_base=config.dhan_auth_base,
                      instruments_url=config.dhan_instruments_url,
                      timeout_sec=float(config.dhan_timeout_sec),
                      retry_backoff_sec=config.dhan_retry_backoff_sec)


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().upper()
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def _env_number(name: str, default: str, lo: float, hi: float) -> float:
    return parse_number(name, os.environ.get(name, default), lo, hi)


# ---------------------------------------------------------------------- token plumbing
class _LazyPgStore:
    """A ``PgTokenStore`` whose pool is found on first use (or bound later)."""

    def __init__(self, pool_getter: Callable[[], ConnectionPool]) -> None:
        self._getter = pool_getter
        self._store: PgTokenStore | None = None

    def bind(self, pool: ConnectionPool) -> None:
        self._store = PgTokenStore(pool)

    def _target(self) -> PgTokenStore:
        if self._store is None:
            self._store = PgTokenStore(self._getter())
        return self._store

    def load(self) -> StoredToken | None:
        return self._target().load()

    def save(self, stored: StoredToken) -> None:
        self._target().save(stored)


class StoredTokenProvider(CachedTokenProvider):
    """The stored token (cached ``ttl`` s), else ``fallback`` (``DHAN_ACCESS_TOKEN``)."""

    def __init__(self, store: Any, *, fallback: str | None = None, ttl: float = 5.0) -> None:
        super().__init__(store, ttl=ttl)
        register_secret(fallback)
        self._fallback = fallback

    def __call__(self) -> str | None:
        try:
            token = super().__call__()
        except Exception as exc:  # the database is down: keep using what we have
            logger.warning("stored Dhan token unreadable (%s); using the last known one",
                           exc.__class__.__name__)
            token = self._token
        return token or self._fallback


class AuthErrorHook:
    """``on_auth_error`` of every Dhan client: drop the token cache, then (debounced) call
    the connected callback with a reason (the TokenActor's "refresh now").

    Args:
        provider: the token cache to drop.
        min_interval_s: at most one forwarded error per this many seconds (a burst of 401s
            must not become a burst of renewals: each renewal kills the previous token).
        quiet_after_change_s: errors right after a new token was stored come from requests
            still in flight with the old one and are not forwarded.
    """

    def __init__(self, provider: CachedTokenProvider, *, min_interval_s: float = 30.0,
                 quiet_after_change_s: float = 3.0) -> None:
        self._provider = provider
        self.min_interval_s, self.quiet_after_change_s = min_interval_s, quiet_after_change_s
        self._target: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._changed = float("-inf")
        self.seen = 0
        self.forwarded = 0

    def connect(self, target: Callable[[str], None] | None) -> None:
        """Set (or clear, with ``None``) the callback."""
        with self._lock:
            self._target = target

    def token_changed(self) -> None:
        """A new token was stored: errors of requests still in flight are expected."""
        with self._lock:
            self._changed = time.monotonic()

    def __call__(self, error: DhanError) -> None:
        self._provider.invalidate()
        with self._lock:
            self.seen += 1
            target = self._target
            now = time.monotonic()
            if (target is None or now - self._last < self.min_interval_s
                    or now - self._changed < self.quiet_after_change_s):
                return
            self._last = now
            self.forwarded += 1
        reason = f"Dhan answered {error.code or error.status or 'auth error'} on {error.endpoint}"
        logger.warning("token rejected by Dhan (%s): asking for a refresh", reason)
        target(reason)


class TokenFollower:
    """LISTEN ``dhan_token``: drop the provider's cache when any process saves a token."""

    def __init__(self, dsn: str | Callable[[], str], provider: CachedTokenProvider,
                 hook: AuthErrorHook | None = None) -> None:
        self._dsn, self._provider, self._hook = dsn, provider, hook
        self._listener: Any = None
        self.notifications = 0

    def _on_notify(self, _channel: str, payload: dict[str, Any]) -> None:
        self.notifications += 1
        self._provider.invalidate()
        if self._hook is not None:
            self._hook.token_changed()
        logger.info("Dhan token changed (source %s, expires %s): cache dropped",
                    payload.get("source"), payload.get("expires_at"))

    def start(self) -> TokenFollower:
        """Start listening (a failure is logged: the 5 s cache still follows the token)."""
        from engine.store.notify import Listener

        if self._listener is not None:
            return self
        try:
            dsn = self._dsn() if callable(self._dsn) else self._dsn
            self._listener = Listener(dsn, [NOTIFY_CHANNEL], self._on_notify,
                                      on_reconnect=self._provider.invalidate,
                                      name="dhan-token-follower").start()
        except Exception as exc:
            logger.warning("cannot LISTEN %s (%s); the token cache refreshes every 5 s",
                           NOTIFY_CHANNEL, exc)
            self._listener = None
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


class FollowOnlyTokenManager:
    """``token_manager`` when an external token-refresher owns the token: never renews or
    mints; reports ``still_valid`` or ``blocked`` (so the TokenActor pauses entries)."""

    def __init__(self, store: Any, provider: CachedTokenProvider | None = None) -> None:
        self._store, self._provider = store, provider

    def check(self, now: datetime | None = None, *, force: bool = False) -> TokenCheck:
        if self._provider is not None:
            self._provider.invalidate()
        now = now_ist()  # token expiry is a wall-clock fact, whatever the engine clock says
        stored = self._store.load()
        if stored is None:
            return TokenCheck(action="blocked", reason="no Dhan token stored yet "
                              "(TOKEN_REFRESHER_EXTERNAL=true: is the token-refresher running?)")
        if stored.state.expires_at <= now:
            return TokenCheck(action="blocked", reason="stored Dhan token expired at "
                              f"{stored.state.expires_at.isoformat()} (is the token-refresher "
                              "running?)")
        return TokenCheck(action="still_valid", expires_at=stored.state.expires_at,
                          source=stored.state.source)


class WallClockTokenManager:
    """Runs ``TokenManager.check`` on the wall clock: a token expires in real time even when
    the engine runs on a simulated clock (rehearsals)."""

    def __init__(self, manager: TokenManager) -> None:
        self.manager = manager

    def check(self, now: datetime | None = None, *, force: bool = False) -> TokenCheck:
        return self.manager.check(now_ist(), force=force)


def _dsn_of(pool: ConnectionPool) -> str:
    with pool.connection() as conn:
        return conn.info.dsn


class _Session:
    """Token plumbing shared by every client of one process."""

    def __init__(self, dcfg: DhanConfig, store: _LazyPgStore) -> None:
        self.dcfg, self.store = dcfg, store
        self.provider = StoredTokenProvider(store, fallback=dcfg.access_token)
        self.hook = AuthErrorHook(self.provider)
        self.engine_clock: Clock | None = None

    def client(self, **kwargs: Any) -> DhanClient:
        if self.engine_clock is not None and send_engine_time():
            clock = self.engine_clock
            kwargs.setdefault("header_provider",
                              lambda: {ENGINE_TIME_HEADER: clock.now().isoformat()})
        return DhanClient.from_config(self.dcfg, token_provider=self.provider,
                                      on_auth_error=self.hook, **kwargs)


#: Rehearsals only (``dhan-sim --env-file`` writes DHAN_SEND_ENGINE_TIME=true): every request
#: carries the engine's clock so the simulator prices the engine's own simulated market at the
#: same moment. Never set it against the real Dhan.
ENGINE_TIME_HEADER = "X-Engine-Time"


def send_engine_time() -> bool:
    value = os.environ.get("DHAN_SEND_ENGINE_TIME", "false").strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"DHAN_SEND_ENGINE_TIME={value!r}: expected true or false")
    return value in ("true", "1", "yes")


def order_feed(session: _Session) -> OrderFeed | None:
    """The order-update feed of ``session``'s account (not started), or ``None``.

    ``DHAN_ORDER_FEED`` (default true; false: REST lookups only) and ``DHAN_ORDER_FEED_URL``
    (default Dhan's ``wss://api-order-update.dhan.co``, used only when ``DHAN_API_BASE`` is
    Dhan's own: against a simulator the feed is the simulator's, never the real one). The
    feed logs in with the REST clients' token and reports a refused login to their hook.

    Raises:
        ConfigError: a flag or URL the feed cannot use.
    """
    flag = os.environ.get("DHAN_ORDER_FEED", "true").strip().lower()
    if flag not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"DHAN_ORDER_FEED={flag!r}: expected true or false")
    if flag in ("false", "0", "no"):
        logger.info("Dhan order-update feed off (DHAN_ORDER_FEED=%s): orders are looked up "
                    "by REST only", flag)
        return None
    url = os.environ.get("DHAN_ORDER_FEED_URL", "").strip()
    if not url:
        if session.dcfg.api_base.rstrip("/") != DEFAULT_API_BASE:
            logger.info("Dhan order-update feed off: DHAN_API_BASE is not Dhan's and "
                        "DHAN_ORDER_FEED_URL is not set (orders are looked up by REST only)")
            return None
        url = DEFAULT_ORDER_FEED_URL
    try:
        return OrderFeed(session.dcfg.client_id, session.provider, url=url,
                         on_auth_error=session.hook)
    except ValueError as exc:
        raise ConfigError(f"DHAN_ORDER_FEED_URL: {exc}") from None


class BrokerPositions:
    """The ``positions`` service: ``GET /positions`` as ``{(security_id, product): net_qty}``
    for NSE_FNO (flat rows included as 0). The product is part of the key: Dhan keeps one
    position per product, and squares INTRADAY ones off by itself. Broker errors propagate."""

    SEGMENT = "NSE_FNO"

    def __init__(self, client: DhanClient) -> None:
        self._client = client

    def __call__(self) -> dict[tuple[str, str], int]:
        net: dict[tuple[str, str], int] = {}
        for pos in self._client.positions():
            if pos.exchange_segment == self.SEGMENT:
                key = (pos.security_id, pos.product_type or "MARGIN")
                net[key] = net.get(key, 0) + pos.net_qty
        return net

    def rows(self) -> list[Any]:
        """The NSE_FNO rows of ``GET /positions`` (average prices and contract details, for
        the reconciliation's orphan adoption). Broker errors propagate."""
        return [p for p in self._client.positions() if p.exchange_segment == self.SEGMENT]


def _master_loader(url: str) -> Callable[[date], InstrumentMaster]:
    def load(trade_date: date) -> InstrumentMaster:
        logger.info("downloading the instrument master for freeze quantities")
        return InstrumentMaster.download(url, as_of=trade_date)

    return load


def _futures_loader(url: str) -> Callable[[date], InstrumentMaster]:
    def load(today: date) -> InstrumentMaster:
        logger.info("downloading the instrument master for NIFTY futures ids")
        return InstrumentMaster.download(url, as_of=today)

    return load


# ---------------------------------------------------------------------- public builders
def dhan_market_data(config: Config, clock: Clock) -> DhanMarketData:
    """``MARKET_SOURCE=dhan``: the MarketData port on Dhan REST.

    Futures ids come from the instrument master (``DHAN_INSTRUMENTS_URL``), downloaded on
    the first snapshot and again after the near future expires. The token is read from the
    process-wide pool's runtime_state until :func:`dhan_services` binds the engine's pool.
    """
    from engine.market.calendar import NseCalendar
    from engine.store.pool import get_pool

    session = _Session(dhan_config(config), _LazyPgStore(get_pool))
    session.engine_clock = clock
    market = DhanMarketData(session.client(), _futures_loader(session.dcfg.instruments_url),
                            clock, NseCalendar())
    market.dhan_session = session  # type: ignore[attr-defined]
    return market


def token_services(config: Config, pool: ConnectionPool, *, follow_only: bool,
                   session: _Session | None = None) -> dict[str, Any]:
    """``token_manager`` (refreshing, or follow-only), ``dhan_token_follower`` and
    ``dhan_auth_hook`` for the TokenActor."""
    if session is None:
        session = _Session(dhan_config(config), _LazyPgStore(lambda: pool))
    session.store.bind(pool)
    session.provider.invalidate()
    dcfg = session.dcfg
    if follow_only:
        manager: Any = FollowOnlyTokenManager(session.store, session.provider)
    else:
        def factory(token: str | None) -> DhanClient:
            return DhanClient.from_config(dcfg, access_token=token)

        manager = WallClockTokenManager(TokenManager(
            factory, session.store, config=TokenConfig(
                client_id=dcfg.client_id, pin=dcfg.pin, totp_secret=dcfg.totp_secret,
                initial_token=dcfg.access_token)))
    dsn = config.database_url or (lambda: _dsn_of(pool))
    return {"token_manager": manager,
            "dhan_token_follower": TokenFollower(dsn, session.provider, session.hook),
            "dhan_auth_hook": session.hook, "dhan_token_provider": session.provider}


def dhan_services(config: Config, pool: ConnectionPool, clock: Clock, market: Any,
                  *, settings: Any = None, calendar: Any = None) -> dict[str, Any]:
    """``BROKER=dhan``: ``live_broker`` (orders on Dhan, quotes from ``market``),
    ``positions`` (:class:`BrokerPositions`) and the token services (see
    :func:`token_services`).

    Extra variables: ``DHAN_PRODUCT_TYPE`` (``Config.dhan_product_type``: MARGIN; INTRADAY
    is refused by the configuration), ``DHAN_FILL_TIMEOUT_SEC`` (default 10),
    ``DHAN_LIMIT_TICKS`` (slippage cap, default 3), ``DHAN_LOOKUP_GRACE_SEC`` (lookups of a
    lost place answer before the order is declared unresolved, default 2),
    ``DHAN_RESOLVE_WINDOW_SEC`` (further lookups inside the order call before the executor's
    resolution rounds take over, default 30), ``DHAN_ORDER_FEED`` / ``DHAN_ORDER_FEED_URL``
    (the order-update feed, asked first about an order in doubt: :func:`order_feed`; the
    service ``dhan_order_feed``, started and stopped with the engine). Every order intent is
    written to ``order_intents`` before it is sent. Freeze quantities (legs above them are sliced) come
    from ``DHAN_INSTRUMENTS_URL``, downloaded on the first live order of each trading day.

    With ``settings`` (the engine's), also ``live_ops`` (:class:`~engine.ops.live.LiveOps`):
    the margin and live-entry preflight every live entry passes before an order leaves, the
    static-IP check, Dhan's kill switch and P&L exit as backstops. Every order of the process
    passes the order-rate governor of the client id (``LIVE_ORDER_RATE_PER_SEC``).
    """
    from engine.execution.intents import IntentStore

    session = getattr(market, "dhan_session", None)
    if not isinstance(session, _Session):
        session = _Session(dhan_config(config), _LazyPgStore(lambda: pool))
    session.engine_clock = clock
    services = token_services(config, pool, follow_only=config.token_refresher_external,
                              session=session)
    product = getattr(config, "dhan_product_type", "") or _env_choice(
        "DHAN_PRODUCT_TYPE", "MARGIN", ("MARGIN", "INTRADAY"))
    feed = order_feed(session)
    live_ops = None
    if settings is not None:
        from engine.broker.dhan.governor import governor_for
        from engine.market.calendar import NseCalendar
        from engine.ops.live import LiveOps

        governor_for(session.dcfg.client_id).follow(
            lambda: int(settings.get("LIVE_ORDER_RATE_PER_SEC")))
        live_ops = LiveOps(session.client(), settings.get, calendar or NseCalendar(),
                           product_type=product)
    broker = DhanLiveBroker(
        session.client(lookup_grace=_env_number("DHAN_LOOKUP_GRACE_SEC", "2", 0, 60)), clock,
        intents=IntentStore(pool), quotes=market.quote, product_type=product,
        fill_timeout_s=_env_number("DHAN_FILL_TIMEOUT_SEC", "10", 0.2, 300),
        limit_ticks=int(_env_number("DHAN_LIMIT_TICKS", "3", 0, 100)),
        resolve_window_s=_env_number("DHAN_RESOLVE_WINDOW_SEC", "30", 0, 300),
        max_order_qty=MasterOrderLimits(_master_loader(session.dcfg.instruments_url)),
        order_feed=feed, preflight=live_ops.preflight if live_ops is not None else None)
    logger.info("Dhan live broker for client %s at %s (%s, token %s)", session.dcfg.client_id,
                session.dcfg.api_base, broker.product_type,
                "followed from the external refresher" if config.token_refresher_external
                else "refreshed in-process")
    if feed is not None:
        services["dhan_order_feed"] = feed
    if live_ops is not None:
        services["live_ops"] = live_ops
    # the live stage's pre-entry margin (RiskActor): Dhan's multi-order calculator
    services["margin_calculator"] = DhanMarginCalculator(session.client(), product_type=product)
    return {**services, "live_broker": broker, "positions": BrokerPositions(session.client())}
