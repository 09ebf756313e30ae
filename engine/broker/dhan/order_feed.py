"""Dhan's live order-update WebSocket: the first source the live broker asks about an order
whose outcome is unknown (REST lookups remain the fallback).

Protocol (reference §11, SKILL ``LIVE_ORDER_UPDATE.md``, SDK ``orderupdate.py``): connect to
``wss://api-order-update.dhan.co`` and send ``{"LoginReq": {"MsgCode": 42, "ClientId": id,
"Token": jwt}, "UserType": "SELF"}``; the server then pushes, for every state change of every
order of the account, ``{"Type": "order_alert", "Data": {...}}`` with abbreviated enums
(``TxnType`` B/S, ``Product`` C/I/M/F, ``OrderType`` LMT/MKT/SL/SLM) and a ``Status`` whose
spelling is not settled (the documented example says ``"Cancelled"``, the field table
``CANCELLED``): statuses are normalised case-insensitively to the REST ones (TRANSIT,
PENDING, PART_TRADED, TRADED, REJECTED, CANCELLED, EXPIRED); a PENDING alert with some
quantity traded is PART_TRADED. ⚠ Dhan documents no login acknowledgement and no refusal
message: a refusal is recognised as an error body (``errorCode``, the REST shape) or a close
with a policy / 4xxx code right after the login, before any alert.

:class:`OrderFeed` runs in its own daemon thread: connect, log in with the token of the same
provider the REST client uses, keep the latest :class:`OrderUpdate` per order id and per
correlation id, reconnect (and log in again) with capped exponential back-off when the
connection drops or the login is refused. A refusal also goes to ``on_auth_error`` (the
token hook of the REST clients). The token is never logged; every log line goes through
:func:`engine.redact.redact`.

The feed is never the only word on an order: an alert missed while disconnected is not
replayed, so anything the feed does not know (or knows only as an open state) is looked up
by REST (``engine.broker.dhan.live_broker``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import simple_websocket
from simple_websocket.ws import Base as _WsBase
from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, Request
from wsproto.utilities import LocalProtocolError

from engine.broker.dhan.errors import AuthenticationError, DhanError
from engine.broker.dhan.models import FINAL_STATUSES, Order, dec, wire_time
from engine.redact import redact, register_secret
from engine.timeutil import now_ist

logger = logging.getLogger(__name__)

DEFAULT_URL = "wss://api-order-update.dhan.co"
LOGIN_MSG_CODE = 42
ENDPOINT = "WS order-update"
STATUSES = ("TRANSIT", "PENDING", "PART_TRADED", "TRADED", "REJECTED", "CANCELLED", "EXPIRED")
_STATUS_ALIASES = {"PARTTRADED": "PART_TRADED", "PARTIALLY_TRADED": "PART_TRADED",
                   "PART_FILLED": "PART_TRADED", "PARTIALLY_FILLED": "PART_TRADED",
                   "CANCELED": "CANCELLED", "OPEN": "PENDING", "COMPLETE": "TRADED"}
_SIDES = {"B": "BUY", "S": "SELL", "BUY": "BUY", "SELL": "SELL"}
_PRODUCTS = {"C": "CNC", "I": "INTRADAY", "M": "MARGIN", "F": "MTF", "V": "CO", "B": "BO"}
_ORDER_TYPES = {"LMT": "LIMIT", "MKT": "MARKET", "SL": "STOP_LOSS", "SLM": "STOP_LOSS_MARKET"}
_SEGMENTS = {("NSE", "E"): "NSE_EQ", ("NSE", "D"): "NSE_FNO", ("NSE", "C"): "NSE_CURRENCY",
             ("BSE", "E"): "BSE_EQ", ("BSE", "D"): "BSE_FNO", ("BSE", "C"): "BSE_CURRENCY",
             ("MCX", "M"): "MCX_COMM"}
#: close codes that mean "not logged in" (policy violation, or an application code)
_REFUSAL_CLOSE_CODES = frozenset({1008, *range(4000, 5000)})


def normalise_status(status: Any, quantity: int = 0, traded: int = 0) -> str | None:
    """A feed ``Status`` as the REST status (``None`` when it is not an order state)."""
    key = str(status or "").strip().upper().replace(" ", "_").replace("-", "_")
    key = _STATUS_ALIASES.get(key, key)
    if key not in STATUSES:
        return None
    if key == "PENDING" and 0 < traded < quantity:
        return "PART_TRADED"
    return key


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdate:
    """One ``order_alert``, parsed (enums in REST spelling, prices ``Decimal``).

    Attributes:
        order_id: Dhan's ``OrderNo``.
        correlation_id: ``CorrelationId`` (``None`` when empty).
        status: the REST status (see :func:`normalise_status`); ``feed_status`` as sent.
        received_at: wall-clock IST of arrival; ``received_mono`` the monotonic time.
    """

    order_id: str
    correlation_id: str | None
    exchange_order_id: str | None
    security_id: str
    side: str
    product_type: str
    order_type: str
    exchange_segment: str
    quantity: int
    traded_qty: int
    remaining_qty: int
    price: Decimal | None
    trigger_price: Decimal | None
    avg_price: Decimal | None
    status: str
    feed_status: str
    reason: str | None
    symbol: str | None
    received_at: datetime
    received_mono: float
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def final(self) -> bool:
        """True for TRADED / REJECTED / CANCELLED / EXPIRED."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_alert(cls, data: Any, *, received_at: datetime | None = None,
                   received_mono: float | None = None) -> OrderUpdate | None:
        """Parse an alert's ``Data`` (``None`` when it has no order number, side or known
        status: such a message says nothing about an order's state)."""
        if not isinstance(data, dict) or not str(data.get("OrderNo") or "").strip():
            return None
        qty, traded = _int(data.get("Quantity")), _int(data.get("TradedQty"))
        status = normalise_status(data.get("Status"), qty, traded)
        side = _SIDES.get(str(data.get("TxnType") or "").upper())
        if status is None or side is None:
            return None
        avg = dec(data.get("AvgTradedPrice"))
        remaining = data.get("RemainingQuantity")
        exchange, segment = str(data.get("Exchange") or ""), str(data.get("Segment") or "")
        product = str(data.get("Product") or "")
        kind = str(data.get("OrderType") or "")
        return cls(
            order_id=str(data["OrderNo"]).strip(),
            correlation_id=str(data.get("CorrelationId") or "").strip() or None,
            exchange_order_id=str(data.get("ExchOrderNo") or "").strip() or None,
            security_id=str(data.get("SecurityId") or "").strip(), side=side,
            product_type=_PRODUCTS.get(product.upper(), product),
            order_type=_ORDER_TYPES.get(kind.upper(), kind),
            exchange_segment=_SEGMENTS.get((exchange.upper(), segment.upper()),
                                           f"{exchange}_{segment}".strip("_")),
            quantity=qty, traded_qty=traded,
            remaining_qty=_int(remaining) if remaining is not None else max(qty - traded, 0),
            price=dec(data.get("Price")), trigger_price=dec(data.get("TriggerPrice")),
            avg_price=avg if traded > 0 else None, status=status,
            feed_status=str(data.get("Status")), reason=str(data.get("ReasonDescription") or "")
            or None, symbol=str(data.get("Symbol") or "") or None,
            received_at=received_at or now_ist(),
            received_mono=time.monotonic() if received_mono is None else received_mono,
            raw=dict(data))

    def to_order(self) -> Order:
        """The update as a REST :class:`~engine.broker.dhan.models.Order` (what the live
        broker follows)."""
        d = self.raw
        return Order(order_id=self.order_id, correlation_id=self.correlation_id,
                     status=self.status, transaction_type=self.side,
                     exchange_segment=self.exchange_segment, product_type=self.product_type,
                     order_type=self.order_type, security_id=self.security_id,
                     trading_symbol=self.symbol, quantity=self.quantity, price=self.price,
                     trigger_price=self.trigger_price, filled_qty=self.traded_qty,
                     remaining_quantity=self.remaining_qty,
                     average_traded_price=self.avg_price, oms_error_description=self.reason,
                     create_time=wire_time(d.get("OrderDateTime")),
                     update_time=wire_time(d.get("LastUpdatedTime")),
                     exchange_time=wire_time(d.get("ExchOrderTime")), raw=d)


def _supersedes(new: OrderUpdate, old: OrderUpdate | None) -> bool:
    """An update replaces the stored one unless it would move the order backwards (a late,
    delayed alert): a final state is never replaced by an open one, nor a larger traded
    quantity by a smaller one."""
    if old is None or old.order_id != new.order_id:
        return True
    if old.final and not new.final:
        return False
    return new.traded_qty >= old.traded_qty


class _FeedSocket(simple_websocket.Client):
    """``simple_websocket.Client`` with a bounded TCP connect and handshake (the stock client
    waits forever on both, and spins on a peer that closes during the handshake)."""

    def __init__(self, url: str, *, timeout: float, ping_interval: float | None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if secure else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.subprotocols: list[str] = []
        self.extra_headeers: list[tuple[str, str]] = []  # (sic) simple_websocket's name
        self._handshake_timeout = timeout
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if secure:
                context = ssl_context or ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=self.host)
            _WsBase.__init__(self, sock, connection_type=ConnectionType.CLIENT,
                             ping_interval=ping_interval)
        except BaseException:
            sock.close()
            raise

    def handshake(self) -> None:
        self.sock.settimeout(self._handshake_timeout)
        self.sock.sendall(self.ws.send(Request(host=self.host, target=self.path)))
        event = None
        while event is None:
            data = self.sock.recv(self.receive_bytes)
            if not data:
                raise simple_websocket.ConnectionError(None)
            self.ws.receive_data(data)
            event = next(self.ws.events(), None)
        if isinstance(event, RejectConnection):
            raise simple_websocket.ConnectionError(event.status_code)
        if not isinstance(event, AcceptConnection):
            raise simple_websocket.ConnectionError(400)
        self.sock.settimeout(None)
        self.connected = True
        # frames that came in the same read as the 101 (an update sent at once): taken now,
        # not left in wsproto's buffer until the next read (the stock client's handshake
        # leaves them there; its reader only looks at events after new data arrives)
        self.connected = self._handle_events()


class OrderFeed:
    """Client of Dhan's order-update WebSocket, in its own daemon thread (module docstring).

    Args:
        client_id: the Dhan client id (sent in the login, never logged).
        token_provider: returns the current access token (the REST clients' provider).
        url: ``ws://`` or ``wss://`` URL (default Dhan's).
        on_auth_error: called with an :class:`AuthenticationError` when the login is refused.
        backoff_s: ``(first, longest)`` pause between connection attempts.
        connect_timeout_s: TCP connect and handshake timeout.
        ping_interval_s: client pings (a silent peer is dropped after twice this); ``None``
            for none.
        max_orders: updates kept per index (the oldest orders are forgotten first).
    """

    def __init__(self, client_id: str, token_provider: Callable[[], str | None], *,
                 url: str = DEFAULT_URL,
                 on_auth_error: Callable[[DhanError], None] | None = None,
                 backoff_s: tuple[float, float] = (0.5, 30.0), connect_timeout_s: float = 10.0,
                 ping_interval_s: float | None = 30.0, max_orders: int = 10_000) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("ws", "wss") or not urlsplit(url).hostname:
            raise ValueError(f"order feed URL must be ws://host[:port] or wss://host[:port], "
                             f"got {url!r}")
        if not str(client_id).strip():
            raise ValueError("order feed needs a Dhan client id")
        if backoff_s[0] <= 0 or backoff_s[1] < backoff_s[0]:
            raise ValueError(f"backoff_s must be (first > 0, longest >= first), got {backoff_s}")
        self.url = url
        self._client_id = str(client_id)
        self._token_provider = token_provider
        self._on_auth_error = on_auth_error
        self.backoff_s = (float(backoff_s[0]), float(backoff_s[1]))
        self.connect_timeout_s = float(connect_timeout_s)
        self.ping_interval_s = ping_interval_s
        self._max = int(max_orders)
        self._cond = threading.Condition()
        self._by_order: OrderedDict[str, OrderUpdate] = OrderedDict()
        self._by_cid: OrderedDict[str, OrderUpdate] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ws: _FeedSocket | None = None
        self._connected = False
        self.connects = 0          # successful connections (each followed by a login)
        self.auth_failures = 0     # logins refused
        self.messages = 0          # order alerts stored
        self.last_error = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> OrderFeed:
        """Start the feed thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="dhan-order-feed",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection and end the thread."""
        self._stop.set()
        self._close_socket()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                logger.warning("order feed thread did not stop within %.1fs", timeout)
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        """True while a connection is open and its login was not refused."""
        return self._connected

    def drop_connection(self) -> None:
        """Close the current connection (the thread reconnects after its back-off)."""
        self._close_socket()

    # ------------------------------------------------------------------ queries
    def latest(self, correlation_id: str | None = None, order_id: str | None = None
               ) -> OrderUpdate | None:
        """The latest update of the order with ``correlation_id`` (else of ``order_id``)."""
        with self._cond:
            return self._latest(correlation_id, order_id)

    def _latest(self, correlation_id: str | None, order_id: str | None) -> OrderUpdate | None:
        found = self._by_cid.get(correlation_id) if correlation_id else None
        if found is None and order_id:
            found = self._by_order.get(str(order_id))
        return found

    def wait_for(self, correlation_id: str | None = None, timeout: float = 5.0, *,
                 order_id: str | None = None,
                 until: Callable[[OrderUpdate], bool] | None = None) -> OrderUpdate | None:
        """Wait up to ``timeout`` seconds for an update of the order satisfying ``until``
        (default: any update); the latest such update, or ``None``."""
        if not correlation_id and not order_id:
            raise ValueError("wait_for needs a correlation_id or an order_id")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._latest(correlation_id, order_id)
                if found is not None and (until is None or until(found)):
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)

    def wait_connected(self, timeout: float = 5.0) -> bool:
        """Wait until a connection is open (logged in, not refused so far)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._connected:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            healthy = self._session()
            if self._stop.is_set():
                break
            if healthy:
                delay = self.backoff_s[0]
            logger.info("order feed: reconnecting in %.1fs", delay)
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff_s[1])
        logger.info("order feed stopped")

    def _session(self) -> bool:
        """One connection: connect, log in, read alerts until it closes. True when the
        connection was useful (alerts came, or it stayed up a while), which resets the
        back-off."""
        token = self._token_provider()
        if not token:
            logger.info("order feed: no Dhan access token yet")
            self.last_error = "order feed: no Dhan access token yet"
            return False
        register_secret(token)
        try:
            ws = _FeedSocket(self.url, timeout=self.connect_timeout_s,
                             ping_interval=self.ping_interval_s)
        except (OSError, simple_websocket.ConnectionError) as exc:
            self._note(f"cannot connect to {self.url} ({type(exc).__name__}: {exc})")
            return False
        login = {"LoginReq": {"MsgCode": LOGIN_MSG_CODE, "ClientId": self._client_id,
                              "Token": token}, "UserType": "SELF"}
        try:
            ws.send(json.dumps(login))
        except (OSError, simple_websocket.ConnectionClosed) as exc:
            self._note(f"connection to {self.url} lost before the login ({type(exc).__name__})")
            self._close(ws)
            return False
        with self._cond:
            self._ws = ws
            self._connected = True
            self.connects += 1
            self._cond.notify_all()
        logger.info("order feed connected to %s (connection %d)", self.url, self.connects)
        opened, alerts, refused = time.monotonic(), 0, False
        try:
            while not self._stop.is_set():
                try:
                    text = ws.receive(timeout=0.5)
                except simple_websocket.ConnectionClosed:
                    break
                if text is None:
                    if not ws.connected:
                        break
                    continue
                kind = self._on_message(text)
                if kind == "alert":
                    alerts += 1
                elif kind == "refused":
                    refused = True
                    break
        finally:
            with self._cond:
                self._connected = False
                if self._ws is ws:
                    self._ws = None
                self._cond.notify_all()
            code = getattr(ws, "close_reason", None)
            self._close(ws)
        if self._stop.is_set():
            return True
        quick = time.monotonic() - opened < 5.0  # a refusal follows the login at once
        if not refused and not alerts and quick and code in _REFUSAL_CLOSE_CODES:
            refused = True
            self._refused(f"connection closed with code {code}"
                          + (f" ({ws.close_message})" if ws.close_message else ""), None)
        if refused:
            return False
        self._note(f"connection to {self.url} closed (code {code})")
        return alerts > 0 or time.monotonic() - opened > max(5.0, self.backoff_s[1])

    def _on_message(self, text: Any) -> str:
        try:
            msg = json.loads(text)
        except (TypeError, ValueError):
            logger.debug("order feed: non-JSON message ignored")
            return "other"
        if not isinstance(msg, dict):
            return "other"
        if msg.get("Type") == "order_alert":
            update = OrderUpdate.from_alert(msg.get("Data"))
            if update is None:
                data = msg.get("Data") if isinstance(msg.get("Data"), dict) else {}
                logger.debug("order feed: alert without an order state ignored (order %s, "
                             "status %r)", data.get("OrderNo"), data.get("Status"))
                return "other"
            self._store(update)
            return "alert"
        code = msg.get("errorCode") or msg.get("ErrorCode")
        if code:
            text = str(msg.get("errorMessage") or msg.get("ErrorMessage") or "")
            self._refused(f"{code} {text}".strip(), str(code))
            return "refused"
        logger.debug("order feed: message of type %r ignored", msg.get("Type"))
        return "other"

    def _store(self, update: OrderUpdate) -> None:
        with self._cond:
            if _supersedes(update, self._by_order.get(update.order_id)):
                self._put(self._by_order, update.order_id, update)
            if update.correlation_id and _supersedes(update,
                                                     self._by_cid.get(update.correlation_id)):
                self._put(self._by_cid, update.correlation_id, update)
            self.messages += 1
            self._cond.notify_all()
        logger.debug("order feed: order %s (%s) %s %d/%d", update.order_id,
                     update.correlation_id, update.status, update.traded_qty, update.quantity)

    def _put(self, index: OrderedDict[str, OrderUpdate], key: str, update: OrderUpdate) -> None:
        index[key] = update
        index.move_to_end(key)
        while len(index) > self._max:
            index.popitem(last=False)

    def _refused(self, why: str, code: str | None) -> None:
        self.auth_failures += 1
        message = redact(f"order feed login refused: {why}")
        self.last_error = message
        logger.warning("%s; check the Dhan token (retrying with back-off)", message)
        if self._on_auth_error is not None:
            try:
                self._on_auth_error(AuthenticationError(message, code=code, endpoint=ENDPOINT))
            except Exception:
                logger.exception("order feed: the auth-error callback failed")

    def _note(self, why: str) -> None:
        message = redact(f"order feed: {why}")
        self.last_error = message
        logger.warning("%s", message)

    def _close_socket(self) -> None:
        with self._cond:
            ws = self._ws
        if ws is not None:
            self._close(ws)

    @staticmethod
    def _close(ws: _FeedSocket) -> None:
        """Close ``ws``; one already closing (stop() on another thread got there first) is
        only let go of, never an exception that would end the feed's thread."""
        try:
            if ws.connected:
                ws.close()
            else:
                ws.sock.close()
        except (OSError, simple_websocket.ConnectionClosed, LocalProtocolError):
            with contextlib.suppress(OSError):
                ws.sock.shutdown(socket.SHUT_RDWR)  # wakes its reader thread's recv
            with contextlib.suppress(OSError):
                ws.sock.close()
        ws.event.set()  # wake a reader waiting in receive()
