"""Chat login codes: the web only queues them and says so; the status endpoint reports what the
engine's notifier really did (delivered, or failed and why) against a local Telegram."""

from __future__ import annotations

import re
import socket

from engine.notify.channels import TelegramChannel
from tests.conftest import eventually

BOT_TOKEN = "4242:BOT-SECRET-TOKEN"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(client) -> dict:
    r = client.post("/api/auth/request-code", json={})
    assert r.status_code == 202, r.json
    return r.json


def _settled(client, request: dict) -> dict:
    def done():
        st = client.get(request["status_url"])
        assert st.status_code == 200, st.json
        return st.json if st.json["status"] != "queued" else None
    return eventually(done, timeout=15)


def _outbox(pool) -> dict:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM chat_outbox ORDER BY id DESC LIMIT 1").fetchone()


def test_request_code_answers_queued_never_sent(app, pool):
    client = app.test_client()
    body = _request(client)
    assert body["status"] == "queued" and "sent" not in body
    assert body["channels"] == ["telegram"] and body["valid_minutes"] == 5
    assert body["status_url"] == f"/api/auth/code-status/{body['request_id']}"
    st = client.get(body["status_url"])  # no engine running: still queued, nothing claimed
    assert st.status_code == 200
    assert st.json == {"status": "queued", "channels": [{"channel": "telegram",
                                                         "status": "queued"}]}
    assert re.search(r"\b\d{6}\b", _outbox(pool)["text"])  # waiting for the notifier


def test_code_status_unknown_or_forged_request_404(app):
    client = app.test_client()
    body = _request(client)
    handle = body["request_id"]
    forged = handle[:-2] + ("AA" if not handle.endswith("AA") else "BB")
    for bad in (forged, "1", "W1s5OTk5XV0"):
        r = client.get(f"/api/auth/code-status/{bad}")
        assert r.status_code == 404 and r.json["error"] == "no such code request"


def test_code_delivered_via_telegram_reported_delivered_and_logs_in(app, pool, chat, notifier):
    notifier([TelegramChannel(chat.url, BOT_TOKEN, "-100")])
    client = app.test_client()
    st = _settled(client, _request(client))
    assert st["status"] == "delivered"
    assert st["channels"][0]["channel"] == "telegram" and st["channels"][0]["sent_at"]
    (path, sent), = chat.requests
    assert path == f"/bot{BOT_TOKEN}/sendMessage" and sent["chat_id"] == "-100"
    code = re.search(r"\b(\d{6})\b", sent["text"]).group(1)
    row = _outbox(pool)
    assert row["sent_at"] is not None and row["error"] is None
    assert row["text"] == "[delivered; text removed]"
    assert client.post("/api/auth/login", json={"code": code}).status_code == 200


def test_code_telegram_500_reported_failed_with_reason_no_secret(app, pool, chat, notifier):
    chat.status = 500
    notifier([TelegramChannel(chat.url, BOT_TOKEN, "-100")])
    client = app.test_client()
    st = _settled(client, _request(client))
    assert st["status"] == "failed"
    failure = st["channels"][0]
    assert failure["status"] == "failed" and "HTTP 500" in failure["error"]
    assert BOT_TOKEN not in str(st) and chat.url not in str(st)
    assert len(chat.requests) == 1  # it was really tried
    row = _outbox(pool)
    assert row["sent_at"] is None and row["text"] == "[not delivered; text removed]"
    assert not re.search(r"\d{6}", row["text"])


def test_code_telegram_unreachable_reported_failed(app, pool, notifier):
    url = f"http://127.0.0.1:{_closed_port()}"
    notifier([TelegramChannel(url, BOT_TOKEN, "-100", timeout=2)])
    client = app.test_client()
    st = _settled(client, _request(client))
    assert st["status"] == "failed"
    assert st["channels"][0]["error"].startswith("telegram unreachable")
    assert BOT_TOKEN not in str(st) and url not in str(st)
    row = _outbox(pool)
    assert row["sent_at"] is None and row["text"] == "[not delivered; text removed]"


def test_code_never_picked_up_reported_failed_once_expired(app, pool):
    client = app.test_client()
    body = _request(client)
    with pool.connection() as conn:
        conn.execute("UPDATE chat_outbox SET created_at = now() - interval '6 minutes'")
    st = client.get(body["status_url"]).json
    assert st["status"] == "failed" and "engine running" in st["channels"][0]["error"]


def test_code_two_channels_one_failing_reports_each(make_app, pool, chat, notifier):
    app = make_app(CHAT_CHANNELS=("telegram", "cliq"))
    notifier([TelegramChannel(chat.url, BOT_TOKEN, "-100")])  # cliq not configured in engine
    client = app.test_client()
    body = _request(client)

    def both_settled():
        st = client.get(body["status_url"]).json
        return st if all(c["status"] != "queued" for c in st["channels"]) else None
    st = eventually(both_settled, timeout=15)
    assert st["status"] == "delivered"
    by_channel = {c["channel"]: c for c in st["channels"]}
    assert by_channel["telegram"]["status"] == "delivered"
    assert by_channel["cliq"]["status"] == "failed"
    assert "not configured" in by_channel["cliq"]["error"]
