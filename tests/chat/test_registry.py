"""Channel registry: primary then fallback, which channel delivered, de-duplication, the
notifier's per-event levels — against local Telegram and Cliq servers."""

from __future__ import annotations

import socket
from decimal import Decimal

import pykka
import pytest

from engine.actors.base import ActorContext
from engine.actors.directory import Directory
from engine.actors.notifier import DrainOutbox, NotifierActor
from engine.chat import outbox
from engine.chat.cliq import CliqClient
from engine.chat.registry import ChannelRegistry
from engine.chat.telegram import RateLimiter, TelegramClient
from engine.clock import RealClock
from engine.messages.base import RandomIds
from engine.messages.events import PositionClosed, PositionOpened
from engine.settings import Settings
from engine.timeutil import now_ist
from tests.chat.conftest import BOT_TOKEN


def _no_sleep(_s: float) -> None:
    pass


def tg(server) -> TelegramClient:
    return TelegramClient(server.url, BOT_TOKEN, "111", timeout=2, sleep=_no_sleep,
                          limiter=RateLimiter(per_chat=0, global_rate=0))


def cq(server) -> CliqClient:
    return CliqClient(server.webhook, timeout=2, sleep=_no_sleep)


def _rows(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT * FROM chat_outbox ORDER BY id").fetchall()


def test_primary_delivers_when_up(telegram, cliq) -> None:
    reg = ChannelRegistry([tg(telegram), cq(cliq)], primary="telegram")
    assert reg.deliver("hello") == "telegram"
    assert [m["text"] for m in telegram.sent] == ["hello"] and cliq.posts == []


def test_telegram_down_cliq_delivers_and_the_row_says_so(pool, telegram, cliq) -> None:
    telegram.fail_status = 502  # 5xx after the client's own retries
    reg = ChannelRegistry([tg(telegram), cq(cliq)], primary="telegram")
    with pool.connection() as conn, conn.transaction():
        outbox.queue(conn, "CLOSED DC-1 P&L ₹120", dedup_key="event:1")
    assert outbox.drain(pool, reg) == 1
    assert cliq.texts == ["CLOSED DC-1 P&L ₹120"]
    assert cliq.posts[0][0] == "/api/v2/channelsbyname/trading/message"
    row = _rows(pool)[0]
    assert row["delivered_via"] == "cliq" and row["sent_at"] is not None
    assert row["text"] == "CLOSED DC-1 P&L ₹120"  # a notification keeps its text


def test_telegram_unreachable_cliq_delivers(pool, cliq) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = TelegramClient(f"http://127.0.0.1:{port}", BOT_TOKEN, "111", timeout=1,
                          sleep=_no_sleep, limiter=RateLimiter(per_chat=0, global_rate=0))
    reg = ChannelRegistry([dead, cq(cliq)], primary="telegram")
    assert reg.deliver("x") == "cliq"


def test_primary_setting_picks_cliq_first(pool, telegram, cliq) -> None:
    settings = Settings(pool)
    settings.set("CHAT_PRIMARY", "cliq", updated_by="test")
    reg = ChannelRegistry([tg(telegram), cq(cliq)],
                          primary=lambda: settings.get("CHAT_PRIMARY"))
    assert reg.deliver("first") == "cliq" and telegram.sent == []


def test_both_down_the_row_is_retried_then_given_up(pool, telegram, cliq) -> None:
    telegram.fail_status, cliq.fail_status = 503, 500
    reg = ChannelRegistry([tg(telegram), cq(cliq)])
    with pool.connection() as conn, conn.transaction():
        outbox.queue(conn, "alert", dedup_key="event:2")
    for _ in range(outbox.MAX_ATTEMPTS - 1):
        assert outbox.drain(pool, reg) == 0
        assert _rows(pool)[0]["error"] is None  # still pending: tried again next drain
    telegram.fail_status = None
    assert outbox.drain(pool, reg) == 1
    row = _rows(pool)[0]
    assert row["delivered_via"] == "telegram" and row["attempts"] == outbox.MAX_ATTEMPTS
    telegram.fail_status = 503
    with pool.connection() as conn, conn.transaction():
        outbox.queue(conn, "lost", dedup_key="event:3")
    for _ in range(outbox.MAX_ATTEMPTS):
        outbox.drain(pool, reg)
    last = _rows(pool)[1]
    assert last["sent_at"] is None and "telegram: " in last["error"] and "cliq: " in last["error"]
    assert BOT_TOKEN not in last["error"] and cliq.ZAPIKEY not in last["error"]


def test_same_dedup_key_is_sent_once(pool, telegram) -> None:
    reg = ChannelRegistry([tg(telegram)])
    with pool.connection() as conn, conn.transaction():
        assert outbox.queue(conn, "once", dedup_key="event:9") is not None
        assert outbox.queue(conn, "once", dedup_key="event:9") is None
    outbox.drain(pool, reg)
    outbox.drain(pool, reg)
    assert [m["text"] for m in telegram.sent] == ["once"]


# ---------------------------------------------------------------- the notifier
@pytest.fixture
def notifier(pool):
    started = []

    def start(channels):
        ctx = ActorContext(clock=RealClock(), directory=Directory(), ids=RandomIds(),
                           services={"pool": pool, "settings": Settings(pool, ttl=0),
                                     "chat_channels": channels})
        ref = NotifierActor.start(supervisor_ref=None, name="notifier", ctx=ctx)
        started.append(ref)
        return ref

    yield start
    for ref in started:
        ref.stop()
    pykka.ActorRegistry.stop_all()


def _event(cls, **kw):
    return cls(ts=now_ist(), message_id=RandomIds().next_id("t"), **kw)


def test_notifier_levels_on_silent_off_and_fallback(pool, telegram, cliq, notifier) -> None:
    Settings(pool).set("NOTIFY_OPENS", "silent", updated_by="test")
    Settings(pool).set("NOTIFY_CLOSES", "off", updated_by="test")
    ref = notifier([tg(telegram), cq(cliq)])
    opened = _event(PositionOpened, trade_id=1, strategy="DC", tag="DC-1", legs=(),
                    entry_premium=Decimal("12.5"))
    ref.tell(opened)
    ref.tell(opened)  # the same event delivered twice is told once
    ref.tell(_event(PositionClosed, trade_id=1, strategy="DC", tag="DC-1", reason="target",
                    realized_pnl=Decimal("300")))
    ref.ask(DrainOutbox())
    assert [(m["text"], m["disable_notification"]) for m in telegram.sent] == [
        ("OPENED DC-1 [DC, paper] net entry 12.5", True)]
    telegram.fail_status = 502
    Settings(pool).set("NOTIFY_CLOSES", "on", updated_by="test")
    ref.tell(_event(PositionClosed, trade_id=1, strategy="DC", tag="DC-1", reason="target",
                    realized_pnl=Decimal("300")))
    ref.ask(DrainOutbox())  # the actor handled the event (and its delivery) before this
    assert cliq.texts == ["CLOSED DC-1 [DC] P&L ₹300 — target"]
    assert [r["delivered_via"] for r in _rows(pool)] == ["telegram", "cliq"]


def test_daily_summary_after_the_close(pool, telegram, notifier) -> None:
    from datetime import date

    from engine.messages.commands import EndOfDayTick

    day = date(2026, 12, 1)
    with pool.connection() as conn:
        conn.execute("INSERT INTO closed_trades (trade_date, tag, strategy, mode, opened_at,"
                     " closed_at, gross_pnl, realized_pnl, exit_reason) VALUES"
                     " (%s, 'DC-7', 'DC', 'paper', now(), now(), 520, 480.50, 'target')",
                     (day,))
        conn.execute("INSERT INTO chat_outbox (channel, text, created_at, sent_at) VALUES"
                     " ('telegram', 'old', now() - interval '40 days', now() - interval"
                     " '40 days'), ('telegram', 'old, unsent', now() - interval '40 days',"
                     " NULL)")
    ref = notifier([tg(telegram)])
    ref.ask(EndOfDayTick(ts=now_ist(), message_id="eod-1", at=now_ist(), trading_day=day))
    ref.ask(EndOfDayTick(ts=now_ist(), message_id="eod-2", at=now_ist(), trading_day=day))
    assert [m["text"] for m in telegram.sent] == [
        "DAILY SUMMARY 2026-12-01: 1 trade(s) closed, 1 won, net P&amp;L ₹480.50; "
        "0 position(s) open"]
    texts = [r["text"] for r in _rows(pool)]
    # the 40-day-old rows (one delivered, one given up as expired) are pruned after the close
    assert texts == ["DAILY SUMMARY 2026-12-01: 1 trade(s) closed, 1 won, net P&L ₹480.50; "
                     "0 position(s) open"]
