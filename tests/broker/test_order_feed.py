"""Dhan's order-update WebSocket: the feed client (engine.broker.dhan.order_feed) against the
simulator's feed (engine.dhan_sim.order_ws) on loopback, and the live broker asking the feed
first about an order in doubt, REST lookups remaining the fallback.

Real servers, real sockets, real PostgreSQL; faults come from the simulator's own rules
(429 / timeout / drop on REST lookups, ``ws_drop`` / ``ws_disconnect`` on feed alerts).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyotp
import pytest
import simple_websocket

from engine.app import build
from engine.broker.dhan.client import DhanClient
from engine.broker.dhan.config import DhanConfig
from engine.broker.dhan.errors import AuthenticationError, DhanError
from engine.broker.dhan.instruments import InstrumentMaster
from engine.broker.dhan.live_broker import DhanLiveBroker
from engine.broker.dhan.order_feed import OrderFeed, OrderUpdate, normalise_status
from engine.broker.dhan.ratelimit import RateLimiter
from engine.clock import ManualClock, RealClock
from engine.config import ConfigError, load
from engine.dhan_sim import SimServer
from engine.execution.intents import IntentStore
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.timeutil import IST
from tests.broker.conftest import atm_option, order
from tests.conftest import eventually
from tests.rehearsal.conftest import sim_client, sim_quotes

NEAR = "35000"  # BuiltinMarket's near NIFTY future
DAY = date(2025, 2, 3)
SESSION = datetime(2025, 2, 3, 10, 0, tzinfo=IST)


@pytest.fixture
def sim(make_sim) -> SimServer:
    return make_sim(deep_pockets=True)


@pytest.fixture
def feeds() -> Iterator[list[OrderFeed]]:
    started: list[OrderFeed] = []
    yield started
    for feed in started:
        feed.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _feed(sim: SimServer, feeds: list[OrderFeed], token: str | None, *, login: bool = True,
          **kw) -> OrderFeed:
    kw.setdefault("backoff_s", (0.05, 0.3))
    feed = OrderFeed(sim.sim.account.client_id, lambda: token, url=sim.order_ws_url,
                     **kw).start()
    feeds.append(feed)
    if login:
        eventually(lambda: sim.order_ws.logged_in >= 1, timeout=5)
    return feed


def _raw(sim: SimServer, login: dict) -> simple_websocket.Client:
    ws = simple_websocket.Client.connect(sim.order_ws_url + "/")  # (the stock client needs a path)
    ws.send(json.dumps(login))
    return ws


def _login(client_id: str, token: str) -> dict:
    return {"LoginReq": {"MsgCode": 42, "ClientId": client_id, "Token": token},
            "UserType": "SELF"}


def _alerts(ws: simple_websocket.Client, cid: str, until: str, timeout: float = 5.0
            ) -> list[dict]:
    """The alerts of ``cid`` received until one has status ``until``."""
    seen: list[dict] = []

    def got() -> bool:
        text = ws.receive(timeout=0.1)
        if text is not None:
            msg = json.loads(text)
            assert msg["Type"] == "order_alert"
            if msg["Data"]["CorrelationId"] == cid:
                seen.append(msg["Data"])
        return bool(seen) and seen[-1]["Status"] == until

    eventually(got, timeout=timeout, interval=0)
    return seen


def _broker(sim: SimServer, pool, feed: OrderFeed | None, **client_kw) -> DhanLiveBroker:
    return DhanLiveBroker(sim_client(sim, **client_kw), RealClock(), intents=IntentStore(pool),
                          quotes=sim_quotes(sim), fill_timeout_s=2.0, poll_interval_s=0.02,
                          resolve_window_s=4.0, lookup_backoff_s=(0.05, 0.2), order_feed=feed)


def _lot(sim: SimServer) -> int:
    return sim.sim.exchange.row(NEAR).lot_size


def _cids(sim: SimServer) -> Counter:
    return Counter(o.body["correlationId"] for o in sim.sim.exchange.orders.values())


# ---------------------------------------------------------------------- protocol
def test_login_message_is_dhans_and_alerts_follow_an_order_from_placed_to_traded(
        sim: SimServer, feeds, logs) -> None:
    token = sim.sim.issue_token()
    feed = _feed(sim, feeds, token)
    assert sim.order_ws.last_login == _login(sim.sim.account.client_id, token)
    assert feed.connected
    raw = _raw(sim, _login(sim.sim.account.client_id, token))
    eventually(lambda: sim.order_ws.logged_in == 2)
    client = DhanClient(sim.sim.account.client_id, access_token=token, api_base=sim.api_base,
                        limiter=RateLimiter())
    sid, lot = atm_option(sim)
    ack = client.place_order(order(sid, 2 * lot, "FEED-T1"))

    statuses = [d["Status"] for d in _alerts(raw, "FEED-T1", "Traded")]
    assert statuses == ["Transit", "Pending", "Traded"]
    update = feed.wait_for("FEED-T1", 5, until=lambda u: u.final)
    sim_order = sim.sim.exchange.orders[ack.order_id]
    assert update is not None and update.status == "TRADED" and update.order_id == ack.order_id
    assert (update.security_id, update.side, update.quantity, update.traded_qty) == (
        sid, "BUY", 2 * lot, 2 * lot)
    assert update.avg_price == Decimal(str(round(sim_order.avg_price, 2)))
    assert (update.product_type, update.order_type, update.exchange_segment) == (
        "INTRADAY", "MARKET", "NSE_FNO")
    assert feed.latest(order_id=ack.order_id) == update
    as_order = update.to_order()
    assert (as_order.status, as_order.filled_qty, as_order.correlation_id) == (
        "TRADED", 2 * lot, "FEED-T1")
    raw.close()
    assert token not in logs.text


def test_every_state_change_is_pushed(sim: SimServer, feeds) -> None:
    token = sim.sim.issue_token()
    raw = _raw(sim, _login(sim.sim.account.client_id, token))
    eventually(lambda: sim.order_ws.logged_in == 1)
    client = DhanClient(sim.sim.account.client_id, access_token=token, api_base=sim.api_base,
                        limiter=RateLimiter())
    sid, lot = atm_option(sim)
    # resting (a far-off limit), then cancelled
    ack = client.place_order(order(sid, lot, "FEED-C", order_type="LIMIT",
                                   price=Decimal("0.05")))
    _alerts(raw, "FEED-C", "Pending")
    client.cancel_order(ack.order_id)
    assert _alerts(raw, "FEED-C", "Cancelled")[-1]["OrderNo"] == ack.order_id
    # rejected by RMS
    sim.sim.faults.add("reject_order", method="POST", path="/v2/orders", mode="rms",
                       reason="Insufficient Funds")
    client.place_order(order(sid, lot, "FEED-R"))
    rejected = _alerts(raw, "FEED-R", "Rejected")[-1]
    assert "Insufficient Funds" in rejected["ReasonDescription"]
    # part-traded
    sim.sim.faults.add("partial_fill", method="POST", path="/v2/orders", fill_qty=lot)
    client.place_order(order(sid, 2 * lot, "FEED-P"))
    part = _alerts(raw, "FEED-P", "Part_Traded")[-1]
    assert (part["TradedQty"], part["Quantity"]) == (lot, 2 * lot)
    # expired at the close
    ack = client.place_order(order(sid, lot, "FEED-E", order_type="LIMIT",
                                   price=Decimal("0.05")))
    _alerts(raw, "FEED-E", "Pending")
    sim.sim.exchange.expire(sim.sim.exchange.orders[ack.order_id])
    assert _alerts(raw, "FEED-E", "Expired")[-1]["RemainingQuantity"] == lot
    raw.close()


@pytest.mark.parametrize(("status", "qty", "traded", "expected"), [
    ("Traded", 50, 50, "TRADED"), ("TRADED", 50, 50, "TRADED"), ("Pending", 50, 0, "PENDING"),
    ("Pending", 50, 25, "PART_TRADED"), ("Part_Traded", 50, 25, "PART_TRADED"),
    ("PART TRADED", 50, 25, "PART_TRADED"), ("Cancelled", 50, 0, "CANCELLED"),
    ("Canceled", 50, 0, "CANCELLED"), ("Rejected", 50, 0, "REJECTED"),
    ("Expired", 50, 0, "EXPIRED"), ("Transit", 50, 0, "TRANSIT"), ("Triggered", 50, 0, None),
    ("", 50, 0, None)])
def test_feed_statuses_are_normalised_to_the_rest_ones(status, qty, traded, expected) -> None:
    assert normalise_status(status, qty, traded) == expected


def test_alert_without_an_order_state_is_not_an_update() -> None:
    base = {"OrderNo": "1", "TxnType": "B", "Quantity": 50, "TradedQty": 0, "Status": "Pending",
            "SecurityId": "35000", "CorrelationId": ""}
    assert OrderUpdate.from_alert(base).correlation_id is None
    assert OrderUpdate.from_alert({**base, "Status": "Modified"}) is None
    assert OrderUpdate.from_alert({**base, "TxnType": "X"}) is None
    assert OrderUpdate.from_alert({**base, "OrderNo": ""}) is None
    with pytest.raises(ValueError, match="must be ws://"):
        OrderFeed("1", lambda: "t", url="https://api-order-update.dhan.co")


def test_bad_token_revoked_token_and_wrong_client_id_are_refused(sim: SimServer, feeds,
                                                                 logs) -> None:
    client_id = sim.sim.account.client_id
    old = sim.sim.issue_token()
    good = sim.sim.issue_token()  # kills ``old`` (DH-906, as after a renew)
    for login, code in ((_login(client_id, "eyJhbGciOiJIUzUxMiJ9.eyJ4IjoxfQ.forged"), "DH-901"),
                        (_login(client_id, old), "DH-906"),
                        (_login("1999999999", good), "DH-901"),
                        ({"LoginReq": {"MsgCode": 41, "ClientId": client_id, "Token": good},
                          "UserType": "SELF"}, "DH-905")):
        ws = _raw(sim, login)
        reply = json.loads(ws.receive(timeout=5))
        assert reply["errorCode"] == code, (login, reply)
        eventually(lambda ws=ws: not ws.connected)
        assert ws.close_reason == 1008
    assert sim.order_ws.logged_in == 0

    refusals: list[DhanError] = []
    feed = _feed(sim, feeds, old, login=False, on_auth_error=refusals.append)
    eventually(lambda: feed.auth_failures >= 2)  # refused, retried with back-off, refused
    assert isinstance(refusals[0], AuthenticationError) and refusals[0].code == "DH-906"
    feed.stop()  # (between refusals the feed reconnects: ``connected`` is True until refused)
    assert sim.order_ws.logged_in == 0 and not feed.connected
    assert feed.auth_failures >= feed.connects - 1  # every login but one in flight was refused
    assert "login refused" in feed.last_error
    assert old not in logs.text and good not in logs.text


def test_feed_reconnects_and_logs_in_again_after_the_server_drops_it(sim: SimServer, feeds,
                                                                     logs) -> None:
    token = sim.sim.issue_token()
    feed = _feed(sim, feeds, token)
    client = DhanClient(sim.sim.account.client_id, access_token=token, api_base=sim.api_base,
                        limiter=RateLimiter())
    sid, lot = atm_option(sim)
    assert sim.order_ws.drop_connections() == 1
    eventually(lambda: feed.connects == 2 and sim.order_ws.logged_in == 1)
    assert sim.order_ws.logins == 2
    client.place_order(order(sid, lot, "FEED-RC1"))
    assert feed.wait_for("FEED-RC1", 5, until=lambda u: u.final).status == "TRADED"

    # the server drops the connection instead of sending an alert: lost, then reconnected
    sim.sim.faults.add("ws_disconnect", method="WS", path="/order-update/PENDING/FEED-RC2")
    client.place_order(order(sid, lot, "FEED-RC2"))
    eventually(lambda: feed.connects == 3 and sim.order_ws.logged_in == 1)
    assert sim.order_ws.dropped == 1
    assert token not in logs.text


def test_a_delayed_alert_never_moves_the_order_backwards(sim: SimServer, feeds) -> None:
    token = sim.sim.issue_token()
    feed = _feed(sim, feeds, token)
    sim.sim.faults.add("ws_delay", method="WS", path="/order-update/PENDING/FEED-D1",
                       seconds=0.3)
    client = DhanClient(sim.sim.account.client_id, access_token=token, api_base=sim.api_base,
                        limiter=RateLimiter())
    sid, lot = atm_option(sim)
    client.place_order(order(sid, lot, "FEED-D1"))
    assert feed.wait_for("FEED-D1", 5, until=lambda u: u.final).status == "TRADED"
    count = feed.messages
    eventually(lambda: feed.messages == count + 1)  # the late PENDING arrived ...
    assert feed.latest("FEED-D1").status == "TRADED"  # ... and was not taken


def test_official_sdk_order_update_client_logs_in_and_hears_the_order(sim: SimServer) -> None:
    """The ``dhanhq`` SDK's own OrderUpdate client (its login message, its WebSocket
    library) against the simulator's feed."""
    dhanhq_sdk = pytest.importorskip("dhanhq")
    token = sim.sim.issue_token()
    ctx = dhanhq_sdk.DhanContext(sim.sim.account.client_id, token)
    sdk = dhanhq_sdk.OrderUpdate(ctx)
    sdk.order_feed_wss = sim.order_ws_url
    heard: list[dict] = []
    sdk.on_update = heard.append
    thread = threading.Thread(target=sdk.connect_to_dhan_websocket_sync, daemon=True)
    thread.start()
    eventually(lambda: sim.order_ws.logged_in == 1, timeout=10)
    assert sim.order_ws.last_login == _login(sim.sim.account.client_id, token)
    client = DhanClient(sim.sim.account.client_id, access_token=token, api_base=sim.api_base,
                        limiter=RateLimiter())
    sid, lot = atm_option(sim)
    client.place_order(order(sid, lot, "FEED-SDK"))
    eventually(lambda: [m["Data"]["Status"] for m in heard] == ["Transit", "Pending", "Traded"])
    sim.order_ws.drop_connections()
    thread.join(timeout=5)
    assert not thread.is_alive()


# ---------------------------------------------------------------------- live broker
def test_every_rest_lookup_fails_but_the_feed_says_traded_filled_without_resend(
        sim: SimServer, pool, feeds, logs) -> None:
    """The place answer is lost and every REST lookup after it fails (429 on the
    correlation-id lookup, a timeout on the order id, a dropped order book, 500 on the trade
    book): the feed heard the order trade, so the leg is filled at the feed's average price,
    adopted into its intent, and nothing is sent twice."""
    token = sim.sim.issue_token()
    feed = _feed(sim, feeds, token)
    faults = sim.sim.faults
    faults.add("drop", method="POST", path="/v2/orders")
    faults.add("rate_limit", method="GET", path="/v2/orders/external/.*", count=None)
    faults.add("timeout", method="GET", path="/v2/orders/[0-9]+", count=None, seconds=0.6)
    faults.add("drop", method="GET", path="/v2/orders", count=None, skip=1)  # 1st: cid check
    faults.add("status", method="GET", path="/v2/trades.*", count=None, status=500)
    broker = _broker(sim, pool, feed, access_token=token, timeout=0.4, lookup_grace=0.3)
    lot = _lot(sim)

    fills = broker.execute((Leg(security_id=NEAR, side=Side.BUY, quantity=lot,
                                kind=InstrumentKind.FUT),), correlation_base="FD1",
                           trade_date=DAY)

    assert _cids(sim) == Counter({"FD1-0": 1})  # exactly one order for the intent
    (placed,) = sim.sim.exchange.orders.values()
    assert placed.status == "TRADED" and len(sim.sim.requests("POST", "/v2/orders")) == 1
    assert fills[0].order_id == placed.order_id
    assert fills[0].price == Decimal(str(placed.avg_price)).quantize(Decimal("0.01"))
    log = sim.sim.request_log
    after_place = log[next(i for i, r in enumerate(log) if r["method"] == "POST"):]
    lookups = [r for r in after_place if r["method"] == "GET"]
    assert {r["path"].split("/")[2] for r in lookups} == {"orders", "trades"}
    assert all(r["fault"] for r in lookups), f"a REST lookup answered: {lookups}"
    with pool.connection() as conn:
        row = conn.execute("SELECT * FROM order_intents WHERE correlation_id = 'FD1-0'"
                           ).fetchone()
    assert row["state"] == "TRADED" and row["order_id"] == placed.order_id
    assert "found at the broker" in row["resolution"]
    assert token not in logs.text


def test_feed_traded_price_comes_from_the_trade_book(sim: SimServer, pool, feeds) -> None:
    token = sim.sim.issue_token()
    feed = _feed(sim, feeds, token)
    broker = _broker(sim, pool, feed, access_token=token)
    lot = _lot(sim)
    fills = broker.execute((Leg(security_id=NEAR, side=Side.SELL, quantity=lot,
                                kind=InstrumentKind.FUT),), correlation_base="FD3",
                           trade_date=DAY)
    (placed,) = sim.sim.exchange.orders.values()
    assert feed.latest("FD3-0").status == "TRADED"
    assert sim.sim.requests("GET", f"/v2/trades/{placed.order_id}")
    trade_px = [t["tradedPrice"] for t in sim.sim.exchange.trades]
    assert fills[0].price == Decimal(str(trade_px[0])).quantize(Decimal("0.01"))


def test_dropped_feed_alerts_fall_back_to_rest(sim: SimServer, pool, feeds) -> None:
    """The place answer is lost and the feed loses every alert of the order: the REST
    lookups find it and the leg fills, once."""
    token = sim.sim.issue_token()
    feed = _feed(sim, feeds, token)
    sim.sim.faults.add("drop", method="POST", path="/v2/orders")
    sim.sim.faults.add("ws_drop", method="WS", path="/order-update/.*/FD2-0", count=None)
    broker = _broker(sim, pool, feed, access_token=token, timeout=0.5, lookup_grace=0.2)
    lot = _lot(sim)

    fills = broker.execute((Leg(security_id=NEAR, side=Side.BUY, quantity=lot,
                                kind=InstrumentKind.FUT),), correlation_base="FD2",
                           trade_date=DAY)

    assert _cids(sim) == Counter({"FD2-0": 1})
    (placed,) = sim.sim.exchange.orders.values()
    assert fills[0].order_id == placed.order_id and placed.status == "TRADED"
    assert feed.latest("FD2-0") is None and sim.order_ws.dropped >= 3  # nothing was heard
    answered = [r for r in sim.sim.request_log if r["method"] == "GET"
                and r["path"].startswith("/v2/orders/") and r["status"] == 200]
    assert answered, "the order must have been resolved by a REST lookup"


def test_feed_alert_that_does_not_match_the_intent_is_ignored(sim: SimServer, pool,
                                                              feeds) -> None:
    """An alert with the intent's correlation id but another side (an order this engine did
    not send) never stands for the intent: REST decides."""
    token = sim.sim.issue_token()
    feed = _feed(sim, feeds, token)
    client = DhanClient(sim.sim.account.client_id, access_token=token, api_base=sim.api_base,
                        limiter=RateLimiter())
    lot = _lot(sim)
    client.place_order(order(NEAR, lot, "FD4-0", transaction_type="SELL",
                             product_type="MARGIN"))
    assert feed.wait_for("FD4-0", 5, until=lambda u: u.final).side == "SELL"
    broker = _broker(sim, pool, feed, access_token=token)
    row = broker.intents.create(quantity=lot, correlation_id="FD4-0", trade_date=DAY, tag="FD4",
                                purpose="operator", leg_index=0, attempt=0, security_id=NEAR,
                                side="BUY", product="MARGIN", segment="NSE_FNO",
                                order_type="MARKET", price=None, payload={})
    assert broker._feed_order(row, None) is None
    order_, why = broker._lookup(row, None)
    assert order_ is None and "does not match" in why


# ---------------------------------------------------------------------- rehearsal path
def test_simulator_cli_writes_the_feed_url_and_serves_it(tmp_path: Path, feeds) -> None:
    env_file = tmp_path / "sim.env"
    proc = subprocess.Popen([sys.executable, "-m", "engine.dhan_sim", "--port", "0",
                             "--market", "builtin", "--env-file", str(env_file)],
                            cwd=Path(__file__).parents[2], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: env_file.exists() and "DHAN_ORDER_FEED_URL" in env_file.read_text(),
                   timeout=20)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["DHAN_ORDER_FEED_URL"].startswith("ws://127.0.0.1:")
        config = DhanConfig.from_env(env)
        minter = DhanClient.from_config(config, limiter=RateLimiter())
        token = minter.generate_access_token(config.pin,
                                             pyotp.TOTP(config.totp_secret).now()).access_token
        feed = OrderFeed(config.client_id, lambda: token, url=env["DHAN_ORDER_FEED_URL"],
                         backoff_s=(0.05, 0.3)).start()
        feeds.append(feed)
        client = DhanClient.from_config(config, access_token=token, limiter=RateLimiter())
        lot = InstrumentMaster.download(config.instruments_url).lot_size(NEAR)
        heard: list[OrderUpdate] = []

        def place_and_hear() -> bool:  # an alert sent before the login lands is not replayed
            cid = f"CLI-{len(client.order_list())}"
            client.place_order(order(NEAR, lot, cid, product_type="MARGIN"))
            update = feed.wait_for(cid, 1.0, until=lambda u: u.final)
            heard.extend([update] if update is not None else [])
            return bool(heard)

        eventually(place_and_hear, timeout=10, interval=0)
        assert heard[0].status == "TRADED" and heard[0].traded_qty == lot
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------------- wiring
def _engine_config(sim: SimServer, db_url: str):
    return load({"DATABASE_URL": db_url, "MARKET_SOURCE": "sim", "BROKER": "dhan",
                 "DHAN_CLIENT_ID": sim.sim.account.client_id,
                 "DHAN_ACCESS_TOKEN": sim.sim.issue_token(), "DHAN_API_BASE": sim.api_base,
                 "DHAN_AUTH_BASE": sim.url, "DHAN_INSTRUMENTS_URL": sim.instruments_url})


def test_engine_starts_the_feed_of_dhan_order_feed_url_and_stops_it(
        sim: SimServer, db_url: str, pool, monkeypatch) -> None:
    monkeypatch.setenv("DHAN_ORDER_FEED_URL", sim.order_ws_url)
    engine = build(_engine_config(sim, db_url), pool, clock=ManualClock(SESSION),
                   listen_settings=False)
    feed = engine.services["dhan_order_feed"]
    try:
        assert engine.services["live_broker"].order_feed is feed and feed.url == sim.order_ws_url
        assert sim.order_ws.logged_in == 0  # built, not started
        engine.start(with_bus=False)
        eventually(lambda: sim.order_ws.logged_in == 1 and feed.connected, timeout=10)
    finally:
        engine.stop()
    assert not feed.connected and not feed._thread.is_alive()
    eventually(lambda: sim.order_ws.logged_in == 0)


def test_feed_wiring_switches_and_errors(sim: SimServer, db_url: str, pool,
                                         monkeypatch) -> None:
    cfg = _engine_config(sim, db_url)

    def feed_of() -> OrderFeed | None:
        engine = build(cfg, pool, clock=ManualClock(SESSION), listen_settings=False)
        try:
            assert engine.services["live_broker"].order_feed is engine.services.get(
                "dhan_order_feed")
            return engine.services.get("dhan_order_feed")
        finally:
            engine.stop()

    # a simulator's REST base without DHAN_ORDER_FEED_URL: never the real Dhan feed
    monkeypatch.delenv("DHAN_ORDER_FEED_URL", raising=False)
    assert feed_of() is None
    monkeypatch.setenv("DHAN_ORDER_FEED_URL", sim.order_ws_url)
    monkeypatch.setenv("DHAN_ORDER_FEED", "false")
    assert feed_of() is None
    monkeypatch.setenv("DHAN_ORDER_FEED", "maybe")
    with pytest.raises(ConfigError, match="DHAN_ORDER_FEED='maybe'"):
        feed_of()
    monkeypatch.setenv("DHAN_ORDER_FEED", "true")
    monkeypatch.setenv("DHAN_ORDER_FEED_URL", "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="DHAN_ORDER_FEED_URL"):
        feed_of()


def test_feed_socket_takes_a_frame_that_came_with_the_101() -> None:
    """A server that answers the handshake and sends an order update in the same write (one
    TCP read for the client): the update is received at once, not held in the protocol
    buffer until the next frame or ping arrives (the stock simple_websocket handshake)."""
    import socket

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    from engine.broker.dhan.order_feed import _FeedSocket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            ws = WSConnection(ConnectionType.SERVER)
            while not any(isinstance(e, Request) for e in ws.events()):
                ws.receive_data(conn.recv(4096))
            conn.sendall(ws.send(AcceptConnection()) + ws.send(TextMessage('{"Type": "order"}')))
            conn.recv(4096)  # silent until the client closes

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    feed = _FeedSocket(f"ws://127.0.0.1:{port}/", timeout=5, ping_interval=None)
    try:
        assert feed.receive(timeout=2) == '{"Type": "order"}'
    finally:
        feed.close()
        server.join(5)
        listener.close()


def test_closing_a_feed_socket_twice_is_not_an_error() -> None:
    """Two closers at once (stop() on one thread, the session ending on the feed's own): the
    second finds the socket closing and lets go of it; an exception there would end the
    feed's thread (seen as an unhandled thread exception in a CI run)."""
    import socket

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Request

    from engine.broker.dhan.order_feed import _FeedSocket

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            ws = WSConnection(ConnectionType.SERVER)
            while not any(isinstance(e, Request) for e in ws.events()):
                ws.receive_data(conn.recv(4096))
            conn.sendall(ws.send(AcceptConnection()))
            conn.recv(4096)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    feed = _FeedSocket(f"ws://127.0.0.1:{listener.getsockname()[1]}/", timeout=5,
                       ping_interval=None)
    try:
        feed.ws.send(CloseConnection(code=1000))  # the protocol is closing already
        assert feed.connected
        OrderFeed._close(feed)  # the close frame cannot be sent again: let go, no exception
        assert feed.sock.fileno() == -1
        feed.thread.join(5)
        assert not feed.thread.is_alive()
    finally:
        server.join(5)
        listener.close()
