"""MDC — the double-calendar selector (pure: no I/O, parameters passed in).

Each cycle MDC builds the DC variants ``MDC_VARIANTS`` names with the DC builder
(:func:`engine.strategies.double_calendar.build`): ``ATM`` (both short strikes at the money),
``<n>SD`` (spot ± n near expected moves: ``05SD``, ``1SD``, ``15SD``, ``2SD`` …) and ``DD``
(a double diagonal: near strikes at ± ``MDC_DD_SD``, far strikes ``MDC_DD_FAR_EXTRA_SD``
further out). It scores every variant **at its planned exit** (DC's: the session before
near expiry) with :mod:`engine.strategies.structure_value` — spot distributed as the near
smile implies, near legs rolled forward consistently with it (the smile cannot create edge),
far IV moving as ``MDC_IV_MODEL`` says, and, with ``MDC_SCORE_EXITS``, DC's profit target,
stop and breakeven exits on the way — **net of the round-trip charges and spread**.

It selects the variant with the highest net edge that is ≥ ``MDC_MIN_EDGE_PCT`` % of its
debit and passes every DC entry filter (window, DTE, IV band, realized range, events, risk
pause, slots, richness, liquidity), and never a structure DC (or anyone) already holds on
the same strikes and expiry pair. The entry is strategy ``MDC``, tagged
``MDC-<yymmdd-HHMMSS>-<code>`` (≤ 20 characters: ``A`` = ATM, ``1`` = 1SD, ``15`` = 15SD,
``DD``), and takes a dc_family slot; its open trades follow DC's exit rule.

When nothing is selected, ``reasons[0]`` is the early-return reason and
``metrics["early_return"]`` its code — ``outside_window``, ``slots_full``, ``event_block``,
``risk_paused`` (checked first), then the stage the furthest variant reached:
``no_structure``, ``filters`` (DTE, IV band, range, breakevens), ``no_model``, ``held``,
``no_richness``, ``liquidity``, ``no_edge`` — and ``metrics["variants"]`` every variant's score (code,
strikes, debit, edge before/after costs, why rejected). ``metrics["mdc_selected"]`` is the
selected code or None; :func:`selected_nothing_reason` reads it back for the IC fallback.

MDC reads DC's parameters too (``PARAM_KEYS`` includes ``double_calendar.PARAM_KEYS``): the
variants are DC structures and pass DC's filters; DC's defaults apply to keys not given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from engine.events.guard import event_blocks, guard_knobs, input_events
from engine.market.calendar import NseCalendar
from engine.settings.registry import Knob
from engine.strategies import double_calendar as dc
from engine.strategies import structure_value as sv
from engine.strategies.base import Decision, EntryIntent, ExitIntent, StrategyInput
from engine.strategies.market_view import MarketView, StructureRefused, trading_years
from engine.timeutil import IST

__all__ = [
    "GRID_SPACE",
    "KNOBS",
    "NAME",
    "PARAM_KEYS",
    "Variant",
    "decide",
    "exit_rule",
    "parse_variants",
    "selected_nothing_reason",
]

NAME = "MDC"
D = Decimal

KNOBS: tuple[Knob, ...] = (
    Knob("MDC_ENABLED", bool, True, "Run the MDC selector over double-calendar variants."),
    Knob("MDC_VARIANTS", str, "ATM,1SD,15SD,DD",
         "Comma-separated DC variants MDC scores: ATM, <n>SD (offsets in near expected moves, "
         "one decimal without the point: 05SD, 1SD, 15SD, 2SD), DD (the double diagonal)."),
    Knob("MDC_MIN_EDGE_PCT", D, D("2.0"),
         "Select a variant only when its modelled edge at the planned exit, net of round-trip "
         "charges and spread, is at least this % of its debit.", D("-100"), D("100")),
    Knob("MDC_DD_SD", D, D("1.0"),
         "Near (sold) strikes of the DD variant: spot ± this many near expected moves.",
         D("0"), D("3")),
    Knob("MDC_DD_FAR_EXTRA_SD", D, D("0.5"),
         "Far (bought) strikes of the DD variant: this many expected moves beyond the near ones.",
         D("0.1"), D("3")),
    Knob("MDC_IV_MODEL", str, "regime",
         "How far-expiry IV moves to the exit in the score: regime (sticky moneyness per regime "
         "of the near smile), sticky_moneyness (today's far smile in K/F) or sticky_strike.",
         choices=sv.IV_MODELS),
    Knob("MDC_SCORE_EXITS", bool, True,
         "Score each variant with DC's profit target, stop and breakeven exits on the way to the "
         "planned exit (false: held to the planned exit)."),
    *guard_knobs(NAME),
)
_OWN_KEYS: tuple[str, ...] = tuple(k.key for k in KNOBS)
#: every parameter MDC reads: its own and DC's (the variants are DC structures)
PARAM_KEYS: tuple[str, ...] = (*_OWN_KEYS, *(k for k in dc.PARAM_KEYS if k not in _OWN_KEYS))
DEFAULTS: Mapping[str, Any] = {**dc.DEFAULTS, **{k.key: k.default for k in KNOBS}}
GRID_SPACE: Mapping[str, tuple[Any, ...]] = {
    "MDC_MIN_EDGE_PCT": (D("0"), D("2"), D("4")),
    "MDC_VARIANTS": ("ATM,1SD,15SD,DD", "1SD,15SD,DD"),
    "MDC_IV_MODEL": ("regime", "sticky_strike"),
}

_CODE = re.compile(r"([0-9])([0-9])?SD")
_MAX_VARIANTS = 8


def _p(params: Mapping[str, Any], key: str) -> Any:
    return params[key] if key in params else DEFAULTS[key]


def _calendar(params: Mapping[str, Any]) -> NseCalendar:
    cal = params.get("_calendar")
    return cal if cal is not None else _default_calendar()


_CAL: list[NseCalendar] = []


def _default_calendar() -> NseCalendar:
    if not _CAL:
        _CAL.append(NseCalendar())
    return _CAL[0]


# ---------------------------------------------------------------------------- variants
@dataclass(frozen=True, slots=True)
class Variant:
    """One DC variant: its code, offsets (near expected moves) and tag code (≤ 2 chars)."""

    code: str
    call_sd: float
    put_sd: float
    far_extra_sd: float
    tag_code: str


def parse_variants(params: Mapping[str, Any]) -> tuple[Variant, ...]:
    """The variants ``MDC_VARIANTS`` lists, in order.

    Raises:
        ValueError: an empty list, an unknown or repeated code, more than 8 variants.
    """
    raw = str(_p(params, "MDC_VARIANTS"))
    codes = [c.strip().upper() for c in raw.split(",") if c.strip()]
    if not codes:
        raise ValueError(f"MDC_VARIANTS={raw!r}: no variant listed")
    if len(codes) > _MAX_VARIANTS:
        raise ValueError(f"MDC_VARIANTS={raw!r}: {len(codes)} variants, at most {_MAX_VARIANTS}")
    out: list[Variant] = []
    for c in codes:
        if c == "ATM":
            v = Variant("ATM", 0.0, 0.0, 0.0, "A")
        elif c == "DD":
            sd = float(_p(params, "MDC_DD_SD"))
            v = Variant("DD", sd, sd, float(_p(params, "MDC_DD_FAR_EXTRA_SD")), "DD")
        else:
            m = _CODE.fullmatch(c)
            if m is None:
                raise ValueError(f"MDC_VARIANTS={raw!r}: unknown variant {c!r} (expected ATM, DD or "
                                 "<n>SD such as 05SD, 1SD, 15SD, 2SD)")
            sd = float(m.group(1)) + (float(m.group(2)) / 10 if m.group(2) else 0.0)
            if sd == 0:
                v = Variant("ATM", 0.0, 0.0, 0.0, "A")
            else:
                code = dc.sd_code(sd)
                v = Variant(code, sd, sd, 0.0, code[:-2])
        if any(x.code == v.code for x in out):
            raise ValueError(f"MDC_VARIANTS={raw!r}: {v.code} listed twice")
        out.append(v)
    return tuple(out)


# ---------------------------------------------------------------------------- helpers
def _hhmm(params: Mapping[str, Any], key: str) -> time:
    raw = str(_p(params, key))
    try:
        return time.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not an HH:MM time") from None


def _early_gates(inp: StrategyInput, view: MarketView, params: Mapping[str, Any]
                 ) -> list[tuple[str, str]]:
    """Structure-independent reasons no variant may open now: (code, text)."""
    out: list[tuple[str, str]] = []
    now = view.now.astimezone(IST)
    start, end = _hhmm(params, "DC_ENTRY_START"), _hhmm(params, "DC_ENTRY_END")
    if not start <= now.time() < end:
        out.append(("outside_window",
                    f"outside the entry window {start:%H:%M}–{end:%H:%M} IST (now {now:%H:%M})"))
    slots = inp.slots or {}
    fam = slots.get("dc_family")
    if fam is None:
        out.append(("slots_full", "dc_family slot use unknown (no slots in the input)"))
    for key in ("dc_family", NAME):
        slot = slots.get(key)
        if slot is not None and int(slot.get("used", 0)) >= int(slot.get("limit", 0)):
            out.append(("slots_full", f"{key} slots full ({int(slot.get('used', 0))}/"
                                      f"{int(slot.get('limit', 0))})"))
    near = view.near
    for why in event_blocks(NAME, input_events(inp), now, near.expiry if near else None,
                            _calendar(params), params):
        out.append(("event_block", why))
    if inp.entries_paused_reason:
        out.append(("risk_paused", f"risk paused: {inp.entries_paused_reason}"))
    return out


def _structure_key(legs: Iterable[Any]) -> frozenset[tuple[str, str, str, str]]:
    """(expiry, strike, CE/PE, side) of every leg: the same structure on the same expiries."""
    out = set()
    for leg in legs:
        leg = getattr(leg, "leg", leg)             # a Trade's OpenLeg or a plain Leg
        opt = getattr(leg, "option", None)          # a double_calendar.StructureLeg
        if opt is not None:
            out.add((opt.expiry.isoformat(), str(D(opt.strike).normalize()), str(opt.option_type),
                     str(leg.side)))
            continue
        if leg.expiry is None or leg.strike is None or leg.option_type is None:
            continue
        out.add((leg.expiry.isoformat(), str(D(leg.strike).normalize()),
                 str(getattr(leg.option_type, "value", leg.option_type)),
                 str(getattr(leg.side, "value", leg.side))))
    return frozenset(out)


def _dc_holds(open_trades: Iterable[Any], structure: dc.Structure) -> str | None:
    """The tag of an open DC trade on exactly these strikes and expiries, if any."""
    want = _structure_key(structure.legs)
    for t in open_trades or ():
        if getattr(t, "strategy", None) == dc.NAME and _structure_key(getattr(t, "legs", ())) == want:
            return str(t.tag)
    return None


def _category(problem: str) -> str:
    """Which early-return class a DC filter message belongs to."""
    if problem.startswith(("front not rich", "richness unknown")):
        return "no_richness"
    if problem.startswith("the same structure is already open"):
        return "held"
    if any(w in problem for w in (": volume ", ": OI ", "top-of-book", "round-trip spread")):
        return "liquidity"
    return "filters"


#: how far a variant got: the furthest one decides the early-return reason
_STAGE = {"no_structure": 0, "filters": 1, "no_model": 2, "held": 3, "no_richness": 4,
          "liquidity": 5, "no_edge": 6}


def _legs_for_score(s: dc.Structure) -> list[sv.LegSpec]:
    return [sv.LegSpec(strike=float(x.option.strike), option_type=x.option.option_type,
                       expiry=x.option.expiry, side=x.side, units=x.units,
                       entry_price=float(x.entry_price),
                       mid=float(x.option.mid) if x.option.mid is not None else None)
            for x in s.legs]


def _far_kind(view: MarketView, s: dc.Structure) -> str:
    after = [e.expiry for e in view.expiries if e.expiry > s.near]
    return "next_weekly" if after and after[0] == s.far else "monthly"


def _r(x: float | None, n: int = 2) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), n)


# ---------------------------------------------------------------------------- decide
def decide(inp: StrategyInput, params: Mapping[str, Any]) -> Decision:
    """Exits for MDC's open trades whose rule fires; the best-scoring DC variant as an
    entry, or the early-return reason and every variant's score."""
    if not _p(params, "MDC_ENABLED"):
        return Decision(strategy=NAME, eligible=False, reasons=("disabled (MDC_ENABLED=false)",),
                        metrics={"mdc_selected": None, "early_return": "disabled"})
    view = inp.market
    if view is None:
        return Decision(strategy=NAME, eligible=False,
                        reasons=("no option chains in the market data",),
                        metrics={"mdc_selected": None, "early_return": "no_market"})
    exits = []
    for t in inp.open_trades:
        if getattr(t, "strategy", None) != NAME or not hasattr(t, "context"):
            continue  # a plain OpenTradeView carries no fills: the monitor applies exit_rule
        why = exit_rule(t, view, inp.now, params)
        if why:
            exits.append(ExitIntent(strategy=NAME, tag=t.tag, reason=why))
    try:
        variants = parse_variants(params)
        iv_model = str(_p(params, "MDC_IV_MODEL"))
        if iv_model not in sv.IV_MODELS:
            raise ValueError(f"MDC_IV_MODEL={iv_model!r}: expected one of {', '.join(sv.IV_MODELS)}")
    except ValueError as exc:
        return Decision(strategy=NAME, eligible=False, exits=tuple(exits), reasons=(str(exc),),
                        metrics={"mdc_selected": None, "early_return": "bad_settings"})
    gates = _early_gates(inp, view, params)
    scored, model = _score_all(inp, view, params, variants, iv_model)
    min_edge = float(_p(params, "MDC_MIN_EDGE_PCT"))
    metrics: dict[str, Any] = {"mdc_selected": None, "early_return": None, "min_edge_pct": min_edge,
                               "model": model, "variants": [r["score"] for r in scored]}
    candidates = [r for r in scored if not r["problems"] and r["edge_after_pct"] is not None]
    if gates or not candidates:
        code, why = _nothing(gates, scored, min_edge)
        metrics.update(early_return=code, early_return_reason=why)
        lines = [why, *(_variant_line(r) for r in scored)]
        return Decision(strategy=NAME, eligible=True, exits=tuple(exits), reasons=tuple(lines),
                        metrics=metrics)
    best = max(candidates, key=lambda r: r["edge_after_pct"])
    metrics["mdc_selected"] = best["variant"].code
    entry = _entry(inp, view, params, best, scored, model)
    return Decision(strategy=NAME, eligible=True, entries=(entry,), exits=tuple(exits),
                    metrics=metrics)


def _score_all(inp: StrategyInput, view: MarketView, params: Mapping[str, Any],
               variants: tuple[Variant, ...], iv_model: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build and score every variant; each row: variant, structure, score (JSON), problems."""
    rows: list[dict[str, Any]] = []
    built: list[tuple[Variant, dc.Structure]] = []
    for v in variants:
        try:
            s = dc.build(view, params, code=v.code, call_sd=v.call_sd, put_sd=v.put_sd,
                         far_extra_sd=v.far_extra_sd)
        except StructureRefused as exc:
            rows.append({"variant": v, "structure": None, "edge_after_pct": None,
                         "problems": [("no_structure", f"not built: {exc}")],
                         "score": {"code": v.code, "rejected": [f"not built: {exc}"]}})
            continue
        built.append((v, s))
        rows.append({"variant": v, "structure": s})
    model: dict[str, Any] = {"iv_model": iv_model, "distribution": "near_smile"}
    surface, tau, exit_at, model_error = None, None, None, None
    if built:
        s0 = built[0][1]
        try:
            cal = _calendar(params)
            exit_at = dc.planned_exit(view, s0, params)
            near = view.expiry(s0.near)
            tau = trading_years(cal, view.now, s0.near) - trading_years(cal, exit_at, s0.near)
            if tau < 0:
                raise ValueError(f"the planned exit {exit_at:%d %b %H:%M} has passed")
            fars = {view.expiry(s.far).expiry: view.expiry(s.far) for _v, s in built}
            surface = sv.fit_surface(sv.quotes_from_view(near),
                                     [sv.quotes_from_view(e) for e in fars.values()], rate=view.rate)
            model.update(surface.to_json(), planned_exit=exit_at.isoformat(),
                         tau_exit_sessions=round(tau * 252, 4))
        except (ValueError, StructureRefused) as exc:
            model_error = f"cannot score: {exc}"
            model["error"] = model_error
    dc_inp = replace(inp, slots={k: v for k, v in (inp.slots or {}).items() if k != dc.NAME})
    score_exits = bool(_p(params, "MDC_SCORE_EXITS"))
    to_value: list[tuple[dict[str, Any], sv.StructureToValue, tuple[float | None, float | None]]] = []
    for row in rows:
        s = row["structure"]
        if s is None:
            continue
        v = row["variant"]
        problems: list[tuple[str, str]] = []
        held = _dc_holds(inp.open_trades, s)
        if held:
            problems.append(("held", f"DC already holds this structure ({held})"))
        problems.extend((_category(p), p)
                        for p in dc.entry_problems(dc_inp, view, s, params, guard=NAME))
        rich = dc.richness(view, s)
        row.update(problems=problems, edge_after_pct=None, score={
            "code": v.code, "near": s.near.isoformat(), "far": s.far.isoformat(),
            "put_strike": str(s.put_strike), "call_strike": str(s.call_strike),
            "far_put_strike": str(s.far_put_strike), "far_call_strike": str(s.far_call_strike),
            "units": s.units, "debit": str(s.debit), "round_trip_charges": str(s.round_trip_charges),
            "round_trip_spread": str(s.round_trip_spread),
            "richness_vol_pts": _r(rich, 3)})
        if model_error is not None or surface is None or tau is None or exit_at is None:
            problems.append(("no_model", model_error or "cannot score"))
            continue
        try:
            item, be = _to_value(view, params, s, exit_at, score_exits)
        except (ValueError, StructureRefused) as exc:
            problems.append(("no_model", f"cannot score: {exc}"))
            continue
        why = sv.structure_problem(item.legs, surface, tau)
        if why is not None:
            problems.append(("no_model", f"cannot score: {why}"))
            continue
        to_value.append((row, item, be))
    if to_value and surface is not None and tau is not None:
        vals = sv.value_structures([item for _r0, item, _be in to_value], surface, tau_exit=tau,
                                   spot=float(view.spot), iv_model=iv_model)  # type: ignore[arg-type]
        min_edge = float(_p(params, "MDC_MIN_EDGE_PCT"))
        for (row, _item, be), val in zip(to_value, vals, strict=True):
            edge_after = val.edge_after_pct
            row["edge_after_pct"] = edge_after
            row["score"].update(
                mid_debit=_r(val.mid_debit), edge_before=_r(val.edge_before_costs),
                edge_after=_r(val.edge_after_costs), edge_before_pct=_r(val.edge_before_pct, 3),
                edge_after_pct=_r(val.edge_after_pct, 3),
                terminal_edge_pct=_r(100 * (val.terminal_value - val.mid_debit) / val.debit, 3)
                if val.debit > 0 else None,
                prob_profit=_r(val.prob_profit, 4), prob_target=_r(val.prob_target, 4),
                prob_stop=_r(val.prob_stop, 4), dc_breakevens=list(be))
            if edge_after is None or edge_after < min_edge:
                row["problems"].append(("no_edge", f"edge {_fmt_pct(edge_after)} after costs < "
                                                   f"MDC_MIN_EDGE_PCT {min_edge:g} %"))
    for row in rows:
        if row["structure"] is not None:
            row["score"]["rejected"] = [p for _c, p in row["problems"]]
    return rows, model


def _to_value(view: MarketView, params: Mapping[str, Any], s: dc.Structure, exit_at: datetime,
              score_exits: bool) -> tuple[sv.StructureToValue, tuple[float | None, float | None]]:
    """The variant as the model scores it, and DC's model breakevens at the planned exit
    (its exit rule, and the spot band of the score's exit path)."""
    lo, hi = dc.breakevens(view, s, exit_at, calendar=_calendar(params))
    rule = None
    if score_exits:
        debit = float(s.debit)
        # DC's P&L = exit-side marks − debit − exit charges; exit-side = mid − half the spread
        carry = float(s.round_trip_spread) / 2 + float(s.round_trip_charges - s.entry_charges)
        target = float(dc.profit_target_pct(view, s, params))
        stop = float(_p(params, "DC_STOP_LOSS_PCT"))
        rule = sv.ExitRule(target_value=debit * (1 + target) + carry,
                           stop_value=debit * (1 - stop) + carry, spot_band=(lo, hi))
    item = sv.StructureToValue(legs=_legs_for_score(s), charges=float(s.round_trip_charges),
                               spread=float(s.round_trip_spread), debit=float(s.debit), exits=rule)
    return item, (lo, hi)


def _fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f} %"


def _variant_line(row: dict[str, Any]) -> str:
    sc = row["score"]
    s = row["structure"]
    head = sc["code"]
    if s is not None:
        head += (f" {s.put_strike.normalize():f}PE/{s.call_strike.normalize():f}CE"
                 + (f" (far {s.far_put_strike.normalize():f}/{s.far_call_strike.normalize():f})"
                    if s.diagonal else "")
                 + f" {s.near:%d %b}/{s.far:%d %b} debit ₹{s.debit}")
    if sc.get("edge_before_pct") is not None:
        head += (f": edge {_fmt_pct(sc['edge_before_pct'])} before, "
                 f"{_fmt_pct(sc['edge_after_pct'])} after costs")
    rej = sc.get("rejected") or []
    return head + (f" — rejected: {'; '.join(rej)}" if rej else "")


def _nothing(gates: list[tuple[str, str]], rows: list[dict[str, Any]], min_edge: float) -> tuple[str, str]:
    """(early-return code, reason) when nothing is selected."""
    if gates:
        return gates[0][0], "; ".join(t for _c, t in gates)
    furthest, stage = None, -1
    for r in rows:
        codes = [c for c, _t in r["problems"]]
        first = min(codes, key=lambda c: _STAGE[c]) if codes else "no_edge"
        if _STAGE[first] > stage:
            furthest, stage = (r, first), _STAGE[first]
    if furthest is None:
        return "no_structure", "no variant listed"
    row, code = furthest
    if code == "no_edge":
        scored = [r for r in rows if r.get("edge_after_pct") is not None]
        best = max(scored, key=lambda r: r["edge_after_pct"])
        return code, (f"no variant with edge ≥ MDC_MIN_EDGE_PCT {min_edge:g} % after costs "
                      f"(best {best['variant'].code} {_fmt_pct(best['edge_after_pct'])})")
    if code == "no_richness":
        rich = ", ".join(f"{r['variant'].code} {r['score'].get('richness_vol_pts')}"
                         for r in rows if r["structure"] is not None)
        return code, f"no variant with a rich front (near − far IV, trading time, vol pts: {rich})"
    text = next(t for c, t in row["problems"] if c == code)
    label = {"no_structure": "no variant could be built", "no_model": "no variant could be scored",
             "filters": "DC filters", "held": "every candidate is already held",
             "liquidity": "liquidity"}[code]
    return code, f"{label}: {row['variant'].code}: {text}"


def _entry(inp: StrategyInput, view: MarketView, params: Mapping[str, Any], best: dict[str, Any],
           rows: list[dict[str, Any]], model: dict[str, Any]) -> EntryIntent:
    s: dc.Structure = best["structure"]
    v: Variant = best["variant"]
    sc = best["score"]
    local = inp.now.astimezone(IST)
    tag = f"{NAME}-{local:%y%m%d-%H%M%S}-{v.tag_code}"
    if len(tag) > 20:  # cannot happen with ≤ 2-character tag codes; kept as a guard
        raise ValueError(f"MDC tag {tag!r} longer than 20 characters")
    near = view.expiry(s.near)
    context = {
        **s.summary(), "variant": v.code, "score": sc,
        "rejected_variants": [r["score"] for r in rows if r is not best],
        "far_kind": _far_kind(view, s), "breakevens": sc.get("dc_breakevens"),
        "planned_exit": model.get("planned_exit"), "near_dte_at_entry": near.dte if near else None,
        "profit_target_pct": str(dc.profit_target_pct(view, s, params)),
        "stop_loss_pct": str(_p(params, "DC_STOP_LOSS_PCT")),
        "model": {k: model[k] for k in ("iv_model", "distribution", "tau_exit_sessions") if k in model},
        "params": {k: str(_p(params, k)) for k in PARAM_KEYS}}
    reason = (f"MDC selected {v.code} {s.put_strike.normalize():f}PE/{s.call_strike.normalize():f}CE "
              f"{s.near:%d %b}/{s.far:%d %b}: edge {_fmt_pct(sc['edge_after_pct'])} after costs "
              f"({_fmt_pct(sc['edge_before_pct'])} before) at the planned exit, debit ₹{s.debit}")
    return EntryIntent(strategy=NAME, tag=tag, legs=s.to_legs(), reason=reason,
                       direction="LONG_CALENDAR", context=context)


# ---------------------------------------------------------------------------- exits, helpers
def exit_rule(trade: Any, market: MarketView | None, now: datetime, params: Mapping[str, Any]) -> str | None:
    """DC's exit rule (an MDC trade is a double calendar / diagonal)."""
    return dc.exit_rule(trade, market, now, params)


def selected_nothing_reason(decision: Decision | None) -> str | None:
    """Why MDC selected nothing this cycle (None when it selected a variant)."""
    if decision is None:
        return "MDC not run"
    if decision.entries:
        return None
    m = decision.metrics or {}
    if m.get("mdc_selected"):
        return None
    return str(m.get("early_return_reason") or (decision.reasons[0] if decision.reasons
                                                 else "MDC selected nothing"))
