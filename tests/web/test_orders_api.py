"""Orders in doubt and held trades on the dashboard: the unsettled-intents list, resolve_order and
close_trade commands (exact payloads, 400 naming the field with nothing written, 404, 401/403),
and the Trades page panel."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb

from engine.execution.intents import IntentStore
from tests.web.conftest import Api

DAY = date(2025, 2, 3)


def _commands(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM engine_commands ORDER BY id").fetchall()


def _command(pool, command_id: int) -> dict:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM engine_commands WHERE id = %s",
                            (command_id,)).fetchone()


def _intent(store: IntentStore, cid: str, *, tag: str = "DC-1", purpose: str = "exit",
            leg: int = 0, side: str = "BUY", quantity: int = 75, parent_id: int | None = None,
            sliced: bool = False, **changes):
    row = store.create(trade_date=DAY, tag=tag, purpose=purpose, leg_index=leg, attempt=0,
                       security_id=f"4{leg}001", side=side, quantity=quantity, product="MARGIN",
                       segment="NSE_FNO", order_type="LIMIT", price=Decimal("101.05"),
                       correlation_id=cid, parent_id=parent_id, sliced=sliced)
    return store.update(row.id, **changes) if changes else row


def _open_trade(pool, tag: str, hold: str | None = None, mode: str = "live") -> None:
    payload = {"hold": hold} if hold else {}
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES (%s, 'DC', %s, %s, now(), 101.05,"
                     " 75, %s)", (tag, mode, DAY, Jsonb(payload)))


@pytest.fixture
def doubt(pool):
    """A held live trade DC-1 with an unresolved exit order, an order still in flight, a
    TRADED-but-unsettled one, a settled one, and a leg sent as two slices (SL-A, SL-B)."""
    store = IntentStore(pool)
    _open_trade(pool, "DC-1", hold="exit orders unresolved past the deadline")
    _open_trade(pool, "DC-2")
    _intent(store, "NEW-1", tag="DC-2", purpose="entry", leg=1)
    _intent(store, "UNRES-1", state="unresolved", filled_qty=25, order_id="9001",
            reason="every lookup failed")
    _intent(store, "TRADED-1", leg=2, side="SELL", state="TRADED", filled_qty=75,
            avg_price=Decimal("99.5"), order_id="9002")
    _intent(store, "REJ-1", leg=3, state="REJECTED", reason="margin")
    done = _intent(store, "SETTLED-1", leg=4, state="unresolved")
    with pool.connection() as conn:
        conn.execute("UPDATE order_intents SET settled_at = now(), resolution = 'by hand'"
                     " WHERE id = %s", (done.id,))
    parent = _intent(store, "SLICED-1", tag="DC-2", purpose="entry", leg=5, quantity=3600,
                     sliced=True)
    _intent(store, "SL-A", tag="DC-2", purpose="entry", leg=5, quantity=1800,
            parent_id=parent.id, state="PENDING")
    _intent(store, "SL-B", tag="DC-2", purpose="entry", leg=5, quantity=1800,
            parent_id=parent.id, state="unresolved")
    return store


# ---------------------------------------------------------------- list
def test_unsettled_lists_orders_in_doubt_unresolved_first(api, doubt):
    r = api.get("/api/orders/unsettled")
    assert r.status_code == 200
    body = r.json
    orders = {o["correlation_id"]: o for o in body["orders"]}
    # settled rows and sliced containers are not orders to decide on
    assert [o["correlation_id"] for o in body["orders"]] == [
        "UNRES-1", "SL-B", "NEW-1", "TRADED-1", "REJ-1", "SL-A"]
    assert (body["count"], body["unresolved"]) == (6, 2)
    unres = orders["UNRES-1"]
    assert {k: unres[k] for k in ("trade_tag", "purpose", "leg_index", "side", "quantity",
                                  "filled_qty", "state", "reason", "order_id", "unresolved",
                                  "terminal", "actions", "trade_mode", "trade_hold")} == {
        "trade_tag": "DC-1", "purpose": "exit", "leg_index": 0, "side": "BUY", "quantity": 75,
        "filled_qty": 25, "state": "unresolved", "reason": "every lookup failed",
        "order_id": "9001", "unresolved": True, "terminal": False,
        "actions": ["filled", "not_filled", "flatten"], "trade_mode": "live",
        "trade_hold": "exit orders unresolved past the deadline"}
    assert isinstance(unres["age_s"], int) and 0 <= unres["age_s"] < 600
    assert unres["price"] == "101.0500" and unres["created_at"]
    new = orders["NEW-1"]
    assert (new["unresolved"], new["terminal"], new["trade_hold"]) == (False, False, None)
    traded = orders["TRADED-1"]
    assert (traded["terminal"], traded["actions"], traded["avg_price"]) == (
        True, ["flatten"], "99.5000")
    assert orders["SL-B"]["parent_correlation_id"] == "SLICED-1"
    assert orders["NEW-1"]["parent_correlation_id"] is None


def test_unsettled_empty(api):
    assert api.get("/api/orders/unsettled").json == {"orders": [], "count": 0, "unresolved": 0}


# ---------------------------------------------------------------- resolve
@pytest.mark.parametrize(("cid", "body", "payload"), [
    ("UNRES-1", {"action": "filled", "price": "101.35", "quantity": 75, "confirm": True},
     {"correlation_id": "UNRES-1", "action": "filled", "price": "101.35", "quantity": 75,
      "confirm": True}),
    ("UNRES-1", {"action": "filled", "price": 99.5, "confirm": True},
     {"correlation_id": "UNRES-1", "action": "filled", "price": "99.5", "confirm": True}),
    ("UNRES-1", {"action": "filled", "price": 100, "quantity": 25, "confirm": True},
     {"correlation_id": "UNRES-1", "action": "filled", "price": "100", "quantity": 25,
      "confirm": True}),
    ("NEW-1", {"action": "not_filled", "confirm": True},
     {"correlation_id": "NEW-1", "action": "not_filled", "confirm": True}),
    ("SL-B", {"action": "flatten", "quantity": 1800, "confirm": True},
     {"correlation_id": "SL-B", "action": "flatten", "quantity": 1800, "confirm": True}),
    ("TRADED-1", {"action": "flatten", "quantity": 75, "confirm": True},  # terminal: flatten only
     {"correlation_id": "TRADED-1", "action": "flatten", "quantity": 75, "confirm": True}),
])
def test_resolve_queues_exactly_one_resolve_order(api, pool, doubt, cid, body, payload):
    r = api.post(f"/api/orders/{cid}/resolve", json=body)
    assert r.status_code == 202, r.json
    assert (r.json["status"], r.json["correlation_id"], r.json["action"]) == (
        "pending", cid, body["action"])
    rows = _commands(pool)
    assert len(rows) == 1
    row = rows[0]
    assert (row["id"], row["kind"], row["payload"], row["requested_by"], row["status"]) == (
        r.json["command_id"], "resolve_order", payload, "dashboard", "pending")


def test_resolve_idempotency_key_queues_once(api, pool, doubt):
    body = {"action": "not_filled", "confirm": True, "idempotency_key": "resolve-NEW-1"}
    first = api.post("/api/orders/NEW-1/resolve", json=body)
    second = api.post("/api/orders/NEW-1/resolve", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json["command_id"] == second.json["command_id"]
    assert [r["idempotency_key"] for r in _commands(pool)] == ["resolve-NEW-1"]
    assert api.get(f"/api/commands/{first.json['command_id']}").json["kind"] == "resolve_order"


FILLED = {"action": "filled", "price": "101.35", "confirm": True}


@pytest.mark.parametrize(("cid", "body", "field", "words"), [
    ("UNRES-1", {}, "action", "required"),
    ("UNRES-1", {"action": "maybe", "confirm": True}, "action", "expected one of"),
    ("UNRES-1", {"action": "filled", "confirm": True}, "price", "required for 'filled'"),
    ("UNRES-1", {**FILLED, "price": "0"}, "price", "more than 0"),
    ("UNRES-1", {**FILLED, "price": "0.00"}, "price", "more than 0"),
    ("UNRES-1", {**FILLED, "price": "-5"}, "price", "positive decimal"),
    ("UNRES-1", {**FILLED, "price": "101.355"}, "price", "at most 2 decimal"),
    ("UNRES-1", {**FILLED, "price": "abc"}, "price", "positive decimal"),
    ("UNRES-1", {**FILLED, "price": "NaN"}, "price", "positive decimal"),
    ("UNRES-1", {**FILLED, "price": 1e20}, "price", "positive decimal"),
    ("UNRES-1", {**FILLED, "price": True}, "price", "decimal price"),
    ("UNRES-1", {**FILLED, "price": ["1"]}, "price", "decimal price"),
    ("UNRES-1", {**FILLED, "price": "1\x00"}, "price", "control character"),
    ("NEW-1", {"action": "not_filled", "price": "10", "confirm": True}, "price",
     "only for 'filled'"),
    ("SL-B", {"action": "flatten", "price": "10", "quantity": 1, "confirm": True}, "price",
     "only for 'filled'"),
    ("NEW-1", {"action": "not_filled", "quantity": 10, "confirm": True}, "quantity",
     "not for 'not_filled'"),
    ("SL-B", {"action": "flatten", "confirm": True}, "quantity", "required for 'flatten'"),
    ("UNRES-1", {**FILLED, "quantity": 0}, "quantity", "between 1"),
    ("UNRES-1", {**FILLED, "quantity": "75"}, "quantity", "integer"),
    ("UNRES-1", {**FILLED, "quantity": 7.5}, "quantity", "integer"),
    ("UNRES-1", {**FILLED, "quantity": 76}, "quantity", "for 75 units"),
    ("SL-B", {"action": "flatten", "quantity": 1801, "confirm": True}, "quantity",
     "for 1800 units"),
    ("UNRES-1", {**FILLED, "quantity": 24}, "quantity", "already reported 25"),
    ("UNRES-1", {"action": "filled", "price": "1"}, "confirm", "must be true"),
    ("UNRES-1", {**FILLED, "confirm": False}, "confirm", "must be true"),
    ("UNRES-1", {**FILLED, "confirm": "yes"}, "confirm", "true or false"),
    ("UNRES-1", {**FILLED, "when": "now"}, "when", "unexpected field"),
    ("UNRES-1", {**FILLED, "idempotency_key": ""}, "idempotency_key", "characters"),
    ("TRADED-1", FILLED, "correlation_id", "TRADED"),
    ("REJ-1", {"action": "not_filled", "confirm": True}, "correlation_id", "REJECTED"),
    ("SETTLED-1", {"action": "not_filled", "confirm": True}, "correlation_id",
     "already settled"),
    ("SETTLED-1", {"action": "flatten", "quantity": 1, "confirm": True}, "correlation_id",
     "already settled"),
    ("SLICED-1", {"action": "flatten", "quantity": 1, "confirm": True}, "correlation_id",
     "SL-A, SL-B"),
    ("bad%20cid", FILLED, "correlation_id", "letters, digits"),
    ("x" * 26, FILLED, "correlation_id", "letters, digits"),
])
def test_resolve_bad_input_is_400_naming_the_field_and_writes_nothing(api, pool, doubt, cid,
                                                                       body, field, words):
    r = api.post(f"/api/orders/{cid}/resolve", json=body)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field
    assert words in r.json["error"]
    assert _commands(pool) == []


def test_resolve_unknown_order_is_404_and_writes_nothing(api, pool, doubt):
    r = api.post("/api/orders/NOPE-1/resolve", json=FILLED)
    assert r.status_code == 404
    assert "NOPE-1" in r.json["error"]
    assert _commands(pool) == []


def test_resolve_body_must_be_json(api, pool, doubt):
    r = api.post("/api/orders/UNRES-1/resolve", data="action=filled",
                 content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and r.json["field"] == "body"
    assert _commands(pool) == []


# ---------------------------------------------------------------- close a trade
@pytest.mark.parametrize(("body", "payload"), [
    ({}, {"tag": "DC-1", "mode": "send"}),
    ({"confirm": True}, {"tag": "DC-1", "mode": "send", "confirm": True}),
    ({"mode": "send", "confirm": False}, {"tag": "DC-1", "mode": "send"}),
    ({"mode": "record_from_broker", "confirm": True},
     {"tag": "DC-1", "mode": "record_from_broker", "confirm": True}),
])
def test_close_trade_queues_exactly_one_close_trade(api, pool, doubt, body, payload):
    r = api.post("/api/trades/DC-1/close", json=body)
    assert r.status_code == 202, r.json
    assert (r.json["tag"], r.json["mode"]) == ("DC-1", payload["mode"])
    rows = _commands(pool)
    assert [(c["id"], c["kind"], c["payload"], c["requested_by"]) for c in rows] == [
        (r.json["command_id"], "close_trade", payload, "dashboard")]


@pytest.mark.parametrize(("tag", "body", "field", "words"), [
    ("DC-1", {"mode": "record_from_broker"}, "confirm", "must be true"),
    ("DC-1", {"mode": "record_from_broker", "confirm": False}, "confirm", "must be true"),
    ("DC-1", {"mode": "moon"}, "mode", "send, record_from_broker"),
    ("DC-1", {"confirm": "yes"}, "confirm", "true or false"),
    ("DC-1", {"hold": True}, "hold", "unexpected field"),
    ("NOPE", {}, "tag", "no open trade with tag 'NOPE'"),
    ("C-0", {}, "tag", "already closed"),
    ("C-0", {"mode": "record_from_broker", "confirm": True}, "tag", "already closed"),
    ("x" * 101, {}, "tag", "1 to 100"),
])
def test_close_trade_bad_input_is_400_naming_the_field_and_writes_nothing(api, pool, doubt, tag,
                                                                          body, field, words):
    with pool.connection() as conn:
        conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                     " closed_at, entry_price, exit_price, quantity, gross_pnl, charges,"
                     " realized_pnl, exit_reason) VALUES (%s, 'C-0', 'DC', 'live', now(),"
                     " now(), 100, 90, 75, 750, 40, 710, 'target')", (DAY,))
    r = api.post(f"/api/trades/{tag}/close", json=body)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field
    assert words in r.json["error"]
    assert _commands(pool) == []


def test_generic_close_trade_command_takes_mode_and_confirm(api, pool, doubt):
    plain = api.post("/api/commands", json={"kind": "close_trade", "payload": {"tag": "DC-2"}})
    record = api.post("/api/commands", json={"kind": "close_trade", "payload": {
        "tag": "DC-1", "mode": "record_from_broker", "confirm": True}})
    assert plain.status_code == record.status_code == 202
    assert _command(pool, plain.json["command_id"])["payload"] == {"tag": "DC-2"}
    assert _command(pool, record.json["command_id"])["payload"] == {
        "tag": "DC-1", "mode": "record_from_broker", "confirm": True}
    for payload, field in (({"tag": "DC-1", "mode": "record_from_broker"}, "payload.confirm"),
                           ({"tag": "DC-1", "mode": "moon"}, "payload.mode"),
                           ({"tag": "DC-1", "confirm": 1}, "payload.confirm")):
        bad = api.post("/api/commands", json={"kind": "close_trade", "payload": payload})
        assert bad.status_code == 400 and bad.json["field"] == field, bad.json
    assert len(_commands(pool)) == 2


# ---------------------------------------------------------------- access
def test_orders_endpoints_refuse_without_session_or_csrf(app, pool, doubt):
    anonymous = app.test_client()
    assert anonymous.get("/api/orders/unsettled").status_code == 401
    assert anonymous.post("/api/orders/UNRES-1/resolve", json=FILLED).status_code == 401
    assert anonymous.post("/api/trades/DC-1/close", json={}).status_code == 401
    logged_in = Api(app)
    no_csrf = logged_in.client.post("/api/orders/UNRES-1/resolve", json=FILLED)
    assert no_csrf.status_code == 403 and "X-CSRF-Token" in no_csrf.json["error"]
    assert logged_in.client.post("/api/trades/DC-1/close", json={}).status_code == 403
    assert _commands(pool) == []


# ---------------------------------------------------------------- page
def test_trades_page_renders_orders_in_doubt_panel(app, api):
    anonymous = app.test_client().get("/trades")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    page = api.get("/trades")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for needle in ('id="doubt-panel"', "Orders in doubt", 'id="doubt"', 'id="doubt-summary"',
                   'id="doubt-refresh"', "Trades on hold", 'id="held"',
                   'src="/static/js/pages/trades.js"'):
        assert needle in html, needle
    assert "<script>" not in html and "onclick=" not in html  # the CSP allows no inline code
    module = api.get("/static/js/orders.js")
    assert module.status_code == 200 and "javascript" in module.content_type
    js = module.get_data(as_text=True)
    for needle in ("/api/orders/unsettled", "/resolve", "/api/commands/", "/close",
                   "Close (send what the broker still holds)",
                   "Record closed at broker trade-book prices"):
        assert needle in js, needle
    assert "orders.js" in api.get("/static/js/pages/trades.js").get_data(as_text=True)
