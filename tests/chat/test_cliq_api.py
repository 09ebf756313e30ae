"""POST /api/chat/cliq (the Cliq bot handler's call) and Cliq delivery of the answers that
come later, against the dashboard app and a local server speaking the Cliq webhook API."""

from __future__ import annotations

import pytest

from engine.chat import outbox
from engine.chat.cliq import CliqClient
from engine.chat.registry import ChannelRegistry
from engine.chat.service import check_followups
from tests.web.conftest import make_app, totp_secret  # noqa: F401  (fixtures)

SECRET = "cliq-shared-secret-value"


@pytest.fixture
def client(make_app):  # noqa: F811
    app = make_app(CLIQ_WEBHOOK_SECRET=SECRET, CLIQ_ALLOWED_USERS=("bob@example.com",))
    return app.test_client()


def call(client, text: str, *, email: str = "bob@example.com", secret: str | None = SECRET,
         message_id: str | None = None):
    headers = {"X-Cliq-Secret": secret} if secret is not None else {}
    body = {"message": text, "user": {"id": "55501", "email": email, "first_name": "Bob"},
            "chat": {"id": "CT_1", "type": "bot"}}
    if message_id:
        body["message_id"] = message_id
    return client.post("/api/chat/cliq", json=body, headers=headers)


def test_wrong_or_missing_secret_is_refused(client, pool) -> None:
    assert call(client, "/status", secret="nope").status_code == 401
    assert call(client, "/status", secret=None).status_code == 401
    assert call(client, "/pause", secret="x" * len(SECRET)).status_code == 401


def test_unset_secret_means_cliq_commands_are_off(make_app) -> None:  # noqa: F811
    app = make_app(CLIQ_WEBHOOK_SECRET="", CLIQ_ALLOWED_USERS=("bob@example.com",))
    assert call(app.test_client(), "/status", secret="").status_code == 503


def test_allowed_user_gets_the_answer(client) -> None:
    r = call(client, "/status")
    assert r.status_code == 200 and "Open positions: 0" in r.json["text"]
    assert "/pnl [today|week|month]" in call(client, "/help").json["text"]


def test_bad_body_is_a_400_naming_the_field(client) -> None:
    r = client.post("/api/chat/cliq", json={"user": {"id": "1"}},
                    headers={"X-Cliq-Secret": SECRET})
    assert r.status_code == 400 and "message" in r.json["error"]


def test_other_users_are_ignored(client, pool) -> None:
    r = call(client, "/pause", email="eve@example.com")
    assert r.status_code == 200 and r.json == {}
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM engine_commands").fetchone()["n"] == 0


def test_commands_are_queued_like_web_commands_and_answered_later_on_cliq(client, pool,
                                                                          cliq) -> None:
    r = call(client, "/pause broker maintenance", message_id="m-1")
    assert "command #" in r.json["text"]
    assert call(client, "/pause broker maintenance", message_id="m-1").json == {}  # resent
    with pool.connection() as conn:
        rows = conn.execute("SELECT id, kind, payload, requested_by FROM engine_commands"
                            ).fetchall()
        command_id = rows[0].pop("id")
        assert rows == [{"kind": "pause_entries", "payload": {"reason": "broker maintenance"},
                         "requested_by": "cliq:bob@example.com"}]
        conn.execute("UPDATE engine_commands SET status = 'done'")
    assert check_followups(pool) == 1
    reg = ChannelRegistry([CliqClient(cliq.webhook, timeout=2)])
    assert outbox.drain(pool, reg) == 1
    assert cliq.texts == [f"Command #{command_id} pause_entries done."]


def test_set_from_cliq_records_the_cliq_user(client, pool) -> None:
    assert "-> 5" in call(client, "/set RISK_MAX_LOSS_STREAK 5").json["text"]
    assert "refused" in call(client, "/set RISK_MAX_LOSS_STREAK 0").json["text"]
    with pool.connection() as conn:
        audit = conn.execute("SELECT new_value, updated_by FROM settings_audit").fetchall()
    assert audit == [{"new_value": "5", "updated_by": "cliq:bob@example.com"}]


def test_golive_live_from_cliq_needs_the_totp_code(client, pool, totp_secret) -> None:  # noqa: F811
    import pyotp

    assert "/confirm" in call(client, "/golive IC live").json["text"]
    wrong = f"{(int(pyotp.TOTP(totp_secret).now()) + 1) % 1_000_000:06d}"
    assert "cancelled" in call(client, f"/confirm {wrong}").json["text"]
    call(client, "/golive IC live")
    reply = call(client, f"/confirm {pyotp.TOTP(totp_secret).now()}").json["text"]
    assert "Setting IC to live" in reply
    with pool.connection() as conn:
        rows = conn.execute("SELECT kind, payload FROM engine_commands").fetchall()
    assert rows == [{"kind": "set_go_live_stage",
                     "payload": {"strategy": "IC", "stage": "live", "confirm": True}}]


def test_outbox_endpoint_shows_which_channel_delivered(make_app, pool) -> None:  # noqa: F811
    from tests.web.conftest import Api

    with pool.connection() as conn:
        conn.execute("INSERT INTO chat_outbox (channel, text, fallback, delivered_via, sent_at)"
                     " VALUES ('telegram', 'CLOSED DC-1', true, 'cliq', now()),"
                     " ('telegram', 'login code 123456', false, 'telegram', now())")
    api = Api(make_app())
    got = api.get("/api/chat/outbox").get_json()["messages"]
    assert [(m["text"], m["channel"], m["delivered_via"]) for m in got] == [
        (None, "telegram", "telegram"), ("CLOSED DC-1", "telegram", "cliq")]
    assert make_app().test_client().get("/api/chat/outbox").status_code == 401  # session
