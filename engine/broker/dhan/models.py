"""Request and response models of the Dhan v2 REST API (wire names in reference §2-§7).

Requests build their JSON payload and *omit* fields that do not apply (Dhan refuses empty
strings). Responses keep the full wire dict in ``raw`` and expose typed fields; prices are
``Decimal``. ``0001-01-01`` dates and ``"NA"`` strings are sentinels and become ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from engine.broker.dhan.correlation import is_valid_correlation_id
from engine.timeutil import IST

TRANSACTION_TYPES = ("BUY", "SELL")
SEGMENTS = ("NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO", "BSE_CURRENCY",
            "MCX_COMM")
PRODUCT_TYPES = ("CNC", "INTRADAY", "MARGIN", "MTF", "CO", "BO")
ORDER_TYPES = ("LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_MARKET")
VALIDITIES = ("DAY", "IOC")
OPEN_STATUSES = frozenset({"TRANSIT", "PENDING", "PART_TRADED"})
FINAL_STATUSES = frozenset({"TRADED", "REJECTED", "CANCELLED", "EXPIRED"})


def _check(name: str, value: str, allowed: tuple[str, ...]) -> str:
    upper = str(value).upper()
    if upper not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return upper


def _num(value: Decimal | float | int) -> float:
    return float(value)


def dec(value: Any) -> Decimal | None:
    """Wire number -> Decimal (``None`` for null/empty)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def wire_time(value: Any) -> datetime | None:
    """``"YYYY-MM-DD HH:MM:SS"`` IST -> aware datetime; the ``0001-01-01`` sentinel -> None."""
    if not value or str(value).startswith("0001-01-01"):
        return None
    text = str(value).replace("T", " ")[:19]
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
    except ValueError:
        return None


def wire_date(value: Any) -> date | None:
    """``"YYYY-MM-DD..."`` -> date; the ``0001-01-01`` sentinel -> None."""
    if not value or str(value).startswith("0001-01-01"):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _na(value: Any) -> Any:
    return None if value in (None, "", "NA") else value


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """A new order. ``correlation_id`` is mandatory: it is what makes a retry safe."""

    security_id: str
    exchange_segment: str
    transaction_type: str
    quantity: int
    order_type: str
    product_type: str
    correlation_id: str
    validity: str = "DAY"
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    disclosed_quantity: int | None = None
    after_market_order: bool = False
    amo_time: str | None = None

    def __post_init__(self) -> None:
        _check("transaction_type", self.transaction_type, TRANSACTION_TYPES)
        _check("exchange_segment", self.exchange_segment, SEGMENTS)
        _check("product_type", self.product_type, PRODUCT_TYPES)
        order_type = _check("order_type", self.order_type, ORDER_TYPES)
        _check("validity", self.validity, VALIDITIES)
        if not str(self.security_id).strip():
            raise ValueError("security_id is empty")
        if int(self.quantity) <= 0:
            raise ValueError(f"quantity must be positive, got {self.quantity}")
        if not is_valid_correlation_id(self.correlation_id):
            raise ValueError(
                f"correlation_id {self.correlation_id!r} must be 1-25 chars of [A-Za-z0-9_-]")
        if order_type in ("LIMIT", "STOP_LOSS") and self.price is None:
            raise ValueError(f"{order_type} order needs a price")
        if order_type.startswith("STOP_LOSS") and self.trigger_price is None:
            raise ValueError(f"{order_type} order needs a trigger_price")

    def to_payload(self, client_id: str) -> dict[str, Any]:
        """JSON body for ``POST /orders`` (fields that do not apply are omitted)."""
        body: dict[str, Any] = {
            "dhanClientId": client_id,
            "correlationId": self.correlation_id,
            "transactionType": self.transaction_type.upper(),
            "exchangeSegment": self.exchange_segment.upper(),
            "productType": self.product_type.upper(),
            "orderType": self.order_type.upper(),
            "validity": self.validity.upper(),
            "securityId": str(self.security_id),
            "quantity": int(self.quantity),
            "price": _num(self.price) if self.price is not None else 0.0,
            "afterMarketOrder": bool(self.after_market_order),
        }
        if self.trigger_price is not None:
            body["triggerPrice"] = _num(self.trigger_price)
        if self.disclosed_quantity:
            body["disclosedQuantity"] = int(self.disclosed_quantity)
        if self.after_market_order and self.amo_time:
            body["amoTime"] = self.amo_time
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyRequest:
    """Changes to a pending order (``PUT /orders/{order_id}``)."""

    order_id: str
    order_type: str
    validity: str = "DAY"
    quantity: int | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    disclosed_quantity: int | None = None
    leg_name: str | None = None

    def __post_init__(self) -> None:
        _check("order_type", self.order_type, ORDER_TYPES)
        _check("validity", self.validity, VALIDITIES)
        if not str(self.order_id).strip():
            raise ValueError("order_id is empty")

    def to_payload(self, client_id: str) -> dict[str, Any]:
        """JSON body for ``PUT /orders/{order_id}``."""
        body: dict[str, Any] = {"dhanClientId": client_id, "orderId": str(self.order_id),
                                "orderType": self.order_type.upper(),
                                "validity": self.validity.upper()}
        optional = {"quantity": self.quantity, "price": self.price,
                    "triggerPrice": self.trigger_price,
                    "disclosedQuantity": self.disclosed_quantity, "legName": self.leg_name}
        for key, value in optional.items():
            if value is None:
                continue
            body[key] = value if isinstance(value, str | int) else _num(value)
        return body


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAck:
    """Reply to place / modify / cancel."""

    order_id: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """One row of the order book."""

    order_id: str
    correlation_id: str | None
    status: str
    transaction_type: str
    exchange_segment: str
    product_type: str
    order_type: str
    security_id: str
    trading_symbol: str | None
    quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    filled_qty: int
    remaining_quantity: int
    average_traded_price: Decimal | None
    oms_error_description: str | None
    create_time: datetime | None
    update_time: datetime | None
    exchange_time: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        """True while the order can still trade."""
        return self.status in OPEN_STATUSES

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Order:
        """Parse an order object."""
        return cls(
            order_id=str(d.get("orderId", "")), correlation_id=_na(d.get("correlationId")),
            status=str(d.get("orderStatus", "")), transaction_type=str(d.get("transactionType")),
            exchange_segment=str(d.get("exchangeSegment")), product_type=str(d.get("productType")),
            order_type=str(d.get("orderType")), security_id=str(d.get("securityId")),
            trading_symbol=_na(d.get("tradingSymbol")), quantity=int(d.get("quantity") or 0),
            price=dec(d.get("price")), trigger_price=dec(d.get("triggerPrice")),
            filled_qty=int(d.get("filledQty") or 0),
            remaining_quantity=int(d.get("remainingQuantity") or 0),
            average_traded_price=dec(d.get("averageTradedPrice")),
            oms_error_description=_na(d.get("omsErrorDescription")),
            create_time=wire_time(d.get("createTime")), update_time=wire_time(d.get("updateTime")),
            exchange_time=wire_time(d.get("exchangeTime")), raw=d)


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    """One fill of the trade book."""

    order_id: str
    exchange_trade_id: str | None
    transaction_type: str
    security_id: str
    traded_quantity: int
    traded_price: Decimal
    exchange_time: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Trade:
        """Parse a trade object."""
        return cls(order_id=str(d.get("orderId")), exchange_trade_id=_na(d.get("exchangeTradeId")),
                   transaction_type=str(d.get("transactionType")),
                   security_id=str(d.get("securityId")),
                   traded_quantity=int(d.get("tradedQuantity") or 0),
                   traded_price=dec(d.get("tradedPrice")) or Decimal(0),
                   exchange_time=wire_time(d.get("exchangeTime")), raw=d)


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """One row of ``GET /positions``."""

    security_id: str
    exchange_segment: str
    product_type: str
    position_type: str
    net_qty: int
    buy_qty: int
    sell_qty: int
    buy_avg: Decimal
    sell_avg: Decimal
    realized_profit: Decimal
    unrealized_profit: Decimal
    trading_symbol: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Position:
        """Parse a position object."""
        z = Decimal(0)
        return cls(security_id=str(d.get("securityId")),
                   exchange_segment=str(d.get("exchangeSegment")),
                   product_type=str(d.get("productType")),
                   position_type=str(d.get("positionType")), net_qty=int(d.get("netQty") or 0),
                   buy_qty=int(d.get("buyQty") or 0), sell_qty=int(d.get("sellQty") or 0),
                   buy_avg=dec(d.get("buyAvg")) or z, sell_avg=dec(d.get("sellAvg")) or z,
                   realized_profit=dec(d.get("realizedProfit")) or z,
                   unrealized_profit=dec(d.get("unrealizedProfit")) or z,
                   trading_symbol=_na(d.get("tradingSymbol")), raw=d)


@dataclass(frozen=True, slots=True, kw_only=True)
class FundLimits:
    """``GET /fundlimit`` (the wire spells ``availabelBalance`` / ``receiveableAmount``)."""

    available_balance: Decimal
    sod_limit: Decimal
    collateral_amount: Decimal
    receivable_amount: Decimal
    utilized_amount: Decimal
    blocked_payout_amount: Decimal
    withdrawable_balance: Decimal
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> FundLimits:
        """Parse, accepting both the misspelled wire names and the correct spellings."""

        def pick(*names: str) -> Decimal:
            for name in names:
                if d.get(name) is not None:
                    return dec(d[name]) or Decimal(0)
            return Decimal(0)

        return cls(available_balance=pick("availabelBalance", "availableBalance"),
                   sod_limit=pick("sodLimit"), collateral_amount=pick("collateralAmount"),
                   receivable_amount=pick("receiveableAmount", "receivableAmount"),
                   utilized_amount=pick("utilizedAmount"),
                   blocked_payout_amount=pick("blockedPayoutAmount"),
                   withdrawable_balance=pick("withdrawableBalance"), raw=d)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenGrant:
    """A freshly minted or renewed access token (the token is hidden from repr)."""

    access_token: str = field(repr=False)
    expiry_time: datetime | None
    source: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_wire(cls, d: dict[str, Any], source: str) -> TokenGrant:
        """Accept ``accessToken`` (generateAccessToken, some clients) or ``token`` (renew)."""
        token = d.get("accessToken") or d.get("token")
        if not token or not isinstance(token, str):
            raise ValueError(f"{source} response carries no accessToken/token field "
                             f"(keys: {sorted(k for k in d if 'oken' not in k)})")
        expiry = d.get("expiryTime")
        parsed: datetime | None = None
        if expiry:
            try:
                parsed = datetime.fromisoformat(str(expiry).replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=IST)
            except ValueError:
                parsed = None
        return cls(access_token=token, expiry_time=parsed, source=source, raw=d)
