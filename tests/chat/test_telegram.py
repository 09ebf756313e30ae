"""Telegram Bot API client and poller against a local server speaking the Bot API."""

from __future__ import annotations

import logging

import pytest

from engine.chat import outbox
from engine.chat.commands import Sender
from engine.chat.control import AllowList, ChatControl
from engine.chat.service import telegram_handler
from engine.chat.telegram import (
    MAX_MESSAGE,
    RateLimiter,
    TelegramClient,
    TelegramPoller,
    escaped_parts,
    load_offset,
    split_message,
)
from engine.notify.channels import ChatError
from engine.settings import Settings
from tests.chat.conftest import BOT_TOKEN


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client(server, **kw) -> TelegramClient:
    kw.setdefault("limiter", RateLimiter(per_chat=0, global_rate=0))
    return TelegramClient(server.url, BOT_TOKEN, "111", timeout=3, **kw)


def test_5000_character_message_is_split_in_two_parts_each_within_the_limit(telegram) -> None:
    text = "\n".join(f"line {i:04d} " + "x" * 40 for i in range(100))  # ~5000 characters
    assert 4900 < len(text) < 5200
    assert client(telegram).send(text) == 2
    parts = [m["text"] for m in telegram.sent]
    assert len(parts) == 2 and all(len(p) <= MAX_MESSAGE for p in parts)
    assert "\n".join(parts) == text  # cut at a line break, nothing lost
    assert all(m["chat_id"] == "111" and m["parse_mode"] == "HTML" for m in telegram.sent)


def test_split_without_line_breaks_is_hard_and_lossless() -> None:
    text = "y" * 5000
    parts = split_message(text)
    assert [len(p) for p in parts] == [4096, 904] and "".join(parts) == text


def test_html_is_escaped_and_escaping_never_overflows_a_part(telegram) -> None:
    client(telegram).send("P&L <b>₹-5</b> & more")
    assert telegram.sent[0]["text"] == "P&amp;L &lt;b&gt;₹-5&lt;/b&gt; &amp; more"
    parts = escaped_parts("&" * 5000)  # each & becomes 5 characters
    assert all(len(p) <= MAX_MESSAGE for p in parts)
    assert "".join(parts) == "&amp;" * 5000


def test_429_retry_after_is_honoured_then_delivered(telegram) -> None:
    telegram.rate_limits, telegram.retry_after = 2, 3
    sleeps = Sleeps()
    client(telegram, sleep=sleeps).send("hello")
    assert sleeps.calls == [3.0, 3.0]
    assert [m["text"] for m in telegram.sent] == ["hello"]
    assert telegram.paths.count(f"/bot{BOT_TOKEN}/sendMessage") == 3


def test_persistent_429_gives_up_with_an_error_naming_no_token(telegram) -> None:
    telegram.rate_limits = 100
    with pytest.raises(ChatError) as err:
        client(telegram, sleep=Sleeps()).send("hello")
    assert "429" in str(err.value) and BOT_TOKEN not in str(err.value)


def test_5xx_is_retried_then_reported_without_the_token(telegram) -> None:
    telegram.fail_status = 502
    sleeps = Sleeps()
    with pytest.raises(ChatError) as err:
        client(telegram, sleep=sleeps).send("x")
    assert "HTTP 502" in str(err.value) and BOT_TOKEN not in str(err.value)
    assert len(telegram.paths) == 3 and len(sleeps.calls) == 2


def test_rate_limiter_spaces_one_chat_and_the_whole_bot() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(per_chat=1.0, global_rate=10, clock=lambda: now[0], sleep=sleep)
    limiter.wait("a")
    limiter.wait("a")          # same chat: a second later
    limiter.wait("b")          # other chat: only the global gap (0.1 s)
    assert slept == pytest.approx([1.0, 0.1])


# ---------------------------------------------------------------- polling
def _poller(db_url, pool, server, control, **kw) -> TelegramPoller:
    return TelegramPoller(db_url, pool, client(server), telegram_handler(control),
                          poll_timeout=0, **kw)


@pytest.fixture
def control(pool):
    return ChatControl(Settings(pool), AllowList.of(["111"], ()))


def _replies(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT chat_id, text, dedup_key FROM chat_outbox ORDER BY id"
                            ).fetchall()


def test_offsets_survive_a_restart_no_replay_no_loss(db_url, pool, telegram, control) -> None:
    first = [telegram.add_message("/pause lunch"), telegram.add_message("/trades 1")]
    p1 = _poller(db_url, pool, telegram, control)
    assert p1.acquire()
    assert p1.poll_once() == 2
    p1.stop()  # "restart": the lock goes, a new poller object starts from the database
    third = telegram.add_message("/resume")
    p2 = _poller(db_url, pool, telegram, control)
    assert p2.acquire()
    assert p2.poll_once() == 1
    assert p2.poll_once() == 0
    p2.stop()
    assert telegram.get_calls[1]["offset"] == first[1] + 1  # asked from where p1 stopped
    with pool.connection() as conn:
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM engine_commands ORDER BY id")]
        assert load_offset(conn, p2.client) == third + 1
    assert kinds == ["pause_entries", "resume_entries"]  # each command once, in order
    keys = [r["dedup_key"] for r in _replies(pool)]
    assert keys == [f"telegram-reply:{u}" for u in [*first, third]]


def test_a_crash_while_handling_loses_nothing(db_url, pool, telegram, control) -> None:
    uid = telegram.add_message("/pause crash test")
    real = telegram_handler(control)

    def crashing(conn, update):
        real(conn, update)
        raise RuntimeError("engine died mid-update")

    p1 = TelegramPoller(db_url, pool, client(telegram), crashing, poll_timeout=0)
    assert p1.acquire()
    with pytest.raises(RuntimeError):
        p1.poll_once()
    p1.stop()
    with pool.connection() as conn:  # nothing of the update was committed
        assert conn.execute("SELECT count(*) AS n FROM engine_commands").fetchone()["n"] == 0
    p2 = _poller(db_url, pool, telegram, control)
    assert p2.acquire() and p2.poll_once() == 1
    p2.stop()
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM engine_commands").fetchone()["n"] == 1
        assert load_offset(conn, p2.client) == uid + 1


def test_two_engines_one_poller_per_token(db_url, pool, telegram, control, caplog) -> None:
    p1, p2 = (_poller(db_url, pool, telegram, control) for _ in range(2))
    assert p1.acquire()
    with caplog.at_level(logging.WARNING):
        assert not p2.acquire()
    assert "another engine already polls this bot" in caplog.text
    assert BOT_TOKEN not in caplog.text and "TEST-bot" not in caplog.text
    with pytest.raises(RuntimeError):
        p2.poll_once()
    p1.stop()
    assert p2.acquire()  # the first engine stopped: the second takes over
    p2.stop()


def test_replies_are_queued_to_the_asking_chat_and_delivered_once(db_url, pool, telegram,
                                                                 control) -> None:
    telegram.add_message("/help")
    p = _poller(db_url, pool, telegram, control)
    assert p.acquire() and p.poll_once() == 1
    p.stop()
    from engine.chat.registry import ChannelRegistry

    registry = ChannelRegistry([client(telegram)])
    assert outbox.drain(pool, registry) == 1
    assert outbox.drain(pool, registry) == 0
    assert len(telegram.sent) == 1 and telegram.sent[0]["chat_id"] == "111"
    assert "/golive STRATEGY paper|shadow|live" in telegram.sent[0]["text"]


def test_a_disallowed_chat_is_ignored_and_logged_once(db_url, pool, telegram, control,
                                                      caplog) -> None:
    telegram.add_message("/pause hijack", chat_id=999, user_id=999, username="mallory")
    telegram.add_message("/status", chat_id=999, user_id=999, username="mallory")
    telegram.add_message("/status", chat_id=-100555, user_id=111, chat_type="group")
    p = _poller(db_url, pool, telegram, control)
    with caplog.at_level(logging.WARNING):
        assert p.acquire() and p.poll_once() == 3
    p.stop()
    assert _replies(pool) == []
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM engine_commands").fetchone()["n"] == 0
    refusals = [r for r in caplog.records if "not on the allow-list" in r.getMessage()]
    assert len(refusals) == 2  # mallory once (two messages), the group once
    assert "a group" in refusals[1].getMessage()


def test_sender_of_update_names_user_and_chat() -> None:
    from engine.chat.service import telegram_sender

    got = telegram_sender({"update_id": 1, "message": {"text": "/x", "chat": {"id": -5,
                           "type": "group"}, "from": {"id": 7, "username": "bob"}}})
    assert got == (Sender("telegram", "7", "-5", "bob", True), "/x")
    assert telegram_sender({"update_id": 2, "message": {"sticker": {}}}) is None


def test_a_lost_lock_session_stops_polling_until_re_acquired(db_url, pool, telegram,
                                                             control) -> None:
    p = _poller(db_url, pool, telegram, control)
    assert p.acquire()
    pid = p._lock_conn.info.backend_pid
    with pool.connection() as conn:  # e.g. a database restart ends the lock's session
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert not p._lock_alive() and not p.holds_lock
    other = _poller(db_url, pool, telegram, control)
    assert other.acquire()  # the lock was free: another engine could take over
    assert not p.acquire()
    other.stop()
    p.stop()
