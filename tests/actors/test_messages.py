"""Messages, codec, tap, clocks, directory routing and signal handlers."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pykka
import pytest

from engine.actors.base import ActorContext
from engine.actors.directory import Directory
from engine.actors.supervisor import install_signal_handlers
from engine.clock import ManualClock, RealClock, SimulatedClock
from engine.messages.base import Event, SeededIds, new, reply
from engine.messages.codec import to_jsonable
from engine.messages.commands import ClosePosition, OpenPosition, Ping, ScanTick
from engine.messages.events import EntryDenied, PositionClosed, RiskPaused
from engine.messages.legs import InstrumentKind, Leg, Side
from engine.messages.tap import MessageTap
from engine.timeutil import IST
from tests.actors.helpers import Journal, Worker, eventually, ist

pytestmark = pytest.mark.usefixtures("_stop_all")

T0 = ist(2025, 1, 6, 9, 15)


def leg(**kw: Any) -> Leg:
    return Leg(**{"security_id": "4711", "side": "BUY", "quantity": 75, **kw})


def test_message_new_stamps_id_and_clock_time() -> None:
    msg = new(RiskPaused, ManualClock(T0), reason="drawdown")
    assert msg.ts == T0
    assert len(msg.message_id) == 36
    assert msg.correlation_id is None
    with pytest.raises(AttributeError):
        msg.reason = "x"  # type: ignore[misc]


def test_message_naive_ts_raises() -> None:
    with pytest.raises(ValueError, match="naive"):
        RiskPaused(ts=datetime(2025, 1, 6, 9, 15), reason="x")


def test_message_new_refuses_explicit_ts() -> None:
    with pytest.raises(TypeError, match="stamps message_id and ts"):
        new(RiskPaused, ManualClock(T0), reason="x", ts=T0)


def test_message_reply_keeps_correlation() -> None:
    clock = ManualClock(T0)
    intent = new(OpenPosition, clock, strategy="s", tag="t", legs=(leg(),))
    denied = reply(EntryDenied, intent, clock, strategy="s", tag="t", reason="no slot")
    again = reply(RiskPaused, denied, clock, reason="x")
    assert denied.correlation_id == intent.message_id
    assert again.correlation_id == intent.message_id


def test_seeded_ids_repeat_per_seed_and_scope() -> None:
    a, b, c = SeededIds("run"), SeededIds("run"), SeededIds("other")
    seq_a = [a.next_id("scanner"), a.next_id("scanner"), a.next_id("risk")]
    seq_b = [b.next_id("scanner"), b.next_id("scanner"), b.next_id("risk")]
    assert seq_a == seq_b
    assert len(set(seq_a)) == 3
    assert c.next_id("scanner") != seq_a[0]


def test_leg_validation_errors_name_the_field() -> None:
    assert leg(side="SELL").side is Side.SELL
    with pytest.raises(ValueError, match="quantity must be positive"):
        leg(quantity=0)
    with pytest.raises(TypeError, match="strike must be a Decimal"):
        leg(strike=23500.0)
    with pytest.raises(ValueError, match="futures leg"):
        leg(kind=InstrumentKind.FUT, strike=Decimal("1"))
    with pytest.raises(ValueError, match="has no legs"):
        new(OpenPosition, ManualClock(T0), strategy="s", tag="t", legs=())
    with pytest.raises(ValueError, match="trade_id or a tag"):
        new(ClosePosition, ManualClock(T0))


def test_codec_to_jsonable_is_plain_and_exact() -> None:
    msg = new(PositionClosed, ManualClock(T0), trade_id=7, strategy="s", tag="t",
              realized_pnl=Decimal("1234.50"))
    data = to_jsonable(msg)
    assert data["realized_pnl"] == "1234.50"
    assert data["ts"] == "2025-01-06T09:15:00+05:30"
    assert to_jsonable(leg(expiry=date(2025, 1, 30)))["expiry"] == "2025-01-30"
    assert to_jsonable({"k": (1, frozenset({2}))}) == {"k": [1, [2]]}
    with pytest.raises(TypeError, match="cannot serialize"):
        to_jsonable(object())


def test_tap_canonical_order_ignores_interleaving() -> None:
    clock = ManualClock(T0)
    msgs = {role: new(ScanTick, clock, at=T0) for role in ("a", "b")}
    tap1, tap2 = MessageTap(), MessageTap()
    tap1.record("a", ["x"], msgs["a"])
    tap1.record("b", ["x"], msgs["b"])
    tap2.record("b", ["x"], msgs["b"])
    tap2.record("a", ["x"], msgs["a"])
    assert tap1.dumps() == tap2.dumps()
    assert "message_id" not in tap1.dumps()
    assert tap1.types() == ["ScanTick", "ScanTick"]


def test_manual_clock_moves_forward_only_and_wakes_sleepers() -> None:
    clock = ManualClock(T0)
    stop, woke = threading.Event(), threading.Event()
    target = T0 + timedelta(minutes=1)
    sleeper = threading.Thread(target=lambda: clock.sleep_until(target, stop) and woke.set())
    sleeper.start()
    clock.advance(timedelta(minutes=1))
    sleeper.join(5)
    assert woke.is_set()
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(T0)
    stop.set()
    assert clock.sleep_until(target + timedelta(days=1), stop) is False


def test_simulated_clock_scales_injected_monotonic() -> None:
    real = [1000.0]
    clock = SimulatedClock(T0, speed=60, monotonic=lambda: real[0])
    real[0] += 2.5
    assert clock.now() == T0 + timedelta(minutes=2, seconds=30)
    assert clock.now().tzinfo is not None
    with pytest.raises(ValueError, match="speed"):
        SimulatedClock(T0, speed=0)


def test_real_clock_is_aware_ist() -> None:
    now = RealClock().now()
    assert now.utcoffset() == IST.utcoffset(now)


def ctx_with(directory: Directory) -> ActorContext:
    return ActorContext(clock=ManualClock(T0), directory=directory)


def test_directory_dead_letters_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    directory = Directory()
    ref = Worker.start(supervisor_ref=None, name="w", ctx=ctx_with(directory), journal=Journal())
    directory.set("w", ref)
    ref.stop()
    msg = new(RiskPaused, ManualClock(T0), reason="x")
    with caplog.at_level(logging.WARNING, logger="engine.actors.directory"):
        assert directory.send("nobody", msg, sender="t") is False
        assert directory.send("w", msg, sender="t") is False
    assert directory.dead_letters == 2
    assert "no actor for role" in caplog.text
    assert "actor is dead" in caplog.text


def test_directory_publish_resolves_subscribers_at_send_time() -> None:
    directory, journal = Directory(), Journal()
    ctx = ctx_with(directory)
    directory.subscribe(Event, "all")
    directory.subscribe(RiskPaused, "risk-only")
    for role in ("all", "risk-only"):
        directory.set(role, Worker.start(supervisor_ref=None, name=role, ctx=ctx,
                                         journal=journal))
    paused = new(RiskPaused, ctx.clock, reason="x")
    closed = new(PositionClosed, ctx.clock, trade_id=1, strategy="s", tag="t")
    assert directory.publish(paused, sender="t") == 2
    assert directory.publish(closed, sender="t") == 1
    eventually(lambda: len(journal.of_type(Event)) == 3, what="three deliveries")
    assert directory.subscribers(PositionClosed) == ("all",)


def test_supervised_actor_answers_ping_and_counts_messages() -> None:
    directory = Directory()
    ref = Worker.start(supervisor_ref=None, name="w", ctx=ctx_with(directory), journal=Journal())
    ref.tell(new(RiskPaused, ManualClock(T0), reason="x"))
    assert ref.ask(Ping(), timeout=5) == "pong"
    assert ref.proxy().processed.get(timeout=5) == 1


def test_install_signal_handlers_sigterm_calls_stop_and_sigusr1_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped = threading.Event()
    previous = install_signal_handlers(stopped.set)
    try:
        with caplog.at_level(logging.CRITICAL, logger="pykka"):
            os.kill(os.getpid(), signal.SIGUSR1)
            eventually(lambda: "Current state of" in caplog.text, what="thread tracebacks")
        os.kill(os.getpid(), signal.SIGTERM)
        eventually(stopped.is_set, what="stop callback")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert pykka.ActorRegistry.get_all() == []


@pytest.mark.unexpected_messages_ok
def test_actor_drops_and_reports_a_message_it_does_not_handle(caplog) -> None:
    from engine.actors.base import UNEXPECTED_MESSAGE, SupervisedActor
    from engine.messages.commands import EndOfDayTick

    class Deaf(SupervisedActor):
        def handle(self, message):
            return super().handle(message)

    ctx = ActorContext(clock=ManualClock(datetime(2025, 1, 6, 9, 15, tzinfo=IST)),
                       directory=Directory())
    ref = Deaf.start(supervisor_ref=None, name="deaf", ctx=ctx)
    try:
        tick = new(EndOfDayTick, ctx.clock, at=ctx.clock.now(), trading_day=date(2025, 1, 6))
        with caplog.at_level("WARNING", logger="engine.actors.base"):
            assert ref.ask(tick, timeout=5) is None  # dropped, the actor lives on
            assert ref.is_alive()
    finally:
        ref.stop()
    assert any(UNEXPECTED_MESSAGE in r.getMessage() and "EndOfDayTick" in r.getMessage()
               for r in caplog.records)
