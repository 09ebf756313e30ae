"""The Dhan simulator's core: routing, authentication, rate limits, request log, admin API.

HTTP plumbing is in :mod:`engine.dhan_sim.server`; this class is transport-free so tests
and the server share one object (``server.sim``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from engine.broker.dhan.ratelimit import DHAN_LIMITS, EndpointClass, RateLimits
from engine.dhan_sim import handlers as h
from engine.dhan_sim import trader_control as tc
from engine.dhan_sim.auth import Account, Authority, TokenError
from engine.dhan_sim.csv_master import compact_csv, detailed_csv
from engine.dhan_sim.exchange import Exchange
from engine.dhan_sim.faults import Faults
from engine.dhan_sim.market import BuiltinMarket, MarketSource
from engine.timeutil import IST

Handler = Callable[[Any, h.Request], h.Reply]
ORD, DAT, QUO, NTR = (EndpointClass.ORDER, EndpointClass.DATA, EndpointClass.QUOTE,
              EndpointClass.NON_TRADING)

# (method, path regex, handler, rate class, auth: "token" | "data" | "none")
ROUTES: list[tuple[str, re.Pattern[str], Handler, EndpointClass | None, str]] = [
    (m, re.compile(p), fn, k, a) for m, p, fn, k, a in (
        ("POST", r"/v2/orders", h.place_order, ORD, "token"),
        ("POST", r"/v2/orders/slicing", h.place_slice_order, ORD, "token"),
        ("GET", r"/v2/orders", h.order_list, NTR, "token"),
        ("GET", r"/v2/orders/external/(?P<cid>[^/]+)", h.order_by_correlation, NTR, "token"),
        ("GET", r"/v2/orders/(?P<oid>[^/]+)", h.order_by_id, NTR, "token"),
        ("PUT", r"/v2/orders/(?P<oid>[^/]+)", h.modify_order, ORD, "token"),
        ("DELETE", r"/v2/orders/(?P<oid>[^/]+)", h.cancel_order, ORD, "token"),
        ("GET", r"/v2/trades/?", h.trades, NTR, "token"),
        ("GET", r"/v2/trades/(?P<oid>[^/]+)", h.trades, NTR, "token"),
        ("GET", r"/v2/positions", h.positions, NTR, "token"),
        ("POST", r"/v2/killswitch", tc.kill_switch, NTR, "token"),
        ("GET", r"/v2/killswitch", tc.kill_switch_status, NTR, "token"),
        ("POST", r"/v2/pnlExit", tc.set_pnl_exit, NTR, "token"),
        ("GET", r"/v2/pnlExit", tc.get_pnl_exit, NTR, "token"),
        ("DELETE", r"/v2/pnlExit", tc.stop_pnl_exit, NTR, "token"),
        ("GET", r"/v2/ip/getIP", tc.get_ip, NTR, "token"),
        ("POST", r"/v2/ip/setIP", tc.set_ip, NTR, "token"),
        ("PUT", r"/v2/ip/modifyIP", tc.set_ip, NTR, "token"),
        ("GET", r"/ip-echo", tc.ip_echo, None, "none"),
        ("GET", r"/v2/fundlimit", h.fund_limit, NTR, "token"),
        ("POST", r"/v2/margincalculator", h.margin, NTR, "token"),
        ("POST", r"/v2/margincalculator/multi", h.margin_multi, NTR, "token"),
        ("GET", r"/v2/profile", h.profile, NTR, "token"),
        ("GET", r"/v2/RenewToken", h.renew_token, NTR, "token"),
        ("POST", r"/v2/RenewToken", h.renew_token, NTR, "token"),
        ("POST", r"/v2/optionchain", h.option_chain, DAT, "data"),
        ("POST", r"/v2/optionchain/expirylist", h.expiry_list, DAT, "data"),
        ("POST", r"/v2/marketfeed/(?P<kind>ltp|ohlc|quote)", h.market_feed, QUO, "data"),
        ("POST", r"/v2/charts/(?P<kind>historical|intraday)", h.charts, DAT, "token"),
        ("POST", r"/app/generateAccessToken", h.generate_access_token, None, "none"),
    )
]
UNIQUE_PATHS = ("/v2/optionchain", "/v2/optionchain/expirylist")


class DhanSimulator:
    """Simulated Dhan v2 for one (or more) client accounts over a :class:`MarketSource`.

    Args:
        market: the market (default: a :class:`BuiltinMarket`).
        client_id / pin / totp_secret: the default account (secret random when ``None``).
        limits: rate limits to enforce (Dhan's by default; ``margin`` is ignored here).
        transit_sec: how long a new order stays in TRANSIT.
        mint_throttle: seconds during which a second TOTP mint is refused.
        order_by_id_shape: ``"list"`` (one-element array) or ``"dict"`` (bare object).
        renew_token_key: ``"token"`` (measured) or ``"accessToken"`` in the renew answer.
        cancel_status: HTTP status of a successful cancel (202 per SKILL, or 200).
        ip_error_code: ``"DH-911"`` or ``"DH-905"`` ("Invalid IP") for non-whitelisted IPs.
    """

    def __init__(self, market: MarketSource | None = None, *, client_id: str = "1000000001",
                 pin: str = "123456", totp_secret: str | None = None,
                 limits: RateLimits = DHAN_LIMITS, transit_sec: float = 0.05,
                 mint_throttle: float = 120.0, order_by_id_shape: str = "list",
                 renew_token_key: str = "token",  # noqa: S107
                 cancel_status: int = 202,
                 ip_error_code: str = "DH-911") -> None:
        self.market = market or BuiltinMarket()
        self.authority = Authority(mint_throttle=mint_throttle)
        acct = Account(client_id=client_id, pin=pin)
        if totp_secret:
            acct.totp_secret = totp_secret
        self.account = self.authority.add_account(acct)
        self.exchange = Exchange(self.market, transit_sec=transit_sec,
                                 calendar=getattr(self.market, "calendar", None))
        self.faults = Faults()
        self.limits = limits
        self.order_by_id_shape = order_by_id_shape
        self.renew_token_key = renew_token_key
        self.cancel_status = cancel_status
        self.ip_error_code = ip_error_code
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._accepted: dict[tuple[str, EndpointClass], deque[float]] = {}
        self._unique: dict[tuple[Any, ...], float] = {}
        self.request_log: list[dict[str, Any]] = []
        self.order_ws_url: str | None = None  # set by the order-update WebSocket server

    # ----------------------------------------------------------------- helpers
    def advance(self) -> None:
        """Move the exchange's orders along (every request does; so does the order-update
        WebSocket while a client listens), then apply any P&L-based exit that triggered."""
        self.exchange.advance(lambda cid: self.exchange.funds(
            cid, self.authority.accounts[cid].sod_limit)["available"])
        if any(a.pnl_exit is not None or a.kill_switch_pending
               for a in self.authority.accounts.values()):
            tc.check_pnl_exits(self)

    def set_static_ip(self, client_id: str, ip: str | None, flag: str = "PRIMARY") -> None:
        """Set (``None``: remove) the account's PRIMARY/SECONDARY static IP; the whitelist
        of order APIs follows (no IP set: no check)."""
        acct = self.authority.accounts[client_id]
        if flag == "PRIMARY":
            acct.primary_ip = ip
        else:
            acct.secondary_ip = ip
        acct.ip_modified[flag] = datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S")
        ips = {x for x in (acct.primary_ip, acct.secondary_ip) if x}
        acct.allowed_ips = ips or None

    def issue_token(self, client_id: str | None = None, *, ttl: int = 86400) -> str:
        """Issue a token directly (replaces the account's current token)."""
        return self.authority.issue(client_id or self.account.client_id, ttl=ttl)[0]

    def accepted_times(self, klass: EndpointClass, client_id: str | None = None) -> list[float]:
        """Monotonic receipt times of requests of ``klass`` the rate limiter let through."""
        with self._lock:
            return list(self._accepted.get((client_id or self.account.client_id, klass), ()))

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict]:
        """Logged requests, optionally filtered by method and exact path."""
        with self._lock:
            return [r for r in self.request_log if (method is None or r["method"] == method)
                    and (path is None or r["path"] == path)]

    def _rate_ok(self, client_id: str, klass: EndpointClass, key: tuple[Any, ...] | None,
                 now: float) -> bool:
        with self._lock:
            log = self._accepted.setdefault((client_id, klass), deque())
            for window in self.limits.windows.get(klass, ()):
                if self._count_since(log, now - window.seconds, window.limit) >= window.limit:
                    return False
            if key is not None:
                last = self._unique.get(key)
                if last is not None and now - last < self.limits.unique_interval:
                    return False
                self._unique[key] = now
            log.append(now)
            while log and log[0] < now - 86400:
                log.popleft()
            return True

    @staticmethod
    def _count_since(log: deque[float], cutoff: float, limit: int) -> int:
        """Entries after ``cutoff``, counted from the newest (receipt times of concurrent
        requests may be out of order by a little), stopping at ``limit``."""
        count = 0
        for t in reversed(log):
            if t > cutoff:
                count += 1
                if count >= limit:
                    break
            elif t < cutoff - 1.0:
                break
        return count

    # ----------------------------------------------------------------- dispatch
    def handle(self, req: h.Request, received: float | None = None) -> h.Reply:
        """Route, authenticate, rate-limit and answer one request."""
        received = time.monotonic() if received is None else received
        reply = self._dispatch(req, received)
        self.record(req, received, reply.status)
        return reply

    def record(self, req: h.Request, received: float, status: int, fault: str | None = None
               ) -> None:
        """Append to :attr:`request_log` (also used for answers made by injected faults)."""
        with self._lock:
            self.request_log.append({"t": received, "method": req.method, "path": req.path,
                                     "status": status, "fault": fault})

    def _dispatch(self, req: h.Request, received: float) -> h.Reply:
        if req.path.startswith("/__admin/"):
            return self._admin(req)
        if req.method == "GET" and req.path == "/api-data/api-scrip-master.csv":
            return h.Reply(200, raw=compact_csv(self.market.instruments()).encode(),
                           content_type="text/csv")
        if req.method == "GET" and req.path == "/api-data/api-scrip-master-detailed.csv":
            return h.Reply(200, raw=detailed_csv(self.market.instruments()).encode(),
                           content_type="text/csv")
        route = None
        for method, pattern, fn, klass, auth in ROUTES:
            match = pattern.fullmatch(req.path)
            if match and method == req.method:
                route = (fn, klass, auth)
                req.params = match.groupdict()
                break
        if route is None:
            return h.not_found(req.method, req.path)
        fn, klass, auth = route
        if req.body is h.BAD_JSON:
            return h.input_error()
        if auth != "none":
            try:
                req.account = self.authority.verify(req.headers.get("access-token"))
            except TokenError as exc:
                if exc.code == "DH-906":
                    return h.order_error(str(exc))
                return h.dh_error(401, "DH-901", "Invalid_Authentication", str(exc))
            if auth == "data":
                if req.headers.get("client-id") != req.account.client_id:
                    return h.data_error(401, "808", "Authentication Failed - Client ID or "
                                                    "Access Token invalid")
                if not req.account.data_plan:
                    return h.data_error(401, "806", "Data APIs not Subscribed")
        if klass is not None and req.account is not None:
            key = None
            if req.path in UNIQUE_PATHS:
                body = req.body if isinstance(req.body, dict) else {}
                key = (req.account.client_id, req.path, str(body.get("UnderlyingScrip")),
                       body.get("UnderlyingSeg"), body.get("Expiry"))
            if not self._rate_ok(req.account.client_id, klass, key, received):
                if auth == "data":
                    return h.data_error(429, "805", "Too many requests")
                return h.dh_error(429, "DH-904", "Rate_Limit",
                                  "Too many requests on server from single user breaching rate "
                                  "limits. Try throttling API calls.")
        self.advance()
        return fn(self, req)

    # ------------------------------------------------------------------- admin
    def _admin(self, req: h.Request) -> h.Reply:
        body = req.body if isinstance(req.body, dict) else {}
        try:
            if req.path == "/__admin/faults" and req.method == "POST":
                self.faults.add_json(body)
                return h.Reply(200, {"faults": self.faults.pending()})
            if req.path == "/__admin/faults" and req.method == "DELETE":
                self.faults.clear()
                return h.Reply(200, {"faults": []})
            if req.path == "/__admin/token" and req.method == "POST":
                token = self.issue_token(body.get("client_id"), ttl=int(body.get("ttl", 86400)))
                return h.Reply(200, {"accessToken": token})
            if req.path == "/__admin/spot" and req.method == "POST":
                set_spot = getattr(self.market, "set_spot", None)
                if set_spot is None:
                    return h.Reply(400, {"error": "market source has no set_spot"})
                set_spot(float(body["spot"]))
                return h.Reply(200, {"spot": self.market.spot()})
            if req.path == "/__admin/state" and req.method == "GET":
                orders = [o.wire(self.exchange.row(o.body["securityId"]))
                          for o in list(self.exchange.orders.values())]
                return h.Reply(200, {"orders": orders, "faults": self.faults.pending(),
                                     "requests": len(self.request_log)})
            reply = self._admin_broker(req, body)
            if reply is not None:
                return reply
        except (KeyError, TypeError, ValueError) as exc:
            return h.Reply(400, {"error": f"bad admin request: {exc}"})
        return h.Reply(404, {"error": f"unknown admin endpoint {req.method} {req.path}"})

    def _admin_broker(self, req: h.Request, body: dict[str, Any]) -> h.Reply | None:
        """Closes the broker makes by itself (``engine.dhan_sim.exchange``):

        * ``POST /__admin/square_off`` ``{"security_id"?, "product"?, "client_id"?}``: an RMS
          square-off of the matching open positions (all when no filter), at the market;
        * ``POST /__admin/settlement_price`` ``{"expiry": "YYYY-MM-DD", "spot": 23456.7}``:
          the final settlement price of an expiry (the NIFTY close);
        * ``GET /__admin/settlements``: the expiry settlements made so far;
        * ``POST /__admin/manual_order`` ``{"security_id", "side", "quantity", "product"?,
          "client_id"?}``: an order placed by hand on the broker's terminal (at the market).
        """
        ex = self.exchange
        if req.path == "/__admin/square_off" and req.method == "POST":
            self.advance()  # due orders first: the square-off closes what is held now
            orders = ex.square_off(client_id=body.get("client_id"),
                                   security_id=body.get("security_id"),
                                   product=body.get("product"), by="RMS")
            return h.Reply(200, {"orders": [o.wire(ex.row(o.body["securityId"]))
                                            for o in orders]})
        if req.path == "/__admin/manual_order" and req.method == "POST":
            self.advance()
            order = ex.manual_order(client_id=str(body.get("client_id") or self.account.client_id),
                                    security_id=str(body["security_id"]),
                                    side=str(body["side"]), quantity=int(body["quantity"]),
                                    product=str(body.get("product") or "MARGIN"))
            return h.Reply(200, {"order": order.wire(ex.row(order.body["securityId"]))})
        if req.path == "/__admin/settlement_price" and req.method == "POST":
            expiry = date.fromisoformat(str(body["expiry"]))
            spot = float(body["spot"])
            if not spot > 0:
                raise ValueError(f"settlement spot must be positive, got {spot}")
            ex.final_settlement[expiry] = spot
            return h.Reply(200, {"expiry": expiry.isoformat(), "spot": spot})
        if req.path == "/__admin/settlements" and req.method == "GET":
            self.advance()
            return h.Reply(200, {"settlements": list(ex.settlements)})
        return None
