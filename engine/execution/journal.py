"""The trade journal row written at close (pure: no I/O).

Two moments feed it:

* **At entry** the scanner captures, with :func:`entry_context`, the market the decision saw
  (:func:`capture_market`: spot, the near expiry's ATM IV and 25-delta skew, and for every
  security involved its bid / ask / mid / IV), the selection (the chosen strategy's reason
  and metrics — for MDC the chosen variant and every variant's score), the strategies not
  selected in that cycle with their reasons, and — for MDC — each rejected variant's legs
  priced at the entry touch. The executor keeps it in the trade's context
  (``context["journal_entry"]``), so it is in ``open_trades.payload`` and survives restarts.
* **At close** the executor captures the exit market the same way and calls
  :func:`build_journal_row` with the trade and its exit fills; the row has every
  ``trade_journal`` column the data can fill.

Definitions (the columns):

* ``entry_iv`` / ``exit_iv`` — ATM IV of the *near* expiry (DTE ≥ 1, the strategies' near),
  percent; each leg's own IV is in ``selection_context.entry_market.quotes`` and
  ``selection_context.exit_market.quotes``.
* ``skew`` — at entry: IV(put, Black-76 forward delta −0.25) − IV(call, delta +0.25) of the
  near expiry, vol points, interpolated linearly in delta among out-of-the-money strikes
  (the iv_snapshots ``skew`` definition); the exit skew is in ``selection_context``.
* ``mfe`` / ``mae`` — best / worst mark-to-market (net of entry charges, as the monitor
  marks) over the trade's life, including the close itself.
* ``slippage`` — per leg, the fill against the quoted mid and against the touch (a buy at the
  ask, a sell at the bid) at entry and at exit, per unit in rupees and in ticks
  (₹0.05) and in rupees for the leg's units; positive = paid (worse than the reference).
  ``total`` sums the rupee amounts. A reference that was not quoted is ``null`` (a settled
  leg has no exit quote).
* ``rejected_strategy_delta`` — MDC only: for each rejected variant (built, with its legs),
  what it would have made over the same holding period for the same units: opened at the
  entry touch (the quotes the decision saw), closed at the exit-side marks of the market at
  close (a long at the bid, a short at the ask — the way the chosen trade was marked); a leg
  with no live quote at close is priced with Black-76 at its own recorded IV at close (else
  its expiry's ATM IV) on its expiry's parity forward (``method: surface_model``); a leg
  expired by then at its intrinsic value against the exit spot. Net of the modelled
  charges of both sides (``engine.execution.charges``). ``delta_vs_chosen`` = its net P&L
  − the chosen trade's realized net P&L. For other strategies the column is
  ``{"method": ..., "variants": []}`` (they score no alternative variants).
* ``event_risk_label`` — ``none`` when the entry saw no market events, else
  ``IMPACT kind: title`` of each, ``; ``-joined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from engine.execution.charges import order_charges
from engine.execution.trades import Trade
from engine.market.pricing import black76_price
from engine.timeutil import IST

__all__ = [
    "SKEW_DEFINITION",
    "TICK",
    "build_journal_row",
    "capture_market",
    "entry_context",
    "event_label",
    "leg_slippage",
    "rejected_variant_delta",
    "skew_25d",
    "variant_legs",
]

TICK = Decimal("0.05")
CENT = Decimal("0.01")
SKEW_DEFINITION = ("iv(put, forward delta -0.25) - iv(call, forward delta +0.25), near expiry "
                   "(DTE >= 1), vol points")
RATE = 0.065


def _d(x: Any) -> Decimal | None:
    if x is None or x == "":
        return None
    try:
        v = Decimal(str(x))
    except ArithmeticError:
        return None
    return v if v.is_finite() else None


def _s(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def _pct(iv: float | None) -> Decimal | None:
    """An IV fraction as percent with 4 places (NUMERIC(8, 4))."""
    if iv is None or not math.isfinite(iv):
        return None
    return Decimal(repr(round(100 * float(iv), 4))).quantize(Decimal("0.0001"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum
        return value.value
    return str(value)


# ---------------------------------------------------------------------------- market
def _mid(option: Any) -> Decimal | None:
    """The exact mid of a two-sided quote (half a paisa kept: the slippage reference)."""
    return (option.bid + option.ask) / 2 if option.quoted else None


def skew_25d(expiry_view: Any) -> float | None:
    """25-delta put IV − 25-delta call IV of ``expiry_view`` (fractions; see the module doc)."""
    if expiry_view is None:
        return None
    fwd = float(expiry_view.forward)

    def at(side: Mapping[Decimal, Any], target: float, otm) -> float | None:
        pts = sorted((o.delta, o.iv) for k, o in side.items()
                     if otm(float(k)) and o.delta is not None and o.iv is not None
                     and math.isfinite(o.delta) and math.isfinite(o.iv))
        if len(pts) < 2:
            return None
        d = np.array([p[0] for p in pts])
        v = np.array([p[1] for p in pts])
        if not d[0] <= target <= d[-1]:
            return None
        return float(np.interp(target, d, v))

    put = at(expiry_view.puts, -0.25, lambda k: k < fwd)
    call = at(expiry_view.calls, 0.25, lambda k: k > fwd)
    return None if put is None or call is None else put - call


def capture_market(view: Any, security_ids: Iterable[str] = ()) -> dict[str, Any]:
    """The market a journal needs from ``view`` (a MarketView), as JSON-able data.

    ``{"at", "spot", "near_expiry", "atm_iv" (percent), "skew" (vol points),
    "skew_definition", "expiries": {iso: {"forward", "t", "atm_iv", "dte"}},
    "quotes": {security_id: {"expiry", "strike", "option_type", "bid", "ask", "mid",
    "iv"}}}``; a security not in the view is left out of ``quotes``.
    """
    if view is None:
        return {}
    near = view.near
    quotes: dict[str, Any] = {}
    for sid in dict.fromkeys(str(s) for s in security_ids):
        o = view.option_by_id(sid)
        if o is None:
            fut = view.futures.get(sid)
            if fut is not None:
                mid = (fut.bid + fut.ask) / 2
                quotes[sid] = {"bid": str(fut.bid), "ask": str(fut.ask), "mid": str(mid),
                               "iv": None}
            continue
        quotes[sid] = {"expiry": o.expiry.isoformat(), "strike": str(o.strike),
                       "option_type": o.option_type, "bid": _s(o.bid), "ask": _s(o.ask),
                       "mid": _s(_mid(o)), "iv": _s(_pct(o.iv))}
    skew = skew_25d(near)
    return {
        "at": view.now.isoformat(), "spot": str(view.spot),
        "near_expiry": near.expiry.isoformat() if near is not None else None,
        "atm_iv": _s(_pct(near.atm_iv if near is not None else None)),
        "skew": _s(_pct(skew)), "skew_definition": SKEW_DEFINITION,
        "expiries": {e.expiry.isoformat(): {"forward": round(float(e.forward), 4),
                                            "t": float(e.t), "dte": e.dte,
                                            "atm_iv": _s(_pct(e.atm_iv))}
                     for e in view.expiries},
        "quotes": quotes}


def variant_legs(view: Any, score: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The four legs of an MDC variant score row (BUY far CE/PE, SELL near CE/PE) with the
    entry touch each opens at and its mid, from ``view``; None when the variant was not
    built or a leg is not in the view."""
    if view is None or not score.get("near") or not score.get("far"):
        return None
    try:
        near, far = date.fromisoformat(score["near"]), date.fromisoformat(score["far"])
        units = int(score["units"])
        plan = ((far, Decimal(score["far_call_strike"]), "CE", "BUY"),
                (far, Decimal(score["far_put_strike"]), "PE", "BUY"),
                (near, Decimal(score["call_strike"]), "CE", "SELL"),
                (near, Decimal(score["put_strike"]), "PE", "SELL"))
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return None
    out = []
    for expiry, strike, kind, side in plan:
        e = view.expiry(expiry)
        o = e.option(strike, kind) if e is not None else None
        if o is None or not o.quoted:
            return None
        out.append({"security_id": o.security_id, "side": side, "units": units,
                    "expiry": expiry.isoformat(), "strike": str(strike), "option_type": kind,
                    "entry_price": str(o.ask if side == "BUY" else o.bid),
                    "entry_mid": str(_mid(o))})
    return out


def event_label(events: Iterable[Any]) -> str:
    """``none``, or ``IMPACT kind: title`` of each event, ``; ``-joined."""
    parts = []
    for ev in events or ():
        get = ev.get if isinstance(ev, Mapping) else (lambda k, _e=ev: getattr(_e, k, None))
        parts.append(f"{get('impact') or '?'} {get('kind') or 'event'}: {get('title') or ''}".strip())
    return "; ".join(parts) if parts else "none"


def _event_json(ev: Any) -> dict[str, Any]:
    if isinstance(ev, Mapping):
        return _jsonable(dict(ev))
    return {k: _jsonable(getattr(ev, k, None)) for k in ("date", "time", "kind", "title", "impact")}


def entry_context(view: Any, *, strategy: str, legs: Sequence[Any], reason: str,
                  context: Mapping[str, Any], decisions: Mapping[str, Any],
                  events: Iterable[Any] = ()) -> dict[str, Any]:
    """What the journal needs from the cycle an entry was decided in (JSON-able).

    Args:
        view: the cycle's MarketView (None: no option chains).
        strategy: the entering strategy; legs: its order legs (``Leg``s).
        reason / context: the entry's reason and context (MDC: ``variant``, ``score``,
            ``rejected_variants``).
        decisions: strategy name -> ``Decision`` of the cycle (the others are the rejected
            strategies).
        events: the market events the cycle saw.
    """
    rejected_variants = []
    sids = [leg.security_id for leg in legs]
    for score in context.get("rejected_variants") or ():
        row = {"code": score.get("code"), "score": _jsonable(score),
               "legs": variant_legs(view, score)}
        rejected_variants.append(row)
        sids.extend(x["security_id"] for x in row["legs"] or ())
    events = tuple(events or ())
    own = decisions.get(strategy)
    selection: dict[str, Any] = {"strategy": strategy, "reason": reason,
                                 "metrics": _jsonable(dict(getattr(own, "metrics", {}) or {}))}
    if strategy == "MDC":  # every variant's score once: the chosen one first
        scores = [_jsonable(context.get("score") or {})] + [r["score"] for r in rejected_variants]
        selection["metrics"].pop("variants", None)
        selection.update(variant=context.get("variant"), scores=scores)
    others = [{"strategy": name, "eligible": bool(getattr(d, "eligible", False)),
               "reasons": list(getattr(d, "reasons", ()) or ()),
               "metrics": _jsonable(dict(getattr(d, "metrics", {}) or {}))}
              for name, d in decisions.items() if name != strategy]
    return {"market": capture_market(view, sids), "selection": selection,
            "rejected_strategies": others, "rejected_variants": rejected_variants,
            "events": [_event_json(e) for e in events], "event_risk_label": event_label(events)}


# ---------------------------------------------------------------------------- slippage
def _vs(fill: Decimal, ref: Decimal | None, side: str, units: int) -> dict[str, Any]:
    if ref is None:
        return {"per_unit": None, "ticks": None, "rupees": None}
    paid = (fill - ref) if side == "BUY" else (ref - fill)
    return {"per_unit": str(paid), "ticks": str((paid / TICK).quantize(CENT)),
            "rupees": str((paid * units).quantize(CENT))}


def leg_slippage(side: str, units: int, fill: Decimal, quote: Mapping[str, Any] | None
                 ) -> dict[str, Any]:
    """One fill against the quote it met: vs mid and vs the touch (buy: ask, sell: bid)."""
    q = quote or {}
    mid, bid, ask = _d(q.get("mid")), _d(q.get("bid")), _d(q.get("ask"))
    touch = ask if side == "BUY" else bid
    return {"side": side, "fill": str(fill), "bid": _s(bid), "ask": _s(ask), "mid": _s(mid),
            "vs_mid": _vs(fill, mid, side, units), "vs_touch": _vs(fill, touch, side, units)}


def _slippage(trade: Trade, fills: Sequence[Any], entry_q: Mapping[str, Any],
              exit_q: Mapping[str, Any]) -> dict[str, Any]:
    exit_fill = {f.leg.security_id: f for f in fills}
    legs = []
    totals = {"entry_vs_mid": Decimal(0), "entry_vs_touch": Decimal(0),
              "exit_vs_mid": Decimal(0), "exit_vs_touch": Decimal(0)}
    for held in trade.legs:
        sid, units, side = held.leg.security_id, held.leg.quantity, held.leg.side.value
        row: dict[str, Any] = {"security_id": sid, "units": units, "side": side,
                               "entry": leg_slippage(side, units, held.entry_price,
                                                     entry_q.get(sid))}
        f = exit_fill.get(sid)
        if f is not None:
            row["exit"] = leg_slippage(f.leg.side.value, units, f.price, exit_q.get(sid))
            if not f.correlation_id:
                row["exit"]["note"] = "not an engine order (settlement or broker trade book)"
        for when in ("entry", "exit"):
            for ref in ("mid", "touch"):
                r = (row.get(when) or {}).get(f"vs_{ref}", {}).get("rupees")
                if r is not None:
                    totals[f"{when}_vs_{ref}"] += Decimal(r)
        legs.append(row)
    total = {k: str(v.quantize(CENT)) for k, v in totals.items()}
    total["vs_mid"] = str((totals["entry_vs_mid"] + totals["exit_vs_mid"]).quantize(CENT))
    total["vs_touch"] = str((totals["entry_vs_touch"] + totals["exit_vs_touch"]).quantize(CENT))
    return {"tick": str(TICK), "sign": "positive = paid against the reference", "legs": legs,
            "total": total}


# ---------------------------------------------------------------------------- variants
def _exit_price(leg: Mapping[str, Any], market: Mapping[str, Any], on: date
                ) -> tuple[Decimal | None, str]:
    """What a variant leg closes at in ``market``: (price, method)."""
    expiry = date.fromisoformat(leg["expiry"])
    strike = Decimal(leg["strike"])
    call = leg["option_type"] == "CE"
    spot = _d(market.get("spot"))
    if expiry < on or (expiry == on and leg["security_id"] not in market.get("quotes", {})):
        if spot is None:
            return None, "expired, no spot"
        intrinsic = max(spot - strike, Decimal(0)) if call else max(strike - spot, Decimal(0))
        return intrinsic.quantize(CENT), "intrinsic"
    q = market.get("quotes", {}).get(leg["security_id"]) or {}
    held_long = leg["side"] == "BUY"
    mark = _d(q.get("bid") if held_long else q.get("ask"))
    if mark is not None and mark > 0:
        return mark, "exit_touch"
    e = (market.get("expiries") or {}).get(leg["expiry"]) or {}
    iv = _d(q.get("iv")) or _d(e.get("atm_iv"))
    if iv is None or e.get("forward") is None or e.get("t") is None:
        return None, "no quote and no recorded IV at close"
    px = float(black76_price(float(e["forward"]), float(strike), float(e["t"]),
                             float(iv) / 100, call, RATE))
    return Decimal(repr(round(px, 2))).quantize(CENT), "surface_model"


def rejected_variant_delta(variant: Mapping[str, Any], exit_market: Mapping[str, Any],
                           opened_on: date, closed_on: date, chosen_net: Decimal
                           ) -> dict[str, Any]:
    """One rejected MDC variant over the chosen trade's holding period (see the module doc)."""
    code = variant.get("code")
    legs = variant.get("legs")
    if not legs:
        why = "; ".join((variant.get("score") or {}).get("rejected") or []) or "not built"
        return {"code": code, "priced": False, "why": f"no legs to price ({why})"}
    rows, premium, value, charges = [], Decimal(0), Decimal(0), Decimal(0)
    for leg in legs:
        entry = Decimal(leg["entry_price"])
        units = int(leg["units"])
        px, method = _exit_price(leg, exit_market, closed_on)
        if px is None:
            return {"code": code, "priced": False,
                    "why": f"{leg['expiry']} {leg['strike']} {leg['option_type']}: {method}"}
        s = 1 if leg["side"] == "BUY" else -1
        premium += s * entry * units
        value += s * px * units
        exit_side = "SELL" if leg["side"] == "BUY" else "BUY"
        charges += order_charges(kind="OPT", side=leg["side"], price=entry, quantity=units,
                                 on=opened_on).total
        if method != "intrinsic" and px > 0:
            charges += order_charges(kind="OPT", side=exit_side, price=px, quantity=units,
                                     on=closed_on).total
        rows.append({**leg, "exit_price": str(px), "exit_method": method})
    gross = value - premium
    net = (gross - charges).quantize(CENT)
    score = variant.get("score") or {}
    return {"code": code, "priced": True, "units": int(legs[0]["units"]),
            "entry_premium": str(premium.quantize(CENT)), "exit_value": str(value.quantize(CENT)),
            "gross_pnl": str(gross.quantize(CENT)), "charges": str(charges.quantize(CENT)),
            "net_pnl": str(net), "chosen_net_pnl": str(chosen_net),
            "delta_vs_chosen": str((net - chosen_net).quantize(CENT)),
            "scored_edge_after_pct": score.get("edge_after_pct"),
            "rejected_because": score.get("rejected") or [], "legs": rows}


# ---------------------------------------------------------------------------- the row
def build_journal_row(trade: Trade, fills: Sequence[Any], at: datetime,
                      exit_market: Mapping[str, Any] | None, *,
                      entry: Mapping[str, Any] | None = None,
                      extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every ``trade_journal`` column the data can fill, from the trade (its legs' entry
    fills, ``trade.context["journal_entry"]`` unless ``entry`` is given), the exit fills,
    the close time and the exit market (:func:`capture_market` at close).

    Returns a dict with keys ``entry_spot, exit_spot, entry_iv, exit_iv, skew, mfe, mae,
    slippage, selection_context, rejected_strategies, rejected_strategy_delta,
    event_risk_label`` (Decimals for amounts; JSON-able values for the jsonb columns).
    ``extra`` is merged into ``selection_context`` (e.g. ``charges_source``).
    """
    ctx = dict(trade.context or {})
    ent = dict(entry if entry is not None else ctx.get("journal_entry") or {})
    em = dict(ent.get("market") or {})
    xm = dict(exit_market or {})
    exit_prices = {f.leg.security_id: f.price for f in fills}
    exit_charges = sum((f.charges.total for f in fills), Decimal(0))
    gross = trade.gross_pnl(exit_prices) if all(
        x.leg.security_id in exit_prices for x in trade.legs) else None
    net = None if gross is None else (gross - trade.entry_charges - exit_charges).quantize(CENT)
    final_mark = None if gross is None else (gross - trade.entry_charges).quantize(CENT)
    marks = [trade.mfe, trade.mae] + ([final_mark] if final_mark is not None else [])
    opened_on = trade.opened_at.astimezone(IST).date()
    closed_on = at.astimezone(IST).date()

    def spot(m: Mapping[str, Any]) -> Decimal | None:
        v = _d(m.get("spot"))
        return None if v is None else v.quantize(CENT)

    selection = dict(ent.get("selection") or {})
    if not selection:  # an entry without captured context: what the trade itself carries
        selection = {"strategy": trade.strategy, "reason": ctx.get("reason"),
                     "metrics": _jsonable({k: v for k, v in ctx.items()
                                           if k not in ("journal_entry", "params")})}
    selection_context = {**selection, "entry_market": em, "exit_market": xm,
                         "held": {"opened_at": trade.opened_at.isoformat(),
                                  "closed_at": at.isoformat()},
                         "exit_skew": xm.get("skew"), "skew_definition": SKEW_DEFINITION,
                         **_jsonable(dict(extra or {}))}
    if trade.strategy == "MDC":
        variants = [rejected_variant_delta(v, xm, opened_on, closed_on, net)
                    for v in ent.get("rejected_variants") or ()] if net is not None and xm else []
        delta = {"method": ("each rejected variant opened at the entry touch and closed at the "
                            "exit-side marks at close (model at its recorded IV when unquoted, "
                            "intrinsic when expired), same units, net of modelled charges"),
                 "chosen": {"variant": selection.get("variant") or ctx.get("variant"),
                            "net_pnl": _s(net)},
                 "variants": variants}
        if not xm:
            delta["why_empty"] = "no market at close to price the variants"
    else:
        delta = {"method": f"{trade.strategy} scores no alternative variants", "variants": []}
    return {
        "entry_spot": spot(em) if em else _d(ctx.get("spot")),
        "exit_spot": spot(xm) if xm else None,
        "entry_iv": _d(em.get("atm_iv")),
        "exit_iv": _d(xm.get("atm_iv")),
        "skew": _d(em.get("skew")),
        "mfe": max(marks),
        "mae": min(marks),
        "slippage": _slippage(trade, fills, em.get("quotes") or {}, xm.get("quotes") or {}),
        "selection_context": selection_context,
        "rejected_strategies": list(ent.get("rejected_strategies") or []),
        "rejected_strategy_delta": delta,
        "event_risk_label": ent.get("event_risk_label") or event_label(ctx.get("events") or ()),
    }

