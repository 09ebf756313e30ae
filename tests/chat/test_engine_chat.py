"""A running engine with Telegram enabled: a chat command is polled, queued as an engine
command, run by the same Dispatcher as the dashboard's, answered, and its outcome told."""

from __future__ import annotations

import pykka
import pytest

from tests.chat.conftest import BOT_TOKEN
from tests.conftest import eventually
from tests.engine.harness import Harness


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def test_pause_from_telegram_reaches_the_risk_actor_and_is_answered(db_url, telegram,
                                                                   cliq) -> None:
    env = {"TELEGRAM_ENABLED": "true", "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
           "TELEGRAM_CHAT_ID": "111", "TELEGRAM_API_BASE": telegram.url,
           "TELEGRAM_POLL_TIMEOUT": "0", "CLIQ_ENABLED": "true",
           "CLIQ_WEBHOOK_URL": cliq.webhook}
    h = Harness(db_url, env=env)
    h.engine.start(with_bus=True)
    try:
        telegram.add_message("/pause chat test")
        row = eventually(lambda: h.query(
            "SELECT * FROM engine_commands WHERE status = 'done'"), timeout=15)[0]
        assert row["kind"] == "pause_entries" and row["requested_by"] == "telegram:alice"
        assert row["result"] == {"sent": "PauseEntries"}
        eventually(lambda: h.query("SELECT 1 FROM risk_envelope_state WHERE pause_reason"
                                   " LIKE '%%chat test%%'"), timeout=10)
        done = f"Command #{row['id']} pause_entries done."
        texts = eventually(lambda: (t := [m["text"] for m in telegram.sent
                                          if m["chat_id"] == "111"]) and done in t and t,
                           timeout=15)
        assert texts[0] == f"Pausing new entries (command #{row['id']})."
        assert any(t.startswith("RISK PAUSED new entries") for t in texts)  # the notification
        telegram.fail_status = 502  # Telegram becomes unreachable: Cliq takes over
        h.engine.services["chat_service"].poller.stop()
        with h.pool.connection() as conn:
            from engine.chat import outbox

            outbox.queue(conn, "fallback check", dedup_key="t:fallback")
        eventually(lambda: "fallback check" in cliq.texts, timeout=15)
    finally:
        h.stop()
