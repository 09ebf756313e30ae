"""CAL_ARB: the NIFTY near/far futures calendar spread, traded on a rolling z-score.

spread = far futures LTP − near futures LTP. Over the last ``CAL_ARB_WINDOW`` samples (the
calendar_spread_history of the current contract pair, cleared on roll), z = (spread − mean)
/ stdev. When z > +CAL_ARB_ZSCORE_ENTRY the spread is rich: SELL far, BUY near
(SHORT_SPREAD). When z < −CAL_ARB_ZSCORE_ENTRY it is cheap: BUY far, SELL near
(LONG_SPREAD). An open spread exits when |z| < CAL_ARB_ZSCORE_EXIT (reversion); its
:func:`exit_rule` adds the profit target, stop, time and expiry-day exits (fractions of the
entry spread's rupee value). Entries are priced at the touch: buys at the ask, sells at the
bid. Off by default: its z-score needs intraday samples, so the end-of-day backtest refuses
it; after charges it rarely pays on NIFTY (README).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.messages.legs import InstrumentKind, Leg, Side
from engine.settings.registry import Knob
from engine.strategies import exits
from engine.strategies.base import Decision, EntryIntent, ExitIntent, StrategyInput

NAME = "CAL_ARB"
D = Decimal
KNOBS = (
    Knob("CAL_ARB_ENABLED", bool, False,
         "Scan the NIFTY near/far futures calendar spread (off by default)."),
    Knob("CAL_ARB_ZSCORE_ENTRY", D, D("2.0"),
         "Enter when |z| of the near/far futures spread exceeds this.", D("0.5"), D("10")),
    Knob("CAL_ARB_ZSCORE_EXIT", D, D("0.5"), "Exit when |z| falls back below this.", D("0"),
         D("5")),
    Knob("CAL_ARB_WINDOW", int, 100, "Samples in the rolling z-score window.", 10, 1000),
    Knob("CAL_ARB_MIN_SAMPLES", int, 30, "Samples needed before the z-score is trusted.", 5,
         1000),
    Knob("CAL_ARB_LOTS", int, 1, "Lots per futures leg.", 1, 50),
    Knob("CAL_ARB_PROFIT_TARGET_PCT", D, D("0.30"),
         "Close when profit reaches this fraction of the entry spread's rupee value.", D("0.01"),
         D("5")),
    Knob("CAL_ARB_STOP_LOSS_PCT", D, D("0.50"),
         "Close when loss reaches this fraction of the entry spread's rupee value.", D("0.01"),
         D("5")),
    Knob("CAL_ARB_MAX_HOLD_MINUTES", int, 240, "Time exit for a futures calendar spread.", 1,
         7 * 24 * 60),
    Knob("CAL_ARB_SLOTS", int, 1, "Open CAL_ARB positions allowed at once.", 0, 10),
)
PARAM_KEYS = tuple(k.key for k in KNOBS)
GRID_SPACE = {"CAL_ARB_ZSCORE_ENTRY": (D("1.5"), D("2.0"), D("2.5"), D("3.0")),
              "CAL_ARB_ZSCORE_EXIT": (D("0.25"), D("0.5"), D("1.0")),
              "CAL_ARB_WINDOW": (50, 100, 200)}


def zscore(history: tuple[Decimal, ...], current: Decimal, window: int) -> tuple[float, float, float]:
    """(z, mean, stdev) of ``current`` against the last ``window`` samples of ``history``."""
    sample = [float(x) for x in history[-window:]]
    mean = statistics.fmean(sample)
    stdev = statistics.pstdev(sample)
    if stdev == 0.0:
        return 0.0, mean, 0.0
    return (float(current) - mean) / stdev, mean, stdev


def decide(inp: StrategyInput, params: Mapping[str, Any]) -> Decision:
    """Entry and exit intents for the calendar spread, or the reasons there are none."""
    if not params["CAL_ARB_ENABLED"]:
        return Decision(strategy=NAME, eligible=False, reasons=("disabled (CAL_ARB_ENABLED=false)",))
    if inp.near is None or inp.far is None:
        return Decision(strategy=NAME, eligible=False, reasons=("near/far futures quotes missing",))
    spread = inp.far.ltp - inp.near.ltp
    window = int(params["CAL_ARB_WINDOW"])
    history = inp.spread_history[-window:]
    metrics: dict[str, Any] = {"spread": str(spread), "samples": len(history)}
    if len(history) < int(params["CAL_ARB_MIN_SAMPLES"]):
        return Decision(strategy=NAME, eligible=False, metrics=metrics,
                        reasons=(f"warming up: {len(history)}/{params['CAL_ARB_MIN_SAMPLES']} samples",))
    z, mean, stdev = zscore(history, spread, window)
    metrics.update(z=round(z, 4), mean=round(mean, 4), stdev=round(stdev, 4))
    mine = [t for t in inp.open_trades if t.strategy == NAME]
    closing = tuple(ExitIntent(strategy=NAME, tag=t.tag, reason=f"z reverted to {z:.2f}")
                    for t in mine if abs(z) < float(params["CAL_ARB_ZSCORE_EXIT"]))
    reasons: list[str] = []
    entries: tuple[EntryIntent, ...] = ()
    threshold = float(params["CAL_ARB_ZSCORE_ENTRY"])
    if inp.entries_paused_reason:
        reasons.append(f"risk paused: {inp.entries_paused_reason}")
    if stdev == 0.0:
        reasons.append("spread has not moved in the window (stdev 0)")
    elif abs(z) <= threshold:
        reasons.append(f"|z|={abs(z):.2f} within entry threshold {threshold}")
    elif len(mine) - len(closing) >= int(params["CAL_ARB_SLOTS"]):
        reasons.append(f"CAL_ARB slots full ({len(mine)}/{params['CAL_ARB_SLOTS']})")
    elif not inp.entries_paused_reason:
        entries = (_entry(inp, z, spread, int(params["CAL_ARB_LOTS"])),)
    return Decision(strategy=NAME, eligible=True, entries=entries, exits=closing,
                    reasons=tuple(reasons), metrics=metrics)


def _entry(inp: StrategyInput, z: float, spread: Decimal, lots: int) -> EntryIntent:
    near, far = inp.near, inp.far
    assert near is not None and far is not None
    short_spread = z > 0
    direction = "SHORT_SPREAD" if short_spread else "LONG_SPREAD"
    qty_near, qty_far = lots * near.lot_size, lots * far.lot_size
    far_side, near_side = (Side.SELL, Side.BUY) if short_spread else (Side.BUY, Side.SELL)
    legs = (
        Leg(security_id=far.security_id, side=far_side, quantity=qty_far, kind=InstrumentKind.FUT,
            expiry=far.expiry, price=far.bid if far_side is Side.SELL else far.ask),
        Leg(security_id=near.security_id, side=near_side, quantity=qty_near,
            kind=InstrumentKind.FUT, expiry=near.expiry,
            price=near.bid if near_side is Side.SELL else near.ask),
    )
    tag = f"{NAME}-{inp.now:%Y%m%d-%H%M%S}"
    return EntryIntent(strategy=NAME, tag=tag, legs=legs, direction=direction,
                       reason=f"z={z:.2f} beyond entry threshold",
                       context={"z": round(z, 4), "spread": str(spread)})


def exit_rule(trade: Any, market: Any, now: Any, params: Mapping[str, Any]) -> str | None:
    """Expiry, stop, target and time exits of an open spread (``engine.strategies.exits``),
    marked at the exit-side touch of ``market`` (a MarketView: its futures quotes)."""
    try:
        mtm = exits.mark_to_market(trade, market.quote)
    except LookupError:
        return None  # no quote, no mark: nothing fires on a stale mark
    return exits.exit_reason(trade, mtm, now, params)
