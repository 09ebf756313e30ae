"""/rerun_ai_market through the chat: TOTP-confirmed, refused while the LLM port is off."""

from __future__ import annotations

import time
from datetime import datetime

import pyotp
import pytest

from engine.bus.dispatch import task_problem
from engine.chat.commands import Sender
from engine.chat.control import AllowList, ChatControl
from engine.settings import Settings
from engine.store.tx import transaction
from engine.timeutil import IST

ALICE = Sender("telegram", "111", "111", "alice")


@pytest.fixture
def secret() -> str:
    return pyotp.random_base32()


@pytest.fixture
def control(pool, secret, tmp_path) -> ChatControl:
    return ChatControl(Settings(pool, ttl=0), AllowList.of(["111"], ()), totp_secret=secret,
                       log_path=tmp_path / "engine.log",
                       now=lambda: datetime(2025, 2, 3, 11, 0, tzinfo=IST))


def say(pool, control, text: str) -> str | None:
    with transaction(pool) as conn:
        return control.handle(conn, ALICE, text)


def queued(pool) -> list[tuple[str, dict]]:
    with pool.connection() as conn:
        return [(r["kind"], r["payload"]) for r in conn.execute(
            "SELECT kind, payload FROM engine_commands ORDER BY id").fetchall()]


def test_rerun_refused_while_the_llm_port_is_off(pool, control, monkeypatch) -> None:
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    monkeypatch.delenv("LLM_MODEL", raising=False)
    assert "AI flows are not configured" in say(pool, control, "/rerun_ai_market")
    assert "LLM_BASE_URL" in task_problem("ai_market")
    assert queued(pool) == []


def test_rerun_without_then_with_the_totp_code(pool, control, secret, monkeypatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLM_MODEL", "fake-1")
    assert task_problem("ai_market") is None
    reply = say(pool, control, "/rerun_ai_market")
    assert "/confirm" in reply and queued(pool) == []  # no code: nothing queued
    wrong = f"{(int(pyotp.TOTP(secret).at(time.time())) + 1) % 1_000_000:06d}"
    assert "cancelled" in say(pool, control, f"/confirm {wrong}")
    assert queued(pool) == []
    say(pool, control, "/rerun_ai_market")
    assert "Re-running the AI market analysis" in say(
        pool, control, f"/confirm {pyotp.TOTP(secret).at(time.time())}")
    assert queued(pool) == [("rerun_task", {"task": "ai_market"})]
