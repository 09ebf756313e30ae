"""The definitions every options strategy shares (engine.strategies.market_view)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pytest

from engine.market.calendar import NseCalendar
from engine.market.snapshot import ChainSide, MarketSnapshot, OptionChain
from engine.strategies.market_view import (
    StructureRefused,
    build_market_view,
    common_quoted_strike,
    dte,
    exit_mark,
    trading_time_iv,
    trading_years,
    units_for,
)
from engine.timeutil import IST

CAL = NseCalendar()


def _side(base: int, strikes, bid, ask, iv=None) -> ChainSide:
    n = len(strikes)
    return ChainSide(security_id=np.arange(base, base + n), ltp=np.array(bid, float),
                     bid=np.array(bid, float), ask=np.array(ask, float),
                     iv=np.full(n, np.nan) if iv is None else np.array(iv, float),
                     oi=np.full(n, 1000), volume=np.full(n, 500), prev_close=np.array(bid, float))


def _chain(expiry: date, strikes, base: int, ce_bid, pe_bid) -> OptionChain:
    return OptionChain(expiry=expiry, strikes=np.array(strikes, float),
                       ce=_side(base, strikes, ce_bid, [b + 1 for b in ce_bid]),
                       pe=_side(base + 1000, strikes, pe_bid, [b + 1 for b in pe_bid]))


def test_dte_counts_sessions_with_expiry_day_zero() -> None:
    # Thu 6 Feb 2025 expiry: Mon 3 Feb -> Tue, Wed, Thu = 3; on the expiry day 0
    assert dte(CAL, date(2025, 2, 3), date(2025, 2, 6)) == 3
    assert dte(CAL, date(2025, 2, 5), date(2025, 2, 6)) == 1
    assert dte(CAL, date(2025, 2, 6), date(2025, 2, 6)) == 0
    # a holiday does not count: 26 Feb 2025 (Mahashivratri) closed, expiry Thu 27 Feb
    assert dte(CAL, date(2025, 2, 25), date(2025, 2, 27)) == 1


def test_trading_time_ignores_the_weekend_calendar_time_does_not() -> None:
    fri = datetime(2025, 2, 7, 15, 30, tzinfo=IST)     # after the close on Friday
    t_mon = trading_years(CAL, fri, date(2025, 2, 10))  # one whole session (Monday)
    assert t_mon == pytest.approx(1 / 252)
    mid = datetime(2025, 2, 10, 12, 22, 30, tzinfo=IST)  # half of Monday's session left
    assert trading_years(CAL, mid, date(2025, 2, 10)) == pytest.approx(0.5 / 252)
    # the same total variance per trading year: a weekend-spanning expiry is not "cheap"
    assert trading_time_iv(0.12, 3 / 365, 1 / 252) == pytest.approx(0.12 * (3 / 365 * 252) ** 0.5)
    assert trading_time_iv(None, 1.0, 1.0) is None


def _snapshot(now: datetime, chains, spot=23000.0) -> MarketSnapshot:
    return MarketSnapshot(time=now, spot=spot, near_future=None, far_future=None,
                          chains=tuple(chains))


def test_near_is_the_next_expiry_on_an_expiry_day_and_monthly_is_after_near() -> None:
    now = datetime(2025, 2, 6, 10, 0, tzinfo=IST)   # expiry day of the 6 Feb weekly
    strikes = [22900, 23000, 23100]
    snap = _snapshot(now, [_chain(e, strikes, 100 * i + 1, [150, 100, 60], [60, 100, 150])
                           for i, e in enumerate([date(2025, 2, 6), date(2025, 2, 13),
                                                  date(2025, 2, 27)])])
    view = build_market_view(snap, CAL)
    assert view.is_expiry_day
    assert view.near.expiry == date(2025, 2, 13)
    assert view.next_weekly().expiry == date(2025, 2, 27)
    assert view.monthly_after_near().expiry == date(2025, 2, 27)
    o = view.near.option(Decimal("23000"), "CE")
    assert view.option_by_id(o.security_id) is o
    assert exit_mark(o, "BUY") == o.bid and exit_mark(o, "SELL") == o.ask
    assert o.delta is not None and 0.3 < o.delta < 0.7   # IV inverted from the quotes


def test_strikes_nearest_ties_outward_and_quoted_in_every_expiry() -> None:
    now = datetime(2025, 2, 3, 10, 0, tzinfo=IST)
    strikes = [22900, 23000, 23100, 23200]
    near = _chain(date(2025, 2, 6), strikes, 1, [200, 130, 80, 40], [40, 80, 130, 200])
    far_pe_bid = [60, 100, 150, 0]          # 23200 PE not quoted in the far expiry
    far = OptionChain(expiry=date(2025, 2, 13), strikes=np.array(strikes, float),
                      ce=_side(101, strikes, [260, 190, 130, 90], [261, 191, 131, 91]),
                      pe=_side(1101, strikes, far_pe_bid, [b + 1 if b else 0 for b in far_pe_bid]))
    view = build_market_view(_snapshot(now, [near, far], spot=23000.0), CAL)
    n, f = view.expiries
    # target 23050 is equidistant from 23000 and 23100: outward from spot 23000 is 23100
    assert n.nearest_strike(23050, spot=23000) == Decimal("23100.00")
    assert n.nearest_strike(22950, spot=23000) == Decimal("22900.00")
    # 23200 PE is not quoted in the far chain: the common strike falls back to 23100
    assert common_quoted_strike([n, f], 23190, 23000, "PE") == Decimal("23100.00")


def test_units_refuse_mismatched_lots() -> None:
    # on 22 Dec 2025 the 23 Dec weekly trades in lots of 65, the 30 Dec monthly still in 75
    now = datetime(2025, 12, 22, 10, 0, tzinfo=IST)
    strikes = [26000, 26100]
    snap = _snapshot(now, [_chain(date(2025, 12, 23), strikes, 1, [100, 60], [60, 100]),
                           _chain(date(2025, 12, 30), strikes, 101, [300, 250], [250, 300]),
                           _chain(date(2026, 1, 6), strikes, 201, [400, 350], [350, 400])],
                     spot=26050.0)
    view = build_market_view(snap, CAL)
    assert [e.lot_size for e in view.expiries] == [65, 75, 65]
    weekly, monthly, next_weekly = (e.option(Decimal("26000.00"), "CE") for e in view.expiries)
    with pytest.raises(StructureRefused, match="lot sizes differ"):
        units_for(1, [weekly, monthly])
    assert units_for(2, [weekly, next_weekly]) == 130
    with pytest.raises(StructureRefused, match="lots must be positive"):
        units_for(0, [weekly])


# ---------------------------------------------------------------- sides built on first use
def _sim_snapshot():
    from engine.market.simulator import SimulatedMarket

    at = datetime(2025, 2, 3, 10, 0, tzinfo=IST)
    return SimulatedMarket(7, at, CAL).snapshot_at(at)


def _sim_view():
    return build_market_view(_sim_snapshot(), CAL)


def test_a_side_makes_only_the_options_read_until_it_is_needed_whole() -> None:
    import pickle

    from engine.strategies.market_view import LazyOptions

    view = _sim_view()
    assert len(view.expiries) >= 2
    sides = [side for e in view.expiries for side in (e.calls, e.puts)]
    assert all(isinstance(s, LazyOptions) and s._options is None and not s._some for s in sides)
    near = view.expiries[0]
    put_id = next(iter(near.puts.ids()))  # a security id known without making any option
    o = view.option_by_id(put_id)
    assert o is not None and o.option_type == "PE" and o.expiry == near.expiry
    assert list(near.puts._some) == [o.strike] and near.puts._options is None  # that one only
    assert all(s._options is None and not s._some for s in sides if s is not near.puts)
    assert near.puts.get(o.strike) is o and near.puts.get(Decimal("1")) is None
    # the whole side, made later, holds the same object and equals a side made at once
    whole = near.puts.options()
    assert whole[o.strike] is o and near.puts.get(o.strike) is o and o.strike in near.puts
    eager = build_market_view(_sim_snapshot(), CAL)
    for mine, theirs in zip(view.expiries, eager.expiries, strict=True):
        for a, b in ((mine.calls, theirs.calls), (mine.puts, theirs.puts)):
            one_by_one = {k: a.get(k) for k in mine.strikes}
            assert one_by_one == b.options() == dict(a) and len(a) == len(mine.strikes)
    assert {x.security_id for x in near.calls.values()} == set(near.calls.ids())
    copy = pickle.loads(pickle.dumps(near.calls))  # noqa: S301 - our own bytes
    assert type(copy) is dict and copy == dict(near.calls)


def test_a_side_read_by_many_threads_at_once_makes_each_option_once() -> None:
    import threading

    from engine.strategies.market_view import LazyOptions, SideSource

    made: list[object] = []

    class Counting(SideSource):
        def option(self, strike):
            made.append(strike)
            return super().option(strike)

        def options(self):
            made.append("all")
            return super().options()

    near = _sim_view().expiries[0]
    real = near.calls._source
    source = Counting(real.expiry, real.kind, real.side, real.ivs, real.strike_values,
                      real.strikes, real.forward, real.t, real.lot)
    side = LazyOptions(source)
    strike = near.strikes[len(near.strikes) // 2]
    barrier = threading.Barrier(8)
    got = []

    def read(whole: bool) -> None:
        barrier.wait()
        got.append(side.options()[strike] if whole else side.get(strike))

    threads = [threading.Thread(target=read, args=(i % 2 == 0,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made.count("all") == 1 and made.count(strike) <= 1
    assert len(got) == 8 and all(o is got[0] for o in got) and got[0].strike == strike
