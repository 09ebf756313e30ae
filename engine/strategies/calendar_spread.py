"""DC: the NIFTY near/far futures calendar spread, traded on a rolling z-score.

spread = far futures LTP − near futures LTP. Over the last ``DC_WINDOW`` samples (the
calendar_spread_history of the current contract pair, cleared on roll), z = (spread − mean)
/ stdev. When z > +DC_ZSCORE_ENTRY the spread is rich: SELL far, BUY near (SHORT_SPREAD).
When z < −DC_ZSCORE_ENTRY it is cheap: BUY far, SELL near (LONG_SPREAD). An open spread
exits when |z| < DC_ZSCORE_EXIT (reversion) — profit target, stop and time exits are the
monitor's. Entries are priced at the touch: buys at the ask, sells at the bid.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.messages.legs import InstrumentKind, Leg, Side
from engine.strategies.base import Decision, EntryIntent, ExitIntent, StrategyInput

NAME = "DC"
PARAM_KEYS = ("DC_ENABLED", "DC_ZSCORE_ENTRY", "DC_ZSCORE_EXIT", "DC_WINDOW", "DC_MIN_SAMPLES",
              "DC_LOTS", "DC_FAMILY_SLOTS")


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
    if not params["DC_ENABLED"]:
        return Decision(strategy=NAME, eligible=False, reasons=("disabled (DC_ENABLED=false)",))
    if inp.near is None or inp.far is None:
        return Decision(strategy=NAME, eligible=False, reasons=("near/far futures quotes missing",))
    spread = inp.far.ltp - inp.near.ltp
    window = int(params["DC_WINDOW"])
    history = inp.spread_history[-window:]
    metrics: dict[str, Any] = {"spread": str(spread), "samples": len(history)}
    if len(history) < int(params["DC_MIN_SAMPLES"]):
        return Decision(strategy=NAME, eligible=False, metrics=metrics,
                        reasons=(f"warming up: {len(history)}/{params['DC_MIN_SAMPLES']} samples",))
    z, mean, stdev = zscore(history, spread, window)
    metrics.update(z=round(z, 4), mean=round(mean, 4), stdev=round(stdev, 4))
    mine = [t for t in inp.open_trades if t.strategy == NAME]
    exits = tuple(ExitIntent(strategy=NAME, tag=t.tag, reason=f"z reverted to {z:.2f}")
                  for t in mine if abs(z) < float(params["DC_ZSCORE_EXIT"]))
    reasons: list[str] = []
    entries: tuple[EntryIntent, ...] = ()
    threshold = float(params["DC_ZSCORE_ENTRY"])
    if inp.entries_paused_reason:
        reasons.append(f"risk paused: {inp.entries_paused_reason}")
    if stdev == 0.0:
        reasons.append("spread has not moved in the window (stdev 0)")
    elif abs(z) <= threshold:
        reasons.append(f"|z|={abs(z):.2f} within entry threshold {threshold}")
    elif len(mine) - len(exits) >= int(params["DC_FAMILY_SLOTS"]):
        reasons.append(f"dc_family slots full ({len(mine)}/{params['DC_FAMILY_SLOTS']})")
    elif not inp.entries_paused_reason:
        entries = (_entry(inp, z, spread, int(params["DC_LOTS"])),)
    return Decision(strategy=NAME, eligible=True, entries=entries, exits=exits,
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
    tag = f"DC-{inp.now:%Y%m%d-%H%M%S}"
    return EntryIntent(strategy=NAME, tag=tag, legs=legs, direction=direction,
                       reason=f"z={z:.2f} beyond entry threshold",
                       context={"z": round(z, 4), "spread": str(spread)})
