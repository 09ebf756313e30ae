"""Flow 4 — the SentimentService score (pure, deterministic, no LLM).

A score from −100 (strongly bearish) to +100 (strongly bullish): the weighted mean of named
components, each normalised to −1..+1 by a linear scale clipped at the ends, over the
components that are available (missing data drops a component; ``coverage_pct`` says what
share of them were available). Decimal arithmetic throughout, so a hand-built snapshot has
an exact known score.

=================  ======  ==========================================================  ======
component          weight  raw value                                                   scale
=================  ======  ==========================================================  ======
spot_vs_prev_close   0.30  (spot − prev_close) / prev_close, in %                      1 %
basis_change         0.10  futures basis (near future − spot) − the reference basis    20 pts
pcr                  0.15  PCR (OI) of the near expiry − 1 (above 1: puts written)     0.5
pcr_change           0.10  PCR − the reference PCR                                     0.2
atm_iv_change        0.15  −(ATM IV − reference ATM IV), in IV points (rising: bear)   2 pts
oi_buildup_atm       0.15  (ΔPE OI − ΔCE OI) / (|ΔPE| + |ΔCE|) within ±3 strikes of    0.5
                           ATM since the reference (without one: the OI levels)
india_vix            0.05  −(VIX − previous VIX) / previous VIX, in %                  5 %
=================  ======  ==========================================================  ======

The reference is the day's first sample (its raw values are kept in ``components_json``).
Labels: score ≤ −60 STRONGLY_BEARISH, ≤ −20 BEARISH, < 20 NEUTRAL, < 60 BULLISH, else
STRONGLY_BULLISH; ``strength_pct`` = |score|.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["COMPONENTS", "Sentiment", "SentimentInputs", "inputs_from_view", "label_of",
           "score_sentiment"]

D = Decimal
ONE, ZERO, HUNDRED = D(1), D(0), D(100)
CENT = D("0.01")
#: name -> (weight, scale)
COMPONENTS: Mapping[str, tuple[Decimal, Decimal]] = {
    "spot_vs_prev_close": (D("0.30"), D("1")),
    "basis_change": (D("0.10"), D("20")),
    "pcr": (D("0.15"), D("0.5")),
    "pcr_change": (D("0.10"), D("0.2")),
    "atm_iv_change": (D("0.15"), D("2")),
    "oi_buildup_atm": (D("0.15"), D("0.5")),
    "india_vix": (D("0.05"), D("5")),
}
ATM_STRIKES = 3  # strikes either side of ATM for the OI build-up


@dataclass(frozen=True, slots=True, kw_only=True)
class SentimentInputs:
    """What the score reads; None = not available. IVs in percent points."""

    spot: Decimal
    prev_close: Decimal | None = None
    basis: Decimal | None = None
    ref_basis: Decimal | None = None
    pcr: Decimal | None = None
    ref_pcr: Decimal | None = None
    atm_iv: Decimal | None = None
    ref_atm_iv: Decimal | None = None
    ce_oi_atm: int | None = None
    pe_oi_atm: int | None = None
    ref_ce_oi_atm: int | None = None
    ref_pe_oi_atm: int | None = None
    vix: Decimal | None = None
    prev_vix: Decimal | None = None

    def raw(self) -> dict[str, Any]:
        """The raw inputs as JSON (kept so a later sample can use this one as reference)."""
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in (
            ("spot", self.spot), ("basis", self.basis), ("pcr", self.pcr),
            ("atm_iv", self.atm_iv), ("ce_oi_atm", self.ce_oi_atm),
            ("pe_oi_atm", self.pe_oi_atm), ("vix", self.vix))}


@dataclass(frozen=True, slots=True, kw_only=True)
class Sentiment:
    score: Decimal
    label: str
    strength_pct: Decimal
    coverage_pct: Decimal
    spot: Decimal
    prev_close: Decimal | None
    pcr: Decimal | None
    iv: Decimal | None
    components: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


def _clip(x: Decimal) -> Decimal:
    return max(-ONE, min(ONE, x))


def _raw_values(i: SentimentInputs) -> dict[str, tuple[Decimal, str] | None]:
    out: dict[str, tuple[Decimal, str] | None] = dict.fromkeys(COMPONENTS)
    if i.prev_close is not None and i.prev_close > 0:
        out["spot_vs_prev_close"] = ((i.spot - i.prev_close) / i.prev_close * HUNDRED,
                                     f"spot {i.spot} vs previous close {i.prev_close}")
    if i.basis is not None and i.ref_basis is not None:
        out["basis_change"] = (i.basis - i.ref_basis, f"basis {i.basis} vs {i.ref_basis}")
    if i.pcr is not None:
        out["pcr"] = (i.pcr - ONE, f"PCR {i.pcr}")
        if i.ref_pcr is not None:
            out["pcr_change"] = (i.pcr - i.ref_pcr, f"PCR {i.pcr} vs {i.ref_pcr}")
    if i.atm_iv is not None and i.ref_atm_iv is not None:
        out["atm_iv_change"] = (-(i.atm_iv - i.ref_atm_iv), f"ATM IV {i.atm_iv} vs {i.ref_atm_iv}")
    if i.ce_oi_atm is not None and i.pe_oi_atm is not None:
        if i.ref_ce_oi_atm is not None and i.ref_pe_oi_atm is not None:
            dce, dpe = i.ce_oi_atm - i.ref_ce_oi_atm, i.pe_oi_atm - i.ref_pe_oi_atm
            basis = "change since the reference"
        else:
            dce, dpe = i.ce_oi_atm, i.pe_oi_atm
            basis = "levels (no reference yet)"
        total = abs(dce) + abs(dpe)
        if total > 0:
            out["oi_buildup_atm"] = (D(dpe - dce) / D(total), f"PE {dpe} vs CE {dce} OI, {basis}")
    if i.vix is not None and i.prev_vix is not None and i.prev_vix > 0:
        out["india_vix"] = (-(i.vix - i.prev_vix) / i.prev_vix * HUNDRED,
                            f"VIX {i.vix} vs {i.prev_vix}")
    return out


def label_of(score: Decimal) -> str:
    if score <= -60:
        return "STRONGLY_BEARISH"
    if score <= -20:
        return "BEARISH"
    if score < 20:
        return "NEUTRAL"
    if score < 60:
        return "BULLISH"
    return "STRONGLY_BULLISH"


def score_sentiment(i: SentimentInputs) -> Sentiment:
    """The score of ``i`` (see the module docstring); ``components`` holds, per component,
    its raw value, normalised value, weight and what it was computed from."""
    comps: dict[str, Any] = {}
    num = den = ZERO
    available = 0
    for name, raw in _raw_values(i).items():
        weight, scale = COMPONENTS[name]
        if raw is None:
            comps[name] = {"available": False, "weight": str(weight)}
            continue
        value, what = raw
        norm = _clip(value / scale)
        num += weight * norm
        den += weight
        available += 1
        comps[name] = {"available": True, "raw": str(value.quantize(D("0.0001"))),
                       "normalized": str(norm.quantize(D("0.0001"))), "weight": str(weight),
                       "scale": str(scale), "from": what}
    score = (num / den * HUNDRED).quantize(CENT) if den > 0 else ZERO.quantize(CENT)
    coverage = (D(available) / D(len(COMPONENTS)) * HUNDRED).quantize(CENT)
    comps["_inputs"] = i.raw()
    note = ("no component available: neutral by default" if available == 0 else
            f"{available}/{len(COMPONENTS)} components")
    return Sentiment(score=score, label=label_of(score), strength_pct=abs(score),
                     coverage_pct=coverage, spot=i.spot, prev_close=i.prev_close, pcr=i.pcr,
                     iv=i.atm_iv, components=comps, note=note)


def _dec(x: Any) -> Decimal | None:
    if x is None:
        return None
    try:
        return D(str(x))
    except ArithmeticError:
        return None


def inputs_from_view(view: Any, *, prev_close: Decimal | None,
                     reference: Mapping[str, Any] | None = None, vix: Decimal | None = None,
                     prev_vix: Decimal | None = None) -> SentimentInputs:
    """The inputs from a :class:`~engine.strategies.market_view.MarketView` (near expiry:
    PCR, ATM IV, OI within ±3 strikes of ATM; the basis from the first future quoted) and
    the reference sample's raw inputs (``components_json["_inputs"]`` of the day's first)."""
    ref = reference or {}
    spot = D(view.spot)
    basis = None
    for q in (view.futures or {}).values():
        ltp = getattr(q, "ltp", None) or getattr(q, "bid", None)
        if ltp is not None:
            basis = (D(ltp) - spot).quantize(CENT)
            break
    near = view.near
    pcr = iv = None
    ce_oi = pe_oi = None
    if near is not None:
        ce_total = sum(o.oi for o in near.calls.values())
        pe_total = sum(o.oi for o in near.puts.values())
        if ce_total > 0:
            pcr = (D(pe_total) / D(ce_total)).quantize(D("0.0001"))
        if near.atm_iv is not None:
            iv = D(repr(near.atm_iv * 100)).quantize(D("0.0001"))
        strikes = list(near.strikes)
        if near.atm_strike in strikes:
            at = strikes.index(near.atm_strike)
            window = strikes[max(0, at - ATM_STRIKES): at + ATM_STRIKES + 1]
            ce_oi = sum(near.calls[k].oi for k in window if k in near.calls)
            pe_oi = sum(near.puts[k].oi for k in window if k in near.puts)
    return SentimentInputs(
        spot=spot, prev_close=prev_close, basis=basis, ref_basis=_dec(ref.get("basis")),
        pcr=pcr, ref_pcr=_dec(ref.get("pcr")), atm_iv=iv, ref_atm_iv=_dec(ref.get("atm_iv")),
        ce_oi_atm=ce_oi, pe_oi_atm=pe_oi,
        ref_ce_oi_atm=ref.get("ce_oi_atm"), ref_pe_oi_atm=ref.get("pe_oi_atm"),
        vix=vix, prev_vix=prev_vix)
