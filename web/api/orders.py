"""Live orders in doubt and held trades: list unsettled order intents, queue the operator's
decision on one (``resolve_order``) and close a trade (``close_trade``).

The web never decides an order's outcome itself: it checks the request against
``order_intents`` / ``open_trades`` with the same rules the engine's dispatch applies at claim
time (engine/bus/dispatch.py) and queues an engine command. An order whose outcome is unknown
is *unresolved*, never "not filled": only the operator, having looked at the broker, says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import jsonify

from engine.execution.intents import TERMINAL
from web.api import bp, error, one, rows
from web.api.control import CLOSE_MODES, IDEMPOTENCY, accepted, close_trade_payload, submit
from web.validate import BadRequest, Bool, Field, Int, Str, check, clean_text, request_json

ACTIONS = ("filled", "not_filled", "flatten")
#: The shape order_intents.correlation_id allows (schema/007_order_intents.sql).
CORRELATION_ID = re.compile(r"[A-Za-z0-9_-]{1,25}")
#: The largest price NUMERIC(18, 4) holds with two decimals (14 integer digits).
MAX_PRICE = Decimal("99999999999999.99")


@dataclass(frozen=True, slots=True, kw_only=True)
class Price(Field):
    """A positive rupee amount with at most two decimal places: a decimal string or a number."""

    def clean(self, name: str, raw: Any, *, query: bool) -> Decimal:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise BadRequest(name, "expected a decimal price such as \"101.35\"")
        text = clean_text(name, raw).strip() if isinstance(raw, str) else repr(raw)
        if not re.fullmatch(r"\d{1,14}(\.\d{1,2})?", text):
            raise BadRequest(name, f"expected a positive decimal price with at most 2 decimal "
                                   f"places (got {text[:30]!r})")
        try:
            value = Decimal(text)
        except InvalidOperation:  # not reached after the pattern; kept as a guard
            raise BadRequest(name, "expected a decimal price") from None
        if value <= 0:
            raise BadRequest(name, "must be more than 0")
        if value > MAX_PRICE:
            raise BadRequest(name, f"must be at most {MAX_PRICE}")
        return value


_UNSETTLED = """
SELECT i.correlation_id, i.trade_tag, i.trade_date, i.purpose, i.leg_index, i.attempt,
       i.security_id, i.side, i.quantity, i.filled_qty, i.avg_price, i.price, i.order_type,
       i.product, i.order_id, i.state, i.reason, i.resolution, i.created_at, i.updated_at,
       extract(epoch FROM now() - i.created_at)::bigint AS age_s,
       p.correlation_id AS parent_correlation_id,
       t.mode AS trade_mode, t.payload ->> 'hold' AS trade_hold
  FROM order_intents i
  LEFT JOIN order_intents p ON p.id = i.parent_id
  LEFT JOIN open_trades t ON t.tag = i.trade_tag
 WHERE i.settled_at IS NULL AND NOT i.sliced
 ORDER BY (i.state = 'unresolved') DESC, i.id
"""


def actions_for(state: str) -> list[str]:
    """The decisions the dispatch accepts for an unsettled order in ``state``."""
    return ["flatten"] if state in TERMINAL else list(ACTIONS)


@bp.get("/orders/unsettled")
def orders_unsettled() -> Any:
    """Every unsettled order intent that is (or may be) an order at the broker, unresolved
    first: what the operator needs to decide on it, and which decisions are open."""
    items = rows(_UNSETTLED)
    for item in items:
        item["unresolved"] = item["state"] == "unresolved"
        item["terminal"] = item["state"] in TERMINAL
        item["actions"] = actions_for(item["state"])
    return jsonify({"orders": items, "count": len(items),
                    "unresolved": sum(1 for i in items if i["unresolved"])})


def _intent(cid: str) -> dict[str, Any] | None:
    return one("SELECT i.id, i.state, i.quantity, i.filled_qty, i.sliced, i.settled_at,"
               " (SELECT string_agg(c.correlation_id, ', ' ORDER BY c.id) FROM order_intents c"
               "   WHERE c.parent_id = i.id) AS slices"
               " FROM order_intents i WHERE i.correlation_id = %s", (cid,))


@bp.post("/orders/<cid>/resolve")
def order_resolve(cid: str) -> Any:
    """Queue ``resolve_order`` for one unsettled order intent; ``confirm: true`` is required."""
    clean_text("correlation_id", cid)
    if not CORRELATION_ID.fullmatch(cid):
        raise BadRequest("correlation_id", "expected 1 to 25 letters, digits, _ or -")
    data = check(request_json(), {"action": Str(choices=ACTIONS), "price": Price(optional=True),
                                  "quantity": Int(optional=True, minimum=1, maximum=10**7),
                                  "confirm": Bool(optional=True),
                                  "idempotency_key": IDEMPOTENCY})
    if data["confirm"] is not True:
        raise BadRequest("confirm", "must be true to resolve an order by hand (check the "
                                    "order at the broker first)")
    row = _intent(cid)
    if row is None:
        return error(404, f"no order intent with correlation id {cid!r}")
    action, price, quantity = data["action"], data["price"], data["quantity"]
    if row["sliced"]:
        raise BadRequest("correlation_id", f"{cid} is a leg sent as slices, not an order; "
                                           f"resolve its slices ({row['slices'] or 'none'})")
    if row["settled_at"] is not None:
        raise BadRequest("correlation_id", f"{cid} is already settled")
    if action != "flatten" and row["state"] in TERMINAL:
        raise BadRequest("correlation_id", f"{cid} is {row['state']} at the broker, not "
                                           f"unresolved; only 'flatten' is open")
    if action == "filled" and price is None:
        raise BadRequest("price", "required for 'filled': the average price the broker filled at")
    if action != "filled" and price is not None:
        raise BadRequest("price", f"only for 'filled' (not {action!r})")
    if action == "not_filled" and quantity is not None:
        raise BadRequest("quantity", "not for 'not_filled' (nothing filled)")
    if action == "flatten" and quantity is None:
        raise BadRequest("quantity", "required for 'flatten': the units to flatten")
    if quantity is not None and quantity > row["quantity"]:
        raise BadRequest("quantity", f"the order is for {row['quantity']} units; "
                                     f"{quantity} is more")
    if action == "filled" and quantity is not None and quantity < row["filled_qty"]:
        raise BadRequest("quantity", f"the broker already reported {row['filled_qty']} units "
                                     f"filled; {quantity} is fewer")
    payload: dict[str, Any] = {"correlation_id": cid, "action": action, "confirm": True}
    if price is not None:
        payload["price"] = str(price)
    if quantity is not None:
        payload["quantity"] = quantity
    return accepted(submit("resolve_order", payload, data["idempotency_key"]),
                    correlation_id=cid, action=action)


@bp.post("/trades/<tag>/close")
def trade_close(tag: str) -> Any:
    """Queue ``close_trade`` for an open trade: ``mode`` send (default: send what the broker
    still holds for it) or record_from_broker (``confirm: true``; no order is sent)."""
    data = check(request_json(), {"mode": Str(optional=True, default="send", choices=CLOSE_MODES),
                                  "confirm": Bool(optional=True),
                                  "idempotency_key": IDEMPOTENCY})
    payload = close_trade_payload(tag, data["mode"], data["confirm"])
    return accepted(submit("close_trade", payload, data["idempotency_key"]), tag=payload["tag"],
                    mode=payload["mode"])
