"""Endpoint handlers of the Dhan simulator: ``handler(sim, req) -> Reply``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.market.calendar import NseCalendar
from engine.messages.legs import InstrumentKind, Leg
from engine.risk.margin import estimate_margin
from engine.timeutil import IST

if TYPE_CHECKING:
    from engine.dhan_sim.auth import Account
    from engine.dhan_sim.simulator import DhanSimulator

ENUMS = {
    "transactionType": ("BUY", "SELL"),
    "exchangeSegment": ("NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO",
                        "BSE_CURRENCY", "MCX_COMM"),
    "productType": ("CNC", "INTRADAY", "MARGIN", "MTF", "CO", "BO"),
    "orderType": ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET"),
    "validity": ("DAY", "IOC"),
}
CID_RE = re.compile(r"^[A-Za-z0-9 _-]{1,25}$")
NO_ORDER = "Incorrect request for order and cannot be processed"
MARKET_CLOSED = "Market is Closed! Want to place an offline order?"
KILL_SWITCH_ON = "Kill Switch is active: trading is disabled for the day"
BAD_JSON = object()  # Request.body when the body was not valid JSON


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    client_ip: str
    params: dict[str, str] = field(default_factory=dict)
    account: Account | None = None


@dataclass
class Reply:
    """Status, JSON body (``None``: empty) or raw bytes with a content type."""

    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"


def dh_error(status: int, code: str, error_type: str, message: str) -> Reply:
    """Trading-API error body."""
    return Reply(status, {"errorType": error_type, "errorCode": code, "errorMessage": message})


def input_error(message: str = "Missing required fields, bad values for parameters etc.") -> Reply:
    return dh_error(400, "DH-905", "Input_Exception", message)


def order_error(message: str, status: int = 400) -> Reply:
    return dh_error(status, "DH-906", "Order_Error", message)


def data_error(status: int, code: str, message: str) -> Reply:
    """Data-API error body ``{"status": "failed", "data": {code: message}}``."""
    return Reply(status, {"status": "failed", "data": {code: message}})


def _body(req: Request) -> dict[str, Any]:
    return req.body if isinstance(req.body, dict) else {}


# ------------------------------------------------------------------------------ orders
def _validate_order(body: dict[str, Any]) -> str | None:
    if any(v == "" for v in body.values()):
        return "empty"
    for key, allowed in ENUMS.items():
        if body.get(key) not in allowed:
            return key
    if not str(body.get("securityId") or "").strip():
        return "securityId"
    try:
        if int(body.get("quantity")) <= 0:
            return "quantity"
        price = float(body.get("price") or 0)
    except (TypeError, ValueError):
        return "quantity/price"
    if body["orderType"] in ("LIMIT", "STOP_LOSS") and price <= 0:
        return "price"
    if body["orderType"].startswith("STOP_LOSS") and not body.get("triggerPrice"):
        return "triggerPrice"
    cid = body.get("correlationId")
    if cid is not None and not CID_RE.match(str(cid)):
        return "correlationId"
    return None


def _max_order_qty(sim: DhanSimulator, security_id: Any) -> int | None:
    """Largest order of a contract (a lot multiple below its freeze quantity), if known."""
    row = sim.exchange.row(str(security_id))
    if row is None or not row.freeze_qty:
        return None
    lot = max(1, row.lot_size)
    return max(lot, (row.freeze_qty - 1) // lot * lot)


def _freeze_error(sim: DhanSimulator, body: dict[str, Any]) -> Reply | None:
    limit = _max_order_qty(sim, body.get("securityId"))
    qty = int(body["quantity"])
    if limit is not None and qty > limit:
        return order_error(f"Order quantity {qty} exceeds the exchange freeze limit of {limit} "
                           "per order. Slice the order.")
    return None


def _order_gate(sim: DhanSimulator, req: Request, body: dict[str, Any]) -> Reply | None:
    """Checks every new order passes before it is accepted (IP, fields, kill switch,
    market hours); ``None`` when it may go on."""
    assert req.account is not None
    allowed = req.account.allowed_ips
    if allowed is not None and req.client_ip not in allowed:
        if sim.ip_error_code == "DH-905":
            return input_error("Invalid IP")
        return dh_error(400, "DH-911", "Invalid_IP", "Invalid IP: not whitelisted")
    if _validate_order(body):
        return input_error()
    if req.account.kill_switch:
        return order_error(KILL_SWITCH_ON)
    if not body.get("afterMarketOrder") and not sim.exchange.is_open():
        return order_error(MARKET_CLOSED)
    return None


def place_order(sim: DhanSimulator, req: Request) -> Reply:
    body = _body(req)
    assert req.account is not None
    refused = _order_gate(sim, req, body) or _freeze_error(sim, body)
    if refused is not None:
        return refused
    fault = sim.faults.take(req.method, req.path, ("reject_order",))
    reason = None
    if fault is not None:
        reason = str(fault.params.get("reason", "Insufficient Funds"))
        if fault.params.get("mode", "http") == "http":
            return order_error(reason)
    partial = sim.faults.take(req.method, req.path, ("partial_fill",))
    limit = int(partial.params.get("fill_qty", 1)) if partial is not None else None
    order = sim.exchange.place(req.account.client_id, body, reject_reason=reason,
                               fill_limit=limit)
    return Reply(200, {"orderId": order.order_id, "orderStatus": order.status})


def place_slice_order(sim: DhanSimulator, req: Request) -> Reply:
    """``POST /orders/slicing``: the quantity split into freeze-sized orders (the last takes
    the rest), all with the request's correlationId; answers an array of
    ``{orderId, orderStatus}``."""
    body = _body(req)
    assert req.account is not None
    refused = _order_gate(sim, req, body)
    if refused is not None:
        return refused
    total = int(body["quantity"])
    size = _max_order_qty(sim, body.get("securityId")) or total
    if not body.get("correlationId"):
        body = {**body, "correlationId": sim.exchange.new_correlation_id(req.account.client_id)}
    out = []
    for start in range(0, total, size):
        part = {**body, "quantity": min(size, total - start)}
        order = sim.exchange.place(req.account.client_id, part)
        out.append({"orderId": order.order_id, "orderStatus": order.status})
    return Reply(200, out)


def modify_order(sim: DhanSimulator, req: Request) -> Reply:
    order = sim.exchange.find(req.account.client_id, req.params["oid"])  # type: ignore[union-attr]
    if order is None:
        return order_error(NO_ORDER)
    body = _body(req)
    if any(v == "" for v in body.values()) or body.get("orderType") not in ENUMS["orderType"]:
        return input_error()
    if order.status not in ("TRANSIT", "PENDING"):
        return order_error(f"Order is not pending (status {order.status})")
    if order.modifications >= 25:
        return order_error("Maximum modifications (25) reached for this order")
    if "quantity" in body:
        try:
            if int(body["quantity"]) <= 0:
                return input_error()
        except (TypeError, ValueError):
            return input_error()
        refused = _freeze_error(sim, {**order.body, "quantity": body["quantity"]})
        if refused is not None:
            return refused
    sim.exchange.modify(order, body)
    return Reply(200, {"orderId": order.order_id, "orderStatus": order.status})


def cancel_order(sim: DhanSimulator, req: Request) -> Reply:
    order = sim.exchange.find(req.account.client_id, req.params["oid"])  # type: ignore[union-attr]
    if order is None:
        return order_error(NO_ORDER)
    if order.status == "TRANSIT":
        return order_error("Order is in Transit state")
    if order.status not in ("PENDING", "PART_TRADED"):
        return order_error(f"Order is not pending (status {order.status})")
    sim.exchange.cancel(order)
    return Reply(sim.cancel_status, {"orderId": order.order_id, "orderStatus": "CANCELLED"})


def _wire(sim: DhanSimulator, order: Any) -> dict[str, Any]:
    return order.wire(sim.exchange.row(order.body["securityId"]))


def order_list(sim: DhanSimulator, req: Request) -> Reply:
    orders = sim.exchange.client_orders(req.account.client_id)  # type: ignore[union-attr]
    return Reply(200, [_wire(sim, o) for o in orders])


def order_by_id(sim: DhanSimulator, req: Request) -> Reply:
    order = sim.exchange.find(req.account.client_id, req.params["oid"])  # type: ignore[union-attr]
    if order is None:
        return Reply(200, [])
    wire = _wire(sim, order)
    return Reply(200, wire if sim.order_by_id_shape == "dict" else [wire])


def order_by_correlation(sim: DhanSimulator, req: Request) -> Reply:
    order = sim.exchange.by_correlation(req.account.client_id,  # type: ignore[union-attr]
                                       req.params["cid"])
    if order is None or order.status == "TRANSIT":
        return order_error(NO_ORDER, status=404)
    return Reply(200, _wire(sim, order))


def trades(sim: DhanSimulator, req: Request) -> Reply:
    oid = req.params.get("oid")
    rows = [t for t in sim.exchange.trades if t["dhanClientId"] == req.account.client_id  # type: ignore[union-attr]
            and (oid is None or t["orderId"] == oid)]
    return Reply(200, rows)


# trader control (kill switch, P&L exit) and static IP: engine.dhan_sim.trader_control


def not_found(method: str, path: str) -> Reply:
    """Unknown endpoint: Dhan's error fields (what SDKs read) plus the gateway's 404 fields."""
    reply = dh_error(404, "DH-905", "Input_Exception",
                     f"No such endpoint: {method} {path}")
    reply.body.update({"timestamp": int(datetime.now(IST).timestamp() * 1000), "status": 404,
                       "error": "Not Found", "path": path})
    return reply


# ---------------------------------------------------------------------------- portfolio
def positions(sim: DhanSimulator, req: Request) -> Reply:
    return Reply(200, sim.exchange.position_rows(req.account.client_id))  # type: ignore[union-attr]


def fund_limit(sim: DhanSimulator, req: Request) -> Reply:
    acct = req.account
    assert acct is not None
    f = sim.exchange.funds(acct.client_id, acct.sod_limit)
    return Reply(200, {"dhanClientId": acct.client_id, "availabelBalance": f["available"],
                       "sodLimit": f["sod"], "collateralAmount": 0.0, "receiveableAmount": 0.0,
                       "utilizedAmount": f["utilized"], "blockedPayoutAmount": 0.0,
                       "withdrawableBalance": max(0.0, f["available"])})


def _margin_one(sim: DhanSimulator, acct: Account, item: dict[str, Any]) -> dict[str, Any] | None:
    try:
        qty = int(item["quantity"])
        price = float(item.get("price") or 0)
        sid = str(item["securityId"])
        side, product = item["transactionType"], item["productType"]
    except (KeyError, TypeError, ValueError):
        return None
    if side not in ENUMS["transactionType"] or qty <= 0:
        return None
    if price <= 0:
        quote = sim.market.quote(sid)
        price = quote.ask if quote else 0.0
    total = round(sim.exchange.margin_for(acct.client_id, sid, product, side, qty, price), 2)
    return {"totalMargin": total, "spanMargin": round(total * 0.7, 2),
            "exposureMargin": round(total * 0.3, 2), "variableMargin": 0.0,
            "brokerage": 20.0, "leverage": "1.00"}


def margin(sim: DhanSimulator, req: Request) -> Reply:
    acct = req.account
    assert acct is not None
    one = _margin_one(sim, acct, _body(req))
    if one is None:
        return input_error()
    avail = sim.exchange.funds(acct.client_id, acct.sod_limit)["available"]
    one.update(availableBalance=avail,
               insufficientBalance=round(max(0.0, one["totalMargin"] - avail), 2))
    return Reply(200, one)


def margin_multi(sim: DhanSimulator, req: Request) -> Reply:
    acct = req.account
    assert acct is not None
    body = _body(req)
    items = body.get("scripList", body.get("scripts"))
    if not isinstance(items, list) or not items:
        return input_error()
    parts = [_margin_one(sim, acct, i) for i in items if isinstance(i, dict)]
    if len(parts) != len(items) or any(p is None for p in parts):
        return input_error()
    legs = [_basket_leg(sim, i) for i in items]
    if any(leg is None for leg in legs):
        return input_error()
    # the basket priced together, as Dhan does (hedge benefit), with the engine's own
    # documented approximation (engine.risk.margin); includePosition/includeOrders ignored
    try:
        est = estimate_margin(legs, Decimal(str(sim.market.spot())), sim.market.today(),  # type: ignore[arg-type]
                              getattr(sim.market, "calendar", None) or NseCalendar(),
                              expiry_day=False)
    except ValueError:
        return input_error()
    total = float(est.total)
    return Reply(200, {"totalMargin": total, "spanMargin": float(est.span),
                       "exposureMargin": float(est.exposure), "equityMargin": 0.0,
                       "fnoMargin": total, "mtfMargin": 0.0,
                       "hedgeBenefit": float(est.hedge_benefit)})


def _basket_leg(sim: DhanSimulator, item: dict[str, Any]) -> Any:
    """One script of a multi-margin request as an engine ``Leg`` (None: unknown contract)."""
    row = sim.exchange.row(str(item["securityId"]))
    if row is None or row.instrument not in ("OPTIDX", "FUTIDX") or row.expiry is None:
        return None
    price = float(item.get("price") or 0)
    if price <= 0:
        quote = sim.market.quote(str(item["securityId"]))
        price = quote.ltp if quote else 0.0
    option = row.instrument == "OPTIDX"
    return Leg(security_id=str(row.security_id), side=item["transactionType"],
               quantity=int(item["quantity"]),
               kind=InstrumentKind.OPT if option else InstrumentKind.FUT,
               option_type=row.option_type if option else None, expiry=row.expiry,
               strike=Decimal(str(row.strike)) if option else None,
               price=Decimal(str(round(price, 2))) if price > 0 else None)


# -------------------------------------------------------------------------------- auth
def profile(sim: DhanSimulator, req: Request) -> Reply:
    acct = req.account
    assert acct is not None
    exp = sim.authority.expiry_of(req.headers.get("access-token", ""))
    return Reply(200, {"dhanClientId": acct.client_id,
                       "tokenValidity": datetime.fromtimestamp(exp, IST).strftime("%d/%m/%Y %H:%M"),
                       "activeSegment": "Equity, Derivative, Currency, Commodity",
                       "ddpi": "Active", "mtf": "Active",
                       "dataPlan": "Active" if acct.data_plan else "Deactive",
                       "dataValidity": "2099-12-31 23:59:59.0"})


def renew_token(sim: DhanSimulator, req: Request) -> Reply:
    if req.method != "GET":
        return input_error()
    acct = req.account
    assert acct is not None
    token, exp = sim.authority.issue(acct.client_id)
    fmt = "%Y-%m-%dT%H:%M:%S.000"
    body: dict[str, Any] = {
        "createTime": datetime.now(IST).strftime(fmt),
        "expiryTime": datetime.fromtimestamp(exp, IST).strftime(fmt)}
    key = "accessToken" if sim.renew_token_key == "accessToken" else "token"  # noqa: S105
    body[key] = token
    return Reply(200, body)


def generate_access_token(sim: DhanSimulator, req: Request) -> Reply:
    q = req.query
    return Reply(200, sim.authority.mint(q.get("dhanClientId", ""), q.get("pin", ""),
                                         q.get("totp", "")))


# ---------------------------------------------------------------------------- data APIs
def _underlying_ok(body: dict[str, Any]) -> bool:
    return str(body.get("UnderlyingScrip")) == "13" and body.get("UnderlyingSeg") == "IDX_I"


def expiry_list(sim: DhanSimulator, req: Request) -> Reply:
    body = _body(req)
    if not _underlying_ok(body):
        return data_error(400, "813", "Invalid SecurityId")
    return Reply(200, {"data": [e.isoformat() for e in sim.market.expiries()],
                       "status": "success"})


def option_chain(sim: DhanSimulator, req: Request) -> Reply:
    body = _body(req)
    if not _underlying_ok(body):
        return data_error(400, "813", "Invalid SecurityId")
    try:
        expiry = date.fromisoformat(str(body.get("Expiry")))
    except ValueError:
        return data_error(400, "812", "Invalid Date Format")
    if expiry not in sim.market.expiries():
        return data_error(400, "811", "Invalid Expiry Date")
    oc: dict[str, Any] = {}
    for strike, sides in sorted(sim.market.option_chain(expiry).items()):
        oc[f"{strike:.6f}"] = {side.lower(): {
            "average_price": e.ltp, "greeks": {k: round(v, 5) for k, v in e.greeks.items()},
            "implied_volatility": e.iv, "last_price": e.ltp, "oi": e.oi,
            "previous_close_price": e.prev_close, "previous_oi": e.oi,
            "previous_volume": e.volume, "security_id": e.security_id,
            "top_ask_price": e.ask, "top_ask_quantity": 1500, "top_bid_price": e.bid,
            "top_bid_quantity": 1500, "volume": e.volume} for side, e in sides.items()}
    return Reply(200, {"data": {"last_price": sim.market.spot(), "oc": oc}, "status": "success"})


def market_feed(sim: DhanSimulator, req: Request) -> Reply:
    kind = req.params["kind"]
    body = {k: v for k, v in _body(req).items() if k != "dhanClientId"}
    if not body or not all(isinstance(v, list) for v in body.values()):
        return data_error(400, "814", "Invalid Request")
    if sum(len(v) for v in body.values()) > 1000:
        return data_error(400, "804", "Requested number of instruments exceeds limit")
    data: dict[str, Any] = {}
    for seg, ids in body.items():
        data[seg] = {}
        for sid in ids:
            q = sim.market.quote(str(sid))
            if q is None:
                continue
            item: dict[str, Any] = {"last_price": q.ltp}
            if kind in ("ohlc", "quote"):
                item["ohlc"] = {"open": q.prev_close, "close": q.prev_close,
                                "high": max(q.ltp, q.prev_close), "low": min(q.ltp, q.prev_close)}
            if kind == "quote":
                level = {"quantity": 1500, "orders": 3}
                item.update(
                    average_price=q.ltp, buy_quantity=150000, sell_quantity=150000,
                    last_quantity=75, last_trade_time=datetime.now(IST).strftime(
                        "%d/%m/%Y %H:%M:%S"), lower_circuit_limit=0.05,
                    upper_circuit_limit=round(q.ltp * 2 + 1, 2),
                    net_change=round(q.ltp - q.prev_close, 2), volume=q.volume, oi=q.oi,
                    oi_day_high=q.oi, oi_day_low=q.oi,
                    depth={"buy": [{**level, "price": q.bid}] + [{"quantity": 0, "orders": 0,
                                                                   "price": 0.0}] * 4,
                           "sell": [{**level, "price": q.ask}] + [{"quantity": 0, "orders": 0,
                                                                    "price": 0.0}] * 4})
            data[seg][str(sid)] = item
    return Reply(200, {"data": data, "status": "success"})


def _candles(base: float, stamps: list[int], oi: bool) -> dict[str, Any]:
    out: dict[str, Any] = {k: [] for k in ("open", "high", "low", "close", "volume", "timestamp")}
    for i, ts in enumerate(stamps):
        mid = base * (1 + 0.01 * math.sin(i / 7))
        out["open"].append(round(mid, 2))
        out["close"].append(round(mid * 1.001, 2))
        out["high"].append(round(mid * 1.003, 2))
        out["low"].append(round(mid * 0.997, 2))
        out["volume"].append(1000 + i)
        out["timestamp"].append(ts)
    if oi:
        out["open_interest"] = [100000 + i for i in range(len(stamps))]
    return out


def charts(sim: DhanSimulator, req: Request) -> Reply:
    body = _body(req)
    intraday = req.params["kind"] == "intraday"
    required = ("securityId", "exchangeSegment", "instrument", "fromDate", "toDate")
    if any(not body.get(k) for k in required):
        return input_error()
    try:
        start = datetime.fromisoformat(str(body["fromDate"])).replace(tzinfo=IST)
        end = datetime.fromisoformat(str(body["toDate"])).replace(tzinfo=IST)
        interval = int(body.get("interval", 1))
    except ValueError:
        return input_error()
    if intraday and interval not in (1, 5, 15, 25, 60):
        return input_error()
    if intraday and (end - start).days > 90:
        return input_error("Data for Intraday Charts can be fetched for 90 days at a time")
    quote = sim.market.quote(str(body["securityId"]))
    stamps: list[int] = []
    if quote is not None:
        day = start.date()
        while day < end.date() or (intraday and day == end.date()):
            if day.weekday() < 5:
                if intraday:
                    t = datetime.combine(day, time(9, 15), tzinfo=IST)
                    while t.time() < time(15, 30) and len(stamps) < 20000:
                        if start <= t < end:
                            stamps.append(int(t.timestamp()))
                        t += timedelta(minutes=interval)
                else:
                    stamps.append(int(datetime.combine(day, time(0, 0), tzinfo=IST).timestamp()))
            day += timedelta(days=1)
    return Reply(200, _candles(quote.ltp if quote else 0.0, stamps, bool(body.get("oi"))))
