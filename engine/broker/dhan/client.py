"""Dhan v2 REST client: orders, portfolio, funds, margin, auth, and (mixin) market data.

Placing an order is never re-sent: after a timeout, 5xx or lost response the order is
looked up by its correlationId (and in the order book, because Dhan's lookup cannot see a
TRANSIT order, answering 404) for ``lookup_grace`` seconds. A lookup that finds nothing is
not proof of absence (a TRANSIT order, a server that processes the request seconds later), so
when the order is not found :class:`OrderStateUnknownError` is raised and the caller keeps the
order *unresolved* and goes on looking it up (``engine.broker.dhan.live_broker``); a second
order for the same intent is never sent from here.

Order lookups, cancels and (when asked) placements are *priority* calls for the rate limiter:
they may use the share of the budget that routine calls leave free (``ratelimit``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import requests

from engine.broker.dhan.config import DhanConfig
from engine.broker.dhan.errors import (
    DhanError,
    OrderNotFoundError,
    OrderStateUnknownError,
    TransientError,
    register_secret,
)
from engine.broker.dhan.governor import ENTRY, EXIT, OrderGovernor, governor_for
from engine.broker.dhan.marketdata import MarketDataMixin
from engine.broker.dhan.models import (
    FundLimits,
    ModifyRequest,
    Order,
    OrderAck,
    OrderRequest,
    Position,
    TokenGrant,
    Trade,
)
from engine.broker.dhan.ratelimit import EndpointClass, RateLimiter
from engine.broker.dhan.transport import Transport

logger = logging.getLogger(__name__)

ORDER = EndpointClass.ORDER
NON_TRADING = EndpointClass.NON_TRADING


def _one_order(payload: Any) -> Order | None:
    """GET /orders/{id} and /orders/external/{cid} answer a bare object or a list."""
    if isinstance(payload, list):
        return Order.from_wire(payload[0]) if payload else None
    if isinstance(payload, dict) and payload.get("orderId"):
        return Order.from_wire(payload)
    return None


def _list(payload: Any) -> list[dict[str, Any]]:
    if payload is None:
        return []
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        return payload["data"]
    if not isinstance(payload, list):
        raise DhanError(f"expected a JSON array, got {type(payload).__name__}")
    return payload


class DhanClient(MarketDataMixin):
    """Thread-safe client for one Dhan client id.

    Args:
        client_id: Dhan client id.
        token_provider: returns the current access token (called on every request).
        access_token: a fixed token instead of ``token_provider``.
        api_base: REST base URL (default ``https://api.dhan.co/v2``).
        auth_base: minting base URL (default ``https://auth.dhan.co``).
        timeout: seconds per call.
        limiter: rate limiter (default: the process-wide one of ``client_id``).
        on_auth_error: called on 401 / DH-901 / revoked token (tell the TokenActor).
        session: ``requests.Session`` to reuse.
        lookup_grace: seconds to keep looking an ambiguous order up before declaring its
            outcome unknown (:class:`OrderStateUnknownError`).
        governor: the order-rate governor every place/modify/cancel passes (default: the
            process-wide one of ``client_id``, :mod:`engine.broker.dhan.governor`).
        **transport_options: ``get_retries``, ``retry_backoff``, ``max_rate_wait``.
    """

    def __init__(
        self,
        client_id: str,
        *,
        token_provider: Callable[[], str | None] | None = None,
        access_token: str | None = None,
        api_base: str = "https://api.dhan.co/v2",
        auth_base: str = "https://auth.dhan.co",
        timeout: float = 10.0,
        limiter: RateLimiter | None = None,
        on_auth_error: Callable[[DhanError], None] | None = None,
        session: requests.Session | None = None,
        lookup_grace: float = 2.0,
        governor: OrderGovernor | None = None,
        **transport_options: Any,
    ) -> None:
        if token_provider is None:
            register_secret(access_token)
            token_provider = lambda: access_token  # noqa: E731
        self.client_id = str(client_id)
        self.lookup_grace = lookup_grace
        self.governor = governor or governor_for(self.client_id)
        self.transport = Transport(self.client_id, token_provider, api_base=api_base,
                                   auth_base=auth_base, timeout=timeout, limiter=limiter,
                                   on_auth_error=on_auth_error, session=session,
                                   **transport_options)

    @classmethod
    def from_config(cls, config: DhanConfig, **kwargs: Any) -> DhanClient:
        """Build from :class:`DhanConfig` (``kwargs`` override, e.g. ``token_provider``)."""
        options: dict[str, Any] = {"api_base": config.api_base, "auth_base": config.auth_base,
                                   "timeout": config.timeout_sec,
                                   "retry_backoff": config.retry_backoff_sec}
        if "token_provider" not in kwargs:
            options["access_token"] = config.access_token
        options.update(kwargs)
        return cls(config.client_id, **options)

    # ------------------------------------------------------------------ orders
    def place_order(self, request: OrderRequest, *, priority: bool = False) -> OrderAck:
        """``POST /orders`` once; safe against lost responses (see module docstring).

        Args:
            request: the order (its correlation id identifies it in every lookup).
            priority: an exit / unwind order: it may use the reserved order budget.

        Returns:
            The acknowledgement; when recovered by lookup, the looked-up order's id/status.

        Raises:
            OrderStateUnknownError: the answer was lost and no lookup found the order: its
                outcome is unknown (it may still appear); never re-send it.
            DhanError: any definite refusal (input, rate limit, RMS, auth).
        """
        payload = request.to_payload(self.client_id)
        cid = request.correlation_id
        self._govern(request.exchange_segment, priority)
        try:
            data = self.transport.call("POST", "/orders", klass=ORDER, body=payload,
                                       retry=False, priority=priority)
        except TransientError as exc:
            logger.warning("place order %s ambiguous (%s); looking it up", cid, exc)
            found = self._find_after_ambiguous(cid, str(exc))
            logger.info("order %s found after ambiguous place: %s %s", cid, found.order_id,
                        found.status)
            return OrderAck(order_id=found.order_id, status=found.status)
        if not isinstance(data, dict) or not data.get("orderId"):
            raise DhanError("place order answer has no orderId", endpoint="POST /orders")
        return OrderAck(order_id=str(data["orderId"]), status=str(data.get("orderStatus")))

    def _govern(self, segment: str | None, priority: bool) -> None:
        """One slot of the order-rate governor (exits, flattens and cancels first; an exit
        waits up to 2 minutes, an entry 30 s, then nothing is sent: RateLimitError)."""
        self.governor.acquire(segment or "NSE_FNO", rank=EXIT if priority else ENTRY,
                              max_wait=120.0 if priority else 30.0)

    def find_order(self, correlation_id: str) -> Order | None:
        """The order with ``correlation_id``: by ``/orders/external/{cid}``, then in the order
        book (which also lists TRANSIT orders). ``None`` when neither shows it — which is not
        proof that it does not exist. Lookup failures raise (``TransientError``, ...).

        When the order book holds several orders with the id (which this engine never sends),
        the first is returned and a CRITICAL line names the surplus.
        """
        order = self.get_order_by_correlation_id(correlation_id)
        if order is not None:
            return order
        book = [o for o in self.order_list(priority=True) if o.correlation_id == correlation_id]
        if len(book) > 1:
            logger.critical("SURPLUS: %d orders at the broker carry correlation id %s: %s",
                            len(book), correlation_id, [(o.order_id, o.status) for o in book])
        return book[0] if book else None

    def _find_after_ambiguous(self, correlation_id: str, why: str) -> Order:
        """Look an ambiguous order up for ``lookup_grace`` seconds.

        Raises:
            OrderStateUnknownError: not found (whether the lookups answered or failed).
        """
        deadline = time.monotonic() + self.lookup_grace
        answered, failures = 0, []
        while True:
            try:
                order = self.find_order(correlation_id)
                answered += 1
                if order is not None:
                    return order
            except DhanError as exc:
                failures.append(type(exc).__name__)
                logger.warning("lookup of %s failed: %s", correlation_id, exc)
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        detail = (f"{answered} lookup(s) found nothing" if answered else "every lookup failed")
        if failures:
            detail += f" ({len(failures)} failed: {', '.join(sorted(set(failures)))})"
        raise OrderStateUnknownError(
            f"order {correlation_id}: place was ambiguous ({why}) and {detail} within "
            f"{self.lookup_grace:.1f}s: outcome unknown", correlation_id=correlation_id,
            endpoint="POST /orders")

    def modify_order(self, request: ModifyRequest) -> OrderAck:
        """``PUT /orders/{id}`` (never retried)."""
        self._govern(None, False)
        data = self.transport.call("PUT", f"/orders/{request.order_id}", klass=ORDER,
                                   body=request.to_payload(self.client_id), retry=False)
        return OrderAck(order_id=str((data or {}).get("orderId", request.order_id)),
                        status=str((data or {}).get("orderStatus", "")))

    def cancel_order(self, order_id: str) -> OrderAck:
        """``DELETE /orders/{id}``; any 2xx is success (200 or 202, reference §12). Priority."""
        self._govern(None, True)
        data = self.transport.call("DELETE", f"/orders/{order_id}", klass=ORDER, retry=False,
                                   priority=True)
        return OrderAck(order_id=str((data or {}).get("orderId", order_id)),
                        status=str((data or {}).get("orderStatus", "CANCELLED")))

    def order_list(self, *, priority: bool = False) -> list[Order]:
        """``GET /orders``: today's order book."""
        payload = self.transport.call("GET", "/orders", klass=NON_TRADING, priority=priority)
        return [Order.from_wire(d) for d in _list(payload)]

    def get_order(self, order_id: str) -> Order | None:
        """``GET /orders/{id}``; ``None`` for an unknown id (Dhan answers ``200 []``). Priority."""
        return _one_order(self.transport.call("GET", f"/orders/{order_id}", klass=NON_TRADING,
                                              priority=True))

    def get_order_by_correlation_id(self, correlation_id: str) -> Order | None:
        """``GET /orders/external/{cid}``; ``None`` when unknown or still in TRANSIT (404)."""
        try:
            payload = self.transport.call("GET", f"/orders/external/{correlation_id}",
                                          klass=NON_TRADING, priority=True)
        except OrderNotFoundError:
            return None
        return _one_order(payload)

    def trades(self, order_id: str | None = None) -> list[Trade]:
        """``GET /trades`` (today) or ``GET /trades/{order_id}``. Priority."""
        path = f"/trades/{order_id}" if order_id else "/trades"
        return [Trade.from_wire(d) for d in _list(self.transport.call(
            "GET", path, klass=NON_TRADING, priority=True))]

    # --------------------------------------------------------------- portfolio
    def positions(self, *, priority: bool = False) -> list[Position]:
        """``GET /positions`` (``priority`` when it serves an order in doubt)."""
        payload = self.transport.call("GET", "/positions", klass=NON_TRADING, priority=priority)
        return [Position.from_wire(d) for d in _list(payload)]

    def fund_limits(self) -> FundLimits:
        """``GET /fundlimit`` (reads the misspelled ``availabelBalance``)."""
        payload = self.transport.call("GET", "/fundlimit", klass=NON_TRADING)
        if not isinstance(payload, dict):
            raise DhanError("fundlimit answer is not an object", endpoint="GET /fundlimit")
        return FundLimits.from_wire(payload)

    def margin(self, *, security_id: str, exchange_segment: str, transaction_type: str,
               quantity: int, product_type: str, price: Decimal,
               trigger_price: Decimal | None = None) -> dict[str, Any]:
        """``POST /margincalculator`` -> ``{totalMargin, spanMargin, ..., leverage}``."""
        body: dict[str, Any] = {"dhanClientId": self.client_id,
                                "exchangeSegment": exchange_segment,
                                "transactionType": transaction_type, "quantity": int(quantity),
                                "productType": product_type, "securityId": str(security_id),
                                "price": float(price)}
        if trigger_price is not None:
            body["triggerPrice"] = float(trigger_price)
        return self.transport.call("POST", "/margincalculator", klass=NON_TRADING, body=body,
                                   retry=True)

    def margin_multi(self, scripts: Iterable[dict[str, Any]], *, include_position: bool = False,
                     include_orders: bool = False, style: str = "sdk") -> dict[str, Any]:
        """``POST /margincalculator/multi``.

        The field names are disputed (reference §12.8): ``style="sdk"`` sends
        ``scripList``/``includeOrder`` (official SDK), ``style="docs"`` sends
        ``scripts``/``includeOrders``.
        """
        items = list(scripts)
        if not items:
            raise ValueError("margin_multi needs at least one script")
        if style == "sdk":
            body = {"includePosition": include_position, "includeOrder": include_orders,
                    "scripList": items}
        elif style == "docs":
            body = {"includePosition": include_position, "includeOrders": include_orders,
                    "scripts": items}
        else:
            raise ValueError(f"style must be 'sdk' or 'docs', got {style!r}")
        body["dhanClientId"] = self.client_id
        return self.transport.call("POST", "/margincalculator/multi", klass=NON_TRADING,
                                   body=body, retry=True)

    # ---------------------------------------------------------- trader's control
    def kill_switch(self, activate: bool = True) -> dict[str, Any]:
        """``POST /killswitch?killSwitchStatus=ACTIVATE|DEACTIVATE`` (no body). Dhan activates
        it only with no open position and no pending order (then every order is refused
        for the rest of the day). Never retried."""
        status = "ACTIVATE" if activate else "DEACTIVATE"
        return self.transport.call("POST", "/killswitch", klass=NON_TRADING, retry=False,
                                   params={"killSwitchStatus": status}) or {}

    def kill_switch_status(self) -> bool:
        """``GET /killswitch``: True when active."""
        data = self.transport.call("GET", "/killswitch", klass=NON_TRADING) or {}
        status = str(data.get("killSwitchStatus", "")).upper()
        return status.startswith("ACTIVATE") or "SUCCESSFULLY ACTIVATED" in status

    def set_pnl_exit(self, *, loss: Decimal, profit: Decimal,
                     product_types: Iterable[str] = ("INTRADAY", "DELIVERY"),
                     kill_switch: bool = False) -> dict[str, Any]:
        """``POST /pnlExit``: Dhan squares every position off when the day's P&L reaches
        ``-loss`` or ``+profit`` (and then activates the kill switch when asked)."""
        if loss <= 0 or profit <= 0:
            raise ValueError(f"P&L exit needs positive loss and profit values, got loss "
                             f"{loss} and profit {profit}")
        body = {"dhanClientId": self.client_id, "profitValue": str(profit),
                "lossValue": str(loss), "productType": list(product_types),
                "enableKillSwitch": bool(kill_switch)}
        return self.transport.call("POST", "/pnlExit", klass=NON_TRADING, body=body,
                                   retry=False) or {}

    def pnl_exit(self) -> dict[str, Any]:
        """``GET /pnlExit``: the active configuration (``pnlExitStatus`` ACTIVE/DISABLED)."""
        return self.transport.call("GET", "/pnlExit", klass=NON_TRADING) or {}

    def stop_pnl_exit(self) -> dict[str, Any]:
        """``DELETE /pnlExit``."""
        return self.transport.call("DELETE", "/pnlExit", klass=NON_TRADING, retry=False) or {}

    def static_ips(self) -> dict[str, str]:
        """``GET /ip/getIP`` -> ``{primaryIP, secondaryIP, ...}``.

        Raises:
            DhanError: Dhan answered its error array (``[{message, status: "ERROR"}]``, HTTP
                200) or something that is not an object.
        """
        data = self.transport.call("GET", "/ip/getIP", klass=NON_TRADING)
        if isinstance(data, list):
            text = "; ".join(str(d.get("message")) for d in data if isinstance(d, dict))
            raise DhanError(f"getIP refused: {text or data!r}"[:300], endpoint="GET /ip/getIP")
        if not isinstance(data, dict):
            raise DhanError("getIP answer is not an object", endpoint="GET /ip/getIP")
        return {k: str(v) for k, v in data.items() if v is not None}

    # -------------------------------------------------------------------- auth
    def profile(self) -> dict[str, Any]:
        """``GET /profile`` (``tokenValidity`` is ``DD/MM/YYYY HH:mm`` IST)."""
        return self.transport.call("GET", "/profile", klass=NON_TRADING,
                                   extra_headers={"dhanClientId": self.client_id})

    def renew_token(self) -> TokenGrant:
        """``GET /RenewToken``: a new 24 h token; the current one dies at once.

        Accepts ``token`` or ``accessToken`` in the answer (reference §12.1). Never retried.
        """
        payload = self.transport.call("GET", "/RenewToken", klass=NON_TRADING, retry=False,
                                      extra_headers={"dhanClientId": self.client_id})
        grant = TokenGrant.from_wire(payload or {}, "renew")
        register_secret(grant.access_token)
        return grant

    def generate_access_token(self, pin: str, totp: str) -> TokenGrant:
        """``POST {auth_base}/app/generateAccessToken?dhanClientId&pin&totp`` (no body).

        Raises:
            MintError: Dhan answered ``{"status": "error", "message": ...}``.
        """
        if not pin or not totp:
            raise ValueError("generate_access_token needs a PIN and a TOTP code")
        payload = self.transport.call(
            "POST", "/app/generateAccessToken", klass=None, base=self.transport.auth_base,
            params={"dhanClientId": self.client_id, "pin": pin, "totp": totp},
            authenticated=False, retry=False)
        grant = TokenGrant.from_wire(payload or {}, "totp")
        register_secret(grant.access_token)
        return grant
