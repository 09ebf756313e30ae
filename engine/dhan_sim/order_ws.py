"""The simulator's live order-update WebSocket (Dhan's ``wss://api-order-update.dhan.co``).

A small server of its own (``OrderUpdateServer``, a ``ThreadingHTTPServer`` whose handler
upgrades to a WebSocket with ``simple_websocket``), on its own port: ``ws://host:port``.

Protocol as Dhan's (reference §11): the client sends ``{"LoginReq": {"MsgCode": 42,
"ClientId": ..., "Token": ...}, "UserType": "SELF"}`` first. A bad or expired token, a
revoked one or a client id that is not the token's is refused the way the REST API refuses it
(the error body ``{"errorType", "errorCode": "DH-901" / "DH-906", "errorMessage"}``, then a
close with code 1008); a malformed login gets DH-905. Dhan documents no acknowledgement, so a
good login is answered with nothing. Then every state change of every order of the account
(placed, RMS passed or rejected, each fill, cancelled, modified, expired) is pushed as
``{"Type": "order_alert", "Data": {...}}`` in the documented shape (abbreviated enums, the
status spelled like the documented example: ``Transit``, ``Pending``, ``Part_Traded``,
``Traded``, ``Rejected``, ``Cancelled``, ``Expired``). Nothing is replayed to a client that
connects later (nor to one that was disconnected).

While a client is logged in, the exchange is advanced every ``tick_s`` even without REST
requests (orders fill on their own, as at a real exchange): a client whose REST lookups all
fail still hears its order trade.

Faults (``sim.faults``, method ``WS``, path ``/order-update/<STATUS>/<correlationId>``):
``ws_drop`` (the alert is lost), ``ws_delay`` (sent ``seconds`` late) and ``ws_disconnect``
(the server drops the client's connections instead of sending; the alert is lost).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import simple_websocket

from engine.dhan_sim.auth import TokenError
from engine.redact import redact

if TYPE_CHECKING:
    from engine.dhan_sim.exchange import SimOrder
    from engine.dhan_sim.simulator import DhanSimulator

logger = logging.getLogger(__name__)

WS_FAULTS = ("ws_drop", "ws_delay", "ws_disconnect")
FEED_STATUS = {"TRANSIT": "Transit", "PENDING": "Pending", "PART_TRADED": "Part_Traded",
               "TRADED": "Traded", "REJECTED": "Rejected", "CANCELLED": "Cancelled",
               "EXPIRED": "Expired"}
_TXN = {"BUY": "B", "SELL": "S"}
_PRODUCT = {"CNC": "C", "INTRADAY": "I", "MARGIN": "M", "MTF": "F", "CO": "V", "BO": "B"}
_ORDER_TYPE = {"LIMIT": "LMT", "MARKET": "MKT", "STOP_LOSS": "SL", "STOP_LOSS_MARKET": "SLM"}
_SEGMENT = {"NSE_EQ": ("NSE", "E"), "NSE_FNO": ("NSE", "D"), "NSE_CURRENCY": ("NSE", "C"),
            "BSE_EQ": ("BSE", "E"), "BSE_FNO": ("BSE", "D"), "BSE_CURRENCY": ("BSE", "C"),
            "MCX_COMM": ("MCX", "M")}
INVALID_LOGIN = "Client ID or user generated access token is invalid or expired."


def order_alert(order: SimOrder, row: Any) -> dict[str, Any]:
    """The ``order_alert`` message of ``order``'s current state (``row``: its instrument)."""
    b = order.body
    qty = int(b["quantity"])
    exchange, segment = _SEGMENT.get(str(b.get("exchangeSegment")), ("NSE", "D"))
    avg = round(order.avg_price, 2) if order.filled_qty else 0
    disclosed = int(b.get("disclosedQuantity") or 0)
    return {"Type": "order_alert", "Data": {
        "Exchange": exchange, "Segment": segment, "Source": "P",
        "SecurityId": str(b["securityId"]), "ClientId": order.client_id,
        "ExchOrderNo": "" if order.status == "TRANSIT" else f"1100{order.order_id}",
        "OrderNo": order.order_id, "Product": _PRODUCT.get(b["productType"], b["productType"]),
        "TxnType": _TXN.get(b["transactionType"], b["transactionType"]),
        "OrderType": _ORDER_TYPE.get(b["orderType"], b["orderType"]),
        "Validity": b.get("validity", "DAY"), "DiscQuantity": disclosed,
        "DiscQtyRem": disclosed, "RemainingQuantity": qty - order.filled_qty, "Quantity": qty,
        "TradedQty": order.filled_qty, "Price": float(b.get("price") or 0),
        "TriggerPrice": float(b.get("triggerPrice") or 0), "TradedPrice": avg,
        "AvgTradedPrice": avg, "AlgoOrdNo": None,
        "OffMktFlag": "1" if b.get("afterMarketOrder") else "0",
        "OrderDateTime": order.create_time, "ExchOrderTime": order.exchange_time,
        "LastUpdatedTime": order.update_time, "Remarks": "NR", "MktType": "NL",
        "ReasonDescription": order.oms_error, "LegNo": 1,
        "Instrument": row.instrument if row else "", "Symbol": row.trading_symbol if row else "",
        "ProductName": b["productType"], "Status": FEED_STATUS.get(order.status, order.status),
        "LotSize": row.lot_size if row else 1,
        "StrikePrice": row.strike if row and row.strike else None,
        "ExpiryDate": f"{row.expiry.isoformat()} 00:00:00" if row and row.expiry
        else "0001-01-01 00:00:00",
        "OptType": (row.option_type or "XX") if row else "XX",
        "DisplayName": row.display_name if row else "", "Isin": "NA", "Series": "NA",
        "GoodTillDaysDate": order.create_time[:10], "RefLtp": avg or float(b.get("price") or 0),
        "TickSize": 0.05, "AlgoId": "0", "Multiplier": 1,
        "CorrelationId": b.get("correlationId", "")}}


@dataclass(eq=False)
class _Client:
    """One logged-in connection (written only under ``lock``)."""

    ws: simple_websocket.Server
    client_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, text: str) -> bool:
        with self.lock:
            try:
                self.ws.send(text)
                return True
            except (OSError, simple_websocket.ConnectionClosed):
                return False

    def close(self, code: int = 1000, reason: str = "") -> None:
        with self.lock, contextlib.suppress(OSError, simple_websocket.ConnectionClosed):
            self.ws.close(code, reason)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OrderUpdateServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("order-ws %s", redact(format % args))

    def do_GET(self) -> None:
        if self.headers.get("Upgrade", "").lower() != "websocket":
            body = b"WebSocket endpoint: send an Upgrade: websocket request\n"
            self.send_response(426)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        environ = {"gunicorn.socket": self.connection}
        for key, value in self.headers.items():
            environ["HTTP_" + key.upper().replace("-", "_")] = value
        self.close_connection = True
        try:
            ws = simple_websocket.Server(environ)
        except (OSError, simple_websocket.ConnectionError) as exc:
            logger.debug("order-ws handshake failed: %s", exc)
            return
        self.server.serve_client(ws)


class OrderUpdateServer(ThreadingHTTPServer):
    """Dhan's order-update WebSocket for one :class:`DhanSimulator` (module docstring).

    Args:
        sim: the simulator (its authority checks logins, its exchange's changes are sent,
            its faults apply).
        host / port: where to listen (port 0: any free port).
        login_timeout_s: a connection that sends no login within this is closed.
        tick_s: how often the exchange is advanced while a client is logged in.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sim: DhanSimulator, host: str = "127.0.0.1", port: int = 0, *,
                 login_timeout_s: float = 10.0, tick_s: float = 0.025) -> None:
        super().__init__((host, port), _Handler)
        self.sim = sim
        self.login_timeout_s, self.tick_s = float(login_timeout_s), float(tick_s)
        self._clients: list[_Client] = []
        self._lock = threading.Lock()
        # alerts to send; None stops the dispatcher, False only wakes it (a login)
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | bool | None] = queue.Queue()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self.sent = 0          # alerts delivered (per connection)
        self.dropped = 0       # alerts lost to ws_drop / ws_disconnect faults
        self.logins = 0        # accepted logins
        self.refused = 0       # refused logins
        self.last_login: Any = None  # the last login message, parsed (tests check its shape)
        sim.order_ws_url = self.url
        sim.exchange.on_change = self.publish

    @property
    def url(self) -> str:
        """``ws://host:port`` (``DHAN_ORDER_FEED_URL``)."""
        host, port = self.server_address[:2]
        return f"ws://{host}:{port}"

    @property
    def logged_in(self) -> int:
        """Connections logged in now."""
        with self._lock:
            return len(self._clients)

    def start(self) -> OrderUpdateServer:
        """Serve and dispatch in daemon threads."""
        if not self._workers:
            self._workers = [
                threading.Thread(target=self.serve_forever, args=(0.05,),
                                 name="dhan-sim-order-ws", daemon=True),
                threading.Thread(target=self._dispatch, name="dhan-sim-order-ws-dispatch",
                                 daemon=True)]
            for t in self._workers:
                t.start()
        return self

    def stop(self) -> None:
        """Close every connection, stop serving and dispatching."""
        self._stopping.set()
        self._queue.put(None)
        self.drop_connections()
        if self._workers:
            self.shutdown()
        self.server_close()
        for t in self._workers:
            t.join(timeout=5)

    def drop_connections(self, client_id: str | None = None) -> int:
        """Close the connections (of ``client_id``) without a close frame, as a network
        failure would; returns how many."""
        with self._lock:
            victims = [c for c in self._clients if client_id is None or c.client_id == client_id]
            self._clients = [c for c in self._clients if c not in victims]
        for c in victims:
            with c.lock, contextlib.suppress(OSError):
                c.ws.sock.shutdown(socket.SHUT_RDWR)
                c.ws.sock.close()
        return len(victims)

    # ------------------------------------------------------------------ connections
    def serve_client(self, ws: simple_websocket.Server) -> None:
        """The life of one connection (in its handler thread): login, then stay registered
        until it closes."""
        try:
            text = ws.receive(timeout=self.login_timeout_s)
        except simple_websocket.ConnectionClosed:
            return
        if text is None:
            with contextlib.suppress(OSError, simple_websocket.ConnectionClosed):
                ws.close(1008, "no login")
            return
        client_id, error = self._login(text)
        if error is not None:
            self.refused += 1
            logger.info("order-ws login refused: %s", error["errorCode"])
            with contextlib.suppress(OSError, simple_websocket.ConnectionClosed):
                ws.send(json.dumps(error))
                ws.close(1008, error["errorCode"])
            return
        client = _Client(ws=ws, client_id=client_id)
        with self._lock:
            self._clients.append(client)
            self.logins += 1
        self._queue.put(False)  # the exchange clock runs from now on
        try:
            while not self._stopping.is_set() and ws.connected:
                try:
                    ws.receive(timeout=0.5)  # nothing is expected from the client
                except simple_websocket.ConnectionClosed:
                    break
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)

    def _login(self, text: Any) -> tuple[str, dict[str, str] | None]:
        def error(code: str, kind: str, message: str) -> tuple[str, dict[str, str]]:
            return "", {"errorType": kind, "errorCode": code, "errorMessage": message}

        try:
            msg = json.loads(text)
            self.last_login = msg
            req = msg["LoginReq"]
            code, client_id, token = req["MsgCode"], str(req["ClientId"]), req["Token"]
            user_type = msg["UserType"]
        except (TypeError, ValueError, KeyError):
            return error("DH-905", "Input_Exception", "Login message must be {\"LoginReq\": "
                         "{\"MsgCode\": 42, \"ClientId\", \"Token\"}, \"UserType\": \"SELF\"}")
        if code != 42 or user_type != "SELF":
            return error("DH-905", "Input_Exception",
                         f"MsgCode must be 42 and UserType SELF, got {code!r} / {user_type!r}")
        try:
            account = self.sim.authority.verify(token if isinstance(token, str) else None)
        except TokenError as exc:
            if exc.code == "DH-906":
                return error("DH-906", "Order_Error", str(exc))
            return error("DH-901", "Invalid_Authentication", str(exc))
        if client_id != account.client_id:
            return error("DH-901", "Invalid_Authentication", INVALID_LOGIN)
        return account.client_id, None

    # ------------------------------------------------------------------ alerts
    def publish(self, order: SimOrder) -> None:
        """Exchange hook (called under the exchange's lock): queue ``order``'s alert."""
        if self._stopping.is_set():
            return
        alert = order_alert(order, self.sim.exchange.row(order.body["securityId"]))
        self._queue.put((order.client_id, alert))

    def _dispatch(self) -> None:
        """Send queued alerts in order; advance the exchange while anyone listens."""
        last_advance = 0.0
        while not self._stopping.is_set():
            try:  # nobody logged in: sleep until an alert or a login
                item = self._queue.get(timeout=self.tick_s if self.logged_in else None)
            except queue.Empty:
                item = False
            if item is None:
                break
            if item:
                self._deliver(*item)
            now = time.monotonic()
            if now - last_advance >= self.tick_s and self.logged_in:
                last_advance = now
                try:
                    self.sim.advance()
                except Exception:
                    logger.exception("order-ws: advancing the exchange failed")

    def _deliver(self, client_id: str, alert: dict[str, Any], *, delayed: bool = False) -> None:
        with self._lock:
            targets = [c for c in self._clients if c.client_id == client_id]
        if not targets:
            return  # nobody listens: lost, as at Dhan (no replay)
        data = alert["Data"]
        if not delayed:
            path = f"/order-update/{str(data['Status']).upper()}/{data['CorrelationId']}"
            fault = self.sim.faults.take("WS", path, WS_FAULTS)
            if fault is not None:
                if fault.kind == "ws_drop":
                    self.dropped += 1
                    return
                if fault.kind == "ws_disconnect":
                    self.dropped += 1
                    self.drop_connections(client_id)
                    return
                timer = threading.Timer(float(fault.params.get("seconds", 1.0)), self._deliver,
                                        args=(client_id, alert), kwargs={"delayed": True})
                timer.daemon = True
                timer.start()
                return
        text = json.dumps(alert)
        for c in targets:
            if c.send(text):
                self.sent += 1
