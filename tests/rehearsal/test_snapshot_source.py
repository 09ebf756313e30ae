"""DhanMarketData against the real Dhan simulator: snapshot contents and request spacing."""

from __future__ import annotations

import math
from datetime import datetime, time
from decimal import Decimal

import pytest

from engine.broker.dhan.instruments import InstrumentMaster
from engine.broker.dhan.snapshot_source import DhanMarketData, MarketDataUnavailable
from engine.clock import ManualClock
from engine.dhan_sim import SimServer
from engine.execution.paper import NoQuote
from engine.market.calendar import NseCalendar
from engine.timeutil import IST
from tests.rehearsal.conftest import sim_client


class FakeMono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _market(sim: SimServer, mono: FakeMono | None = None, **kw) -> DhanMarketData:
    today = sim.sim.market.today()
    master = InstrumentMaster.download(sim.instruments_url, as_of=today)
    clock = ManualClock(datetime.combine(today, time(10, 0), tzinfo=IST))
    return DhanMarketData(sim_client(sim), master, clock, NseCalendar(),
                          monotonic=mono or FakeMono(), **kw)


def test_snapshot_from_simulator_has_spot_futures_and_chains(sim: SimServer) -> None:
    md = _market(sim)
    snap = md.snapshot()
    market = sim.sim.market

    assert snap.spot == pytest.approx(market.spot())
    for fut, sid in ((snap.near_future, "35000"), (snap.far_future, "35001")):
        q = market.quote(sid)
        assert fut is not None and fut.security_id == int(sid)
        assert (fut.bid, fut.ask, fut.ltp) == (q.bid, q.ask, q.ltp)
    expiries = market.expiries()
    assert snap.expiries == tuple(expiries[:2])
    assert snap.listed_expiries == tuple(expiries)
    chain = snap.chain(expiries[0])
    assert chain.strikes.size == 41 and snap.strike_step == 50.0
    assert snap.lot_size == NseCalendar().lot_size(market.today())
    assert float(chain.ce.iv[20]) == pytest.approx(0.12)  # Dhan sends percent
    strike = float(chain.strikes[20])
    entry = market.option_chain(expiries[0])[strike]["PE"]
    q = md.quote(str(entry.security_id))
    assert (q.bid, q.ask) == (Decimal(str(entry.bid)).quantize(Decimal("0.01")),
                              Decimal(str(entry.ask)).quantize(Decimal("0.01")))
    assert not math.isnan(float(chain.pe.ltp[20]))


def test_snapshot_caches_option_chains_for_dhan_spacing(sim: SimServer) -> None:
    mono = FakeMono()
    md = _market(sim, mono)
    md.snapshot()
    mono.t += 2.0
    md.snapshot()
    md.quote("35000")

    chains = sim.sim.requests("POST", "/v2/optionchain")
    assert len(chains) == 2, "one request per expiry; the second snapshot reuses the cache"
    assert len(sim.sim.requests("POST", "/v2/marketfeed/quote")) == 2  # 1 s quote cache
    assert len(sim.sim.requests("POST", "/v2/optionchain/expirylist")) == 1
    assert all(r["status"] == 200 for r in sim.sim.request_log)


def test_quote_unknown_security_raises_noquote(sim: SimServer) -> None:
    md = _market(sim)
    with pytest.raises(NoQuote, match="no NSE_FNO quote for security 999999"):
        md.quote("999999")


def test_snapshot_without_data_plan_names_the_problem(sim: SimServer) -> None:
    sim.sim.account.data_plan = False
    with pytest.raises(MarketDataUnavailable, match=r"expiry list unavailable.*806"):
        _market(sim).snapshot()


def test_stale_instrument_master_refused_with_clear_reason(sim: SimServer) -> None:
    from datetime import timedelta

    today = sim.sim.market.today()
    stale = InstrumentMaster.download(sim.instruments_url, as_of=today - timedelta(days=1))
    clock = ManualClock(datetime.combine(today, time(10, 0), tzinfo=IST))
    md = DhanMarketData(sim_client(sim), stale, clock, NseCalendar(), monotonic=FakeMono())
    with pytest.raises(MarketDataUnavailable, match="refusing to trade: instrument master from"):
        md.snapshot()


def test_scanner_alerts_once_and_logs_cycles_when_market_data_is_down(sim: SimServer, pool,
                                                                      caplog) -> None:
    """A stale master reaches the operator as one alert; each cycle says why it did nothing."""
    import logging
    from datetime import timedelta

    import pykka

    from engine.actors.base import ActorContext
    from engine.actors.directory import Directory
    from engine.actors.notifier import NotifierActor
    from engine.actors.scanner import ScannerActor
    from engine.messages.commands import Probe, ScanTick
    from engine.messages.events import AlertRaised
    from engine.settings import Settings

    today = sim.sim.market.today()
    stale = InstrumentMaster.download(sim.instruments_url, as_of=today - timedelta(days=1))
    clock = ManualClock(datetime.combine(today, time(10, 0), tzinfo=IST))
    md = DhanMarketData(sim_client(sim), stale, clock, NseCalendar(), monotonic=FakeMono())
    directory = Directory()
    directory.subscribe(AlertRaised, "notifier")
    ctx = ActorContext(clock=clock, directory=directory,
                       services={"pool": pool, "market": md, "settings": Settings(pool)})
    caplog.set_level(logging.INFO, logger="engine.chat")
    directory.set("notifier", NotifierActor.start(supervisor_ref=None, name="notifier", ctx=ctx))
    scanner = ScannerActor.start(supervisor_ref=None, name="scanner", ctx=ctx)
    directory.set("scanner", scanner)
    try:
        for minute in range(3):
            at = clock.now() + timedelta(minutes=minute)
            scanner.tell(ScanTick(ts=at, at=at))
        scanner.ask(Probe(), timeout=10)
        directory.get("notifier").ask(Probe(), timeout=10)
    finally:
        pykka.ActorRegistry.stop_all(timeout=10)
    with pool.connection() as conn:
        rows = conn.execute("SELECT rejections FROM strategy_battle_log ORDER BY id").fetchall()
    assert len(rows) == 3
    assert all("refusing to trade" in r["rejections"]["market"] for r in rows)
    alerts = [r.getMessage() for r in caplog.records if "ALERT [market data]" in r.getMessage()]
    assert len(alerts) == 1, alerts
