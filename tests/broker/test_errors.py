"""Each typed error, produced by the real simulator (and the classifier for the rest)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import requests

from engine.broker.dhan import errors as e
from engine.broker.dhan.ratelimit import RateLimiter
from tests.broker.conftest import atm_option, order, wait_for


def test_errors_expired_token_authentication_error_and_callback(sim, make_client):
    seen: list[e.DhanError] = []
    token = sim.sim.issue_token(ttl=-10)
    client = make_client(sim, token, on_auth_error=seen.append)
    with pytest.raises(e.AuthenticationError) as info:
        client.positions()
    assert info.value.status == 401 and info.value.code == "DH-901"
    assert len(seen) == 1 and seen[0] is info.value
    assert token not in str(info.value)


def test_errors_revoked_token_after_renew_is_token_revoked(sim, make_client):
    seen: list[e.DhanError] = []
    old = sim.sim.issue_token()
    client = make_client(sim, old, on_auth_error=seen.append)
    grant = client.renew_token()
    assert grant.access_token != old
    with pytest.raises(e.TokenRevokedError) as info:
        client.profile()
    assert info.value.code == "DH-906" and info.value.status == 400
    assert isinstance(info.value, e.AuthenticationError) and seen
    assert make_client(sim, grant.access_token).profile()["dhanClientId"]


def test_errors_renew_accepts_access_token_key(make_sim, make_client):
    sim = make_sim(renew_token_key="accessToken")
    grant = make_client(sim).renew_token()
    assert make_client(sim, grant.access_token).profile()


def test_errors_post_renew_token_is_input_error(sim, client):
    with pytest.raises(e.InputError):
        client.transport.call("POST", "/RenewToken", klass=None, body={})


def test_errors_order_rate_limit_not_retried(sim, client):
    sid, lot = atm_option(sim)
    sim.sim.faults.add("rate_limit", method="POST", path="/v2/orders")
    with pytest.raises(e.RateLimitError) as info:
        client.place_order(order(sid, lot, "rl-1"))
    assert info.value.status == 429 and info.value.code == "DH-904"
    assert len(sim.sim.requests("POST", "/v2/orders")) == 1
    assert client.order_list() == []


def test_errors_get_rate_limit_and_5xx_retried_then_succeed(sim, client):
    sim.sim.faults.add("rate_limit", method="GET", path="/v2/positions")
    sim.sim.faults.add("status", method="GET", path="/v2/positions", status=503)
    assert client.positions() == []
    assert [r["status"] for r in sim.sim.requests("GET", "/v2/positions")] == [429, 503, 200]


def test_errors_persistent_5xx_is_transient_error(sim, client):
    sim.sim.faults.add("status", method="GET", path="/v2/fundlimit", count=5, status=500,
                       body={"errorType": "Internal", "errorCode": "DH-908",
                             "errorMessage": "Internal Server Error"})
    with pytest.raises(e.TransientError) as info:
        client.fund_limits()
    assert info.value.code == "DH-908"


def test_errors_get_timeout_is_transient_error(sim, make_client):
    client = make_client(sim, timeout=0.3, get_retries=0)
    sim.sim.faults.add("timeout", path="/v2/profile", seconds=1.0)
    with pytest.raises(e.TransientError, match="no answer within"):
        client.profile()


def test_errors_bad_input_dh905_and_data_codes(sim, client):
    sid, _ = atm_option(sim)
    with pytest.raises(e.InputError) as info:
        client.margin(security_id=sid, exchange_segment="NSE_FNO", transaction_type="BUY",
                      quantity=0, product_type="INTRADAY", price=Decimal(1))
    assert info.value.code == "DH-905"
    with pytest.raises(e.InputError) as info:
        client.option_chain(date(2001, 1, 4))
    assert info.value.code == "811"
    with pytest.raises(e.InputError) as info:
        client.expiry_list(underlying_scrip=99)
    assert info.value.code == "813"


def test_errors_no_data_plan_access_denied(make_sim, make_client):
    sim = make_sim()
    sim.sim.account.data_plan = False
    with pytest.raises(e.AccessDeniedError) as info:
        make_client(sim).ltp({"IDX_I": [13]})
    assert info.value.code == "806"


@pytest.mark.parametrize("style", ["DH-911", "DH-905"])
def test_errors_ip_not_whitelisted(make_sim, make_client, style):
    sim = make_sim(ip_error_code=style)
    sim.sim.account.allowed_ips = {"10.9.8.7"}
    sid, lot = atm_option(sim)
    with pytest.raises(e.IPNotWhitelistedError):
        make_client(sim).place_order(order(sid, lot, "ip-1"))


def test_errors_order_rejections_http_and_rms(sim, client):
    sid, lot = atm_option(sim)
    sim.sim.faults.add("reject_order", method="POST", path="/v2/orders")
    with pytest.raises(e.OrderError, match="Insufficient Funds") as info:
        client.place_order(order(sid, lot, "rej-1"))
    assert info.value.code == "DH-906" and not isinstance(info.value, e.AuthenticationError)
    sim.sim.faults.add("reject_order", method="POST", path="/v2/orders", mode="rms",
                       reason="Margin Shortfall")
    ack = client.place_order(order(sid, lot, "rej-2"))
    rejected = wait_for(lambda: (o := client.get_order(ack.order_id)).status == "REJECTED" and o)
    assert "Margin Shortfall" in rejected.oms_error_description


def test_errors_real_insufficient_funds_and_lot_multiple_rejected(sim, client):
    sid, lot = atm_option(sim)
    sim.sim.account.sod_limit = 10.0
    ack = client.place_order(order(sid, lot, "poor-1"))
    o = wait_for(lambda: (o := client.get_order(ack.order_id)).status != "TRANSIT" and o)
    assert o.status == "REJECTED" and "Insufficient Funds" in o.oms_error_description
    ack = client.place_order(order(sid, lot + 1, "odd-1"))
    o = wait_for(lambda: (o := client.get_order(ack.order_id)).status != "TRANSIT" and o)
    assert o.status == "REJECTED" and "lot size" in o.oms_error_description


def test_errors_cancel_in_transit_is_order_in_transit(make_sim, make_client):
    sim = make_sim(transit_sec=30.0)
    client = make_client(sim)
    sid, lot = atm_option(sim)
    ack = client.place_order(order(sid, lot, "tr-1"))
    with pytest.raises(e.OrderInTransitError):
        client.cancel_order(ack.order_id)
    assert client.get_order_by_correlation_id("tr-1") is None  # 404 while in TRANSIT


def test_errors_unknown_path_404_in_dhan_error_shape(sim, client):
    with pytest.raises(e.DhanError) as info:
        client.transport.call("GET", "/forever/all", klass=None)
    assert info.value.status == 404 and info.value.code == "DH-905"
    assert "GET /v2/forever/all" in str(info.value)
    for method, path in (("GET", "/ledger?from-date=2026-01-01&to-date=2026-01-02"),
                         ("POST", "/positions/convert"), ("GET", "/nope")):
        resp = requests.request(method, sim.api_base + path, timeout=5,
                                headers={"access-token": sim.sim.issue_token()}, json={})
        body = resp.json()
        assert resp.status_code == 404 and body["errorType"] == "Input_Exception"
        assert body["errorCode"] == "DH-905" and path.split("?")[0] in body["errorMessage"]
        assert body["status"] == 404 and body["path"] == "/v2" + path.split("?")[0]


def test_errors_client_side_limiter_max_wait_raises(sim, make_client):
    client = make_client(sim, limiter=RateLimiter(), max_rate_wait=0.1)
    client.ltp({"IDX_I": [13]})
    with pytest.raises(e.RateLimitError, match="client-side quote"):
        client.ltp({"IDX_I": [13]})


@pytest.mark.parametrize(("status", "body", "cls"), [
    (403, {"errorType": "Invalid_Access", "errorCode": "DH-902", "errorMessage": "x"},
     e.AccessDeniedError),
    (400, {"errorType": "Data_Error", "errorCode": "DH-907", "errorMessage": "no data"},
     e.DataError),
    (502, {"errorType": "Network", "errorCode": "DH-909", "errorMessage": "x"}, e.TransientError),
    (401, {"status": "failed", "data": {"807": "Access token expired"}}, e.AuthenticationError),
    (401, {"status": "failed", "data": {"808": "Authentication Failed"}}, e.AuthenticationError),
    (401, {"status": "failed", "data": {"810": "Client ID invalid"}}, e.AuthenticationError),
    (429, {"status": "failed", "data": {"805": "Too many requests"}}, e.RateLimitError),
    (400, {"status": "failed", "data": {"804": "too many instruments"}}, e.InputError),
    (500, {"status": "failed", "data": {"800": "Internal Server Error"}}, e.TransientError),
    (200, {"status": "error", "message": "Invalid TOTP"}, e.MintError),
    (500, {"errorType": "HOLDING_ERROR", "errorCode": "DH-1111",
           "errorMessage": "No holdings available"}, e.DhanError),
    (502, None, e.TransientError),
])
def test_errors_classify_maps_codes(status, body, cls):
    err = e.classify(status, body, "GET /x")
    assert type(err) is cls


def test_errors_classify_success_is_none_and_messages_redacted():
    assert e.classify(200, [], "GET /orders") is None
    assert e.classify(202, None, "DELETE /orders/1") is None
    err = e.classify(400, {"errorCode": "DH-905", "errorMessage":
                           "bad pin=918273&totp=123456 eyJhbGciOi.eyJleHAiOjF9.c2ln"}, "POST /x")
    assert "918273" not in str(err) and "eyJhbGciOi" not in str(err)
