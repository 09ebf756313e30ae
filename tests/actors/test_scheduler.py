"""Scheduler: the plan, lock-step determinism and settling, realtime on a simulated clock."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pykka
import pytest

from engine.actors.base import ActorContext, SupervisedActor
from engine.actors.directory import Directory
from engine.actors.scheduler import ScheduleConfig, Scheduler
from engine.actors.supervisor import ChildSpec, Supervisor
from engine.clock import ManualClock, SimulatedClock
from engine.messages.base import SeededIds
from engine.messages.commands import (
    EndOfDayTick,
    MonitorTick,
    OpenPosition,
    Ping,
    PruneTick,
    ScanTick,
    TokenCheckTick,
)
from engine.messages.events import EntryDenied, MarkedToMarket
from engine.messages.legs import Leg, OptionType, Side
from engine.messages.tap import MessageTap
from tests.actors.helpers import Journal, WeekdayCalendar, Worker, eventually, ist

pytestmark = pytest.mark.usefixtures("_stop_all")

CAL = WeekdayCalendar()
MONDAY = date(2025, 1, 6)


def test_scheduler_plan_one_trading_day_has_expected_ticks() -> None:
    sched = Scheduler(clock=ManualClock(ist(2025, 1, 6)), calendar=CAL, directory=Directory())
    ticks = list(sched.plan(ist(2025, 1, 6), ist(2025, 1, 6, 23, 59, 59)))

    scans = [t.at for t in ticks if t.kind is ScanTick]
    assert len(scans) == 375  # 09:15 .. 15:29 every minute
    assert (scans[0], scans[-1]) == (ist(2025, 1, 6, 9, 15), ist(2025, 1, 6, 15, 29))
    assert len([t for t in ticks if t.kind is MonitorTick]) == 375 * 4
    assert len([t for t in ticks if t.kind is TokenCheckTick]) == 288  # all day, every 5 min
    eod = [t for t in ticks if t.kind is EndOfDayTick]
    assert {t.role for t in eod} == {"executor", "risk"}  # only the actors that handle it
    assert {(t.at, t.fields["trading_day"]) for t in eod} == {(ist(2025, 1, 6, 15, 35), MONDAY)}
    prunes = {(t.role, t.fields["table"], t.fields["keep_days"]) for t in ticks
              if t.kind is PruneTick}
    assert prunes == {("scanner", "strategy_battle_log", 60), ("scanner", "iv_snapshots", 180)}
    assert [t.at for t in ticks] == sorted(t.at for t in ticks)


def test_scheduler_plan_weekend_has_no_market_ticks() -> None:
    sched = Scheduler(clock=ManualClock(ist(2025, 1, 11)), calendar=CAL, directory=Directory())
    kinds = {t.kind for t in sched.plan(ist(2025, 1, 11), ist(2025, 1, 12, 23, 59))}
    assert kinds == {TokenCheckTick, PruneTick}


class Scanner(SupervisedActor):
    def __init__(self, *, journal: Journal, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.journal = journal

    def handle(self, message: Any) -> Any:
        match message:
            case ScanTick(at=at):
                leg = Leg(security_id="4711", side=Side.SELL, quantity=75,
                          option_type=OptionType.CE, expiry=date(2025, 1, 30),
                          strike=Decimal("23500"))
                self.send("risk", self.new(OpenPosition, strategy="s1", tag=f"s1-{at:%d%H%M}",
                                           legs=(leg,), reply_to=self.name))
            case EntryDenied() | EndOfDayTick() | PruneTick():
                self.journal.add(message)
            case _:
                return super().handle(message)
        return None


class Risk(SupervisedActor):
    def handle(self, message: Any) -> Any:
        match message:
            case OpenPosition(reply_to=reply_to):
                denied = self.reply(EntryDenied, message, strategy=message.strategy,
                                    tag=message.tag, reason="envelope paused")
                if reply_to:
                    self.send(reply_to, denied)
            case _:
                return super().handle(message)
        return None


class Monitor(SupervisedActor):
    def handle(self, message: Any) -> Any:
        match message:
            case MonitorTick():
                self.publish(self.new(MarkedToMarket, trade_id=1, mtm=Decimal("-125.50")))
            case _:
                return super().handle(message)
        return None


def lockstep_run(seed: str) -> tuple[list[str], str, int, int]:
    clock = ManualClock(ist(2025, 1, 10, 15, 20))  # a Friday
    tap = MessageTap(exclude=("ts",))  # message ids are deterministic (SeededIds)
    directory = Directory(tap=tap)
    ctx = ActorContext(clock=clock, directory=directory, ids=SeededIds(seed))
    denied, sink = Journal(), Journal()
    specs = [
        ChildSpec.for_actor("token", Worker, ctx, actor_kwargs={"journal": sink}),
        ChildSpec.for_actor("risk", Risk, ctx),
        ChildSpec.for_actor("executor", Worker, ctx, actor_kwargs={"journal": sink}),
        ChildSpec.for_actor("scanner", Scanner, ctx, actor_kwargs={"journal": denied}),
        ChildSpec.for_actor("monitor", Monitor, ctx),
        ChildSpec.for_actor("dashboard", Worker, ctx, actor_kwargs={"journal": sink}),
    ]
    directory.subscribe(MarkedToMarket, "dashboard")
    sup = Supervisor.start(specs, directory=directory, clock=clock, liveness_interval_s=None,
                           exit_process=lambda code: None)
    sup.ask(Ping(), timeout=10)
    config = ScheduleConfig(monitor_every_s=60, token_check_every_s=3600,
                            eod_roles=("executor", "scanner"))
    sched = Scheduler(clock=clock, calendar=CAL, directory=directory, config=config,
                      ids=SeededIds(seed))
    sent = sched.run_lockstep(ist(2025, 1, 13, 9, 20))  # ... to Monday morning
    scans = sum(1 for p in sent if p.kind is ScanTick)
    # settled: every scan's two-hop reply is already in, with no waiting here
    assert len(denied.of_type(EntryDenied)) == scans
    assert len(sink.of_type(MarkedToMarket)) == sum(1 for p in sent if p.kind is MonitorTick)
    assert clock.now() == ist(2025, 1, 13, 9, 20)
    sup.stop(timeout=10)
    return [p.describe() for p in sent], tap.dumps(), scans, directory.dead_letters


def test_scheduler_lockstep_twice_is_byte_identical() -> None:
    plan1, log1, scans1, dead1 = lockstep_run("replay-1")
    plan2, log2, scans2, dead2 = lockstep_run("replay-1")

    assert plan1 == plan2
    assert log1 == log2
    assert scans1 == scans2 == 10 + 6  # Fri 15:20-15:29, Mon 09:15-09:20; no weekend scans
    assert dead1 == dead2 == 0
    assert not any(" ScanTick " in p and ("-11T" in p or "-12T" in p) for p in plan1)
    for needle in ('"type":"OpenPosition"', '"type":"EntryDenied"', '"type":"MarkedToMarket"',
                   '"type":"EndOfDayTick"', '"type":"PruneTick"'):
        assert needle in log1


def test_scheduler_lockstep_other_seed_changes_only_ids() -> None:
    _, log1, _, _ = lockstep_run("seed-a")
    _, log2, _, _ = lockstep_run("seed-b")
    assert log1 != log2
    assert len(log1.splitlines()) == len(log2.splitlines())


def test_scheduler_lockstep_needs_manual_clock() -> None:
    sched = Scheduler(clock=SimulatedClock(ist(2025, 1, 6, 9, 15)), calendar=CAL,
                      directory=Directory())
    with pytest.raises(TypeError, match="ManualClock"):
        sched.run_lockstep(ist(2025, 1, 6, 9, 20))


def start_recorders(roles: tuple[str, ...]) -> tuple[Directory, Journal]:
    directory, journal = Directory(), Journal()
    ctx = ActorContext(clock=ManualClock(ist(2025, 1, 6)), directory=directory)
    for role in roles:
        directory.set(role, Worker.start(supervisor_ref=None, name=role, ctx=ctx,
                                         journal=journal))
    return directory, journal


def realtime_config() -> ScheduleConfig:
    return ScheduleConfig(scan_every_s=60, monitor_every_s=0, token_check_every_s=0,
                          prunes=(), eod_delay_s=60, eod_roles=("scanner",))


def test_scheduler_realtime_simulated_clock_scans_stop_at_close() -> None:
    directory, journal = start_recorders(("scanner",))
    clock = SimulatedClock(ist(2025, 1, 6, 15, 26), speed=1200)  # 1 sim-minute = 50 ms
    sched = Scheduler(clock=clock, calendar=CAL, directory=directory, config=realtime_config())
    sched.start()
    try:
        eod = eventually(lambda: journal.of_type(EndOfDayTick), timeout=15, what="EOD tick")
    finally:
        sched.stop()

    assert eod[0].trading_day == MONDAY
    assert eod[0].at == ist(2025, 1, 6, 15, 31)
    scans = [t.at for t in journal.of_type(ScanTick)]
    assert scans, "no scan ticks at all"
    assert all(CAL.is_market_open(at) for at in scans)
    assert set(scans) <= {ist(2025, 1, 6, 15, m) for m in range(26, 30)}
    assert all(t.ts >= t.at for t in journal.of_type(ScanTick))


def test_scheduler_realtime_simulated_clock_first_scan_at_open() -> None:
    directory, journal = start_recorders(("scanner",))
    clock = SimulatedClock(ist(2025, 1, 6, 9, 13, 30), speed=1200)
    sched = Scheduler(clock=clock, calendar=CAL, directory=directory, config=realtime_config())
    sched.start()
    try:
        eventually(lambda: any(t.at >= ist(2025, 1, 6, 9, 17) for t in journal.of_type(ScanTick)),
                   timeout=15, what="scan at 09:17")
    finally:
        sched.stop()
    scans = [t.at for t in journal.of_type(ScanTick)]
    assert min(scans) >= ist(2025, 1, 6, 9, 15)
    assert all(isinstance(at, datetime) and at.second == 0 for at in scans)
    assert clock.now() - ist(2025, 1, 6, 9, 13, 30) > timedelta(minutes=3)


def test_scheduler_settle_reports_dead_actor_without_hanging() -> None:
    directory, _ = start_recorders(("a", "b"))
    directory.require("a").stop()
    sched = Scheduler(clock=ManualClock(ist(2025, 1, 6)), calendar=CAL, directory=directory)
    assert sched.settle() == 2
    assert isinstance(directory.require("a"), pykka.ActorRef)


def test_scheduler_plan_with_nse_calendar_skips_holiday() -> None:
    calendar_mod = pytest.importorskip("engine.market.calendar")
    nse = calendar_mod.NseCalendar()
    holiday = date(2025, 2, 26)  # Mahashivratri, an NSE F&O holiday (a Wednesday)
    assert not nse.is_trading_day(holiday)
    sched = Scheduler(clock=ManualClock(ist(2025, 2, 25)), calendar=nse, directory=Directory())
    ticks = list(sched.plan(ist(2025, 2, 25), ist(2025, 2, 27, 23, 59)))
    scan_days = {t.at.date() for t in ticks if t.kind is ScanTick}
    eod_days = {t.fields["trading_day"] for t in ticks if t.kind is EndOfDayTick}
    assert scan_days == eod_days == {date(2025, 2, 25), date(2025, 2, 27)}
