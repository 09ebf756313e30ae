"""Market endpoints for the Market and Chain pages (read-only).

* ``GET /api/market/chain?expiry=`` — the option chain of the newest ``iv_snapshots`` sample
  (``payload["chain"]``, recorded by the scanner: :mod:`engine.market.chain_record`): CE |
  strike | PE with LTP, bid/ask, IV, delta, OI, OI change against the previous session's last
  recorded chain, ATM and max-pain strikes, PCR, and the open positions' legs at each strike.
* ``GET /api/market/surface`` — the newest sample's figures, the term structure (ATM IV of
  every recorded expiry) and the near / far smiles (``payload.smile.rows`` /
  ``payload.far_smile.rows``, as :func:`engine.market.surface.compute_surface` stores them).
* ``GET /api/market/iv-history?from=&to=&limit=`` — near / far ATM IV per sample (no payload).
* ``GET /api/market/realized?from=&to=`` — per session: near ATM IV at the last sample, the
  session's intraday realized vol (:mod:`engine.market.realized`) and the close-to-close
  realized vol over ``IC_RV_SESSIONS`` (IC's own estimator), plus IC's last vol decision.
* ``GET /api/market/spread`` — the near/far futures spread samples of the current pair with
  CAL_ARB's z-score at each sample (:func:`engine.strategies.cal_arb.zscore`).

IVs are annualized percent, as stored. Rupee prices are per unit (index points).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from flask import jsonify

from web.api import bp, one, rows, runtime_settings
from web.validate import BadRequest, Date, Int, date_range, query

SNAP_COLS = ("created_at, trade_date, spot, near_expiry, far_expiry, near_dte, far_dte,"
             " near_atm_iv, far_atm_iv, atm_call_iv, atm_put_iv, skew, near_straddle,"
             " far_straddle, realized_range")
CLOSES_BACK = timedelta(days=60)  # calendar days of closes read before ``from`` (RV window)



def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def floats(obj: Any) -> Any:
    """Stored JSON with its Decimals (the pool loads JSONB floats as Decimal) as floats: chain
    quotes, IVs and greeks are display figures, not money that is booked."""
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, dict):
        return {k: floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [floats(v) for v in obj]
    return obj


# ------------------------------------------------------------------ chain
def _open_legs() -> dict[tuple[str, float, str], list[dict[str, Any]]]:
    """Open option legs by (expiry, strike, CE/PE) from ``open_trades`` payloads."""
    out: dict[tuple[str, float, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows("SELECT tag, strategy, mode, payload FROM open_trades ORDER BY id"):
        for leg in (r["payload"] or {}).get("legs", []):
            if leg.get("kind") != "OPT" or leg.get("strike") is None or not leg.get("expiry"):
                continue
            key = (leg["expiry"], float(leg["strike"]), str(leg.get("option_type")))
            out[key].append({"tag": r["tag"], "strategy": r["strategy"], "mode": r["mode"],
                             "side": leg.get("side"), "quantity": leg.get("quantity"),
                             "option_type": leg.get("option_type"),
                             "entry_price": leg.get("entry_price")})
    return out


def _previous_chain(trade_date: date) -> dict[str, Any] | None:
    """The last recorded sample of the session before ``trade_date`` (its chain, if any)."""
    row = one("SELECT created_at, trade_date, payload->'chain' AS chain FROM iv_snapshots"
              " WHERE trade_date < %s ORDER BY created_at DESC LIMIT 1", (trade_date,))
    return None if row is None else {**row, "chain": floats(row["chain"])}


def _side_rows(e: dict[str, Any], side: str, prev: dict[float, int] | None
               ) -> list[dict[str, Any]]:
    from engine.market.chain_stats import oi_change  # (lazy: scipy; workers boot fast)
    cols = e[side]
    n = len(e["strikes"])
    oi = cols.get("oi") or [None] * n
    before = [None if prev is None else prev.get(float(k)) for k in e["strikes"]]
    change = oi_change([0 if v is None else v for v in oi], before)
    return [{"ltp": cols["ltp"][i], "bid": cols["bid"][i], "ask": cols["ask"][i],
             "iv": cols["iv"][i], "delta": cols["delta"][i], "oi": oi[i],
             "oi_change": change[i] if oi[i] is not None else None,
             "volume": (cols.get("volume") or [None] * n)[i]} for i in range(n)]


def _prev_oi(prev_chain: dict[str, Any] | None, expiry: str) -> dict[str, dict[float, int]] | None:
    if not prev_chain:
        return None
    for e in prev_chain.get("expiries", []):
        if e.get("expiry") == expiry:
            return {side: {float(k): v for k, v in zip(e["strikes"], e[side]["oi"], strict=True)
                           if v is not None} for side in ("ce", "pe")}
    return None


@bp.get("/market/chain")
def market_chain() -> Any:
    """The newest recorded option chain of one expiry (default: the nearest)."""
    values = query({"expiry": Date(optional=True)})
    snap = one("SELECT created_at, trade_date, spot, payload->'chain' AS chain FROM iv_snapshots"
               " ORDER BY created_at DESC LIMIT 1")
    if snap is None:
        return jsonify({"chain": None, "reason": "no IV snapshots yet: the scanner records one "
                                                 "each scan cycle while the market is open"})
    chain = floats(snap["chain"])
    if not chain or not chain.get("expiries"):
        return jsonify({"chain": None, "created_at": snap["created_at"],
                        "reason": f"the newest IV snapshot ({snap['created_at'].isoformat()}) "
                                  "carries no option chain (recorded by an engine before the "
                                  "chain was recorded, or no expiry had time left)"})
    exps = chain["expiries"]
    want = values["expiry"].isoformat() if values["expiry"] else exps[0]["expiry"]
    e = next((x for x in exps if x["expiry"] == want), None)
    if e is None:
        raise BadRequest("expiry", f"no recorded chain for {want}; recorded: "
                         + ", ".join(x["expiry"] for x in exps))
    prev = _previous_chain(snap["trade_date"])
    prev_oi = _prev_oi(prev["chain"] if prev else None, want)
    if prev is None:
        basis = {"basis": None, "reason": "no earlier session recorded: OI change unknown"}
    elif prev_oi is None:
        basis = {"basis": None, "reason": f"the previous session's last sample "
                 f"({prev['created_at'].isoformat()}) has no chain for {want}: OI change unknown"}
    else:
        basis = {"basis": "previous session's last recorded chain",
                 "trade_date": prev["trade_date"], "created_at": prev["created_at"]}
    legs = _open_legs()
    spot = float(snap["spot"])
    ce = _side_rows(e, "ce", prev_oi["ce"] if prev_oi else None)
    pe = _side_rows(e, "pe", prev_oi["pe"] if prev_oi else None)
    max_pain = e["stats"].get("max_pain")
    out_rows = []
    for i, k in enumerate(e["strikes"]):
        out_rows.append({
            "strike": k, "atm": k == e["atm_strike"], "max_pain": k == max_pain,
            "ce": {**ce[i], "itm": k < spot}, "pe": {**pe[i], "itm": k > spot},
            "positions": legs.get((want, float(k), "CE"), []) + legs.get((want, float(k), "PE"), []),
        })
    window = set(map(float, e["strikes"]))
    outside = [{"strike": k, "option_type": t, **p} for (x, k, t), ps in legs.items()
               if x == want and k not in window for p in ps]
    return jsonify({
        "created_at": snap["created_at"], "trade_date": snap["trade_date"], "spot": snap["spot"],
        "lot_size": chain.get("lot_size"), "half_width": chain.get("half_width"),
        "expiries": [{"expiry": x["expiry"], "dte": x["dte"], "atm_iv": x.get("atm_iv"),
                      "open_legs": sum(len(v) for (ex, _k, _t), v in legs.items()
                                       if ex == x["expiry"])} for x in exps],
        "expiry": {k: e.get(k) for k in ("expiry", "dte", "t", "forward", "atm_strike", "atm_iv")},
        "stats": e["stats"], "oi_change": basis, "rows": out_rows,
        "positions_outside_window": outside,
    })


# ------------------------------------------------------------------ surface
def smile_rows(part: Any) -> dict[str, Any] | None:
    """``payload.smile`` / ``payload.far_smile`` ({expiry, rows: [{strike, ce_iv, pe_iv, ...}]})
    as {expiry, forward, rows: [{strike, ce_iv, pe_iv, ce_ltp, pe_ltp}]}; None when absent."""
    if not isinstance(part, dict) or not isinstance(part.get("rows"), list):
        return None
    out = [{"strike": _f(r.get("strike")), "ce_iv": _f(r.get("ce_iv")), "pe_iv": _f(r.get("pe_iv")),
            "ce_ltp": _f(r.get("ce_ltp")), "pe_ltp": _f(r.get("pe_ltp"))}
           for r in part["rows"] if isinstance(r, dict) and r.get("strike") is not None]
    out.sort(key=lambda r: r["strike"])
    return {"expiry": part.get("expiry"), "forward": part.get("forward"), "rows": out}


def term_structure(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """ATM IV by expiry: every recorded chain's, else the near / mid / far summary."""
    chain = payload.get("chain") or {}
    if chain.get("expiries"):
        return [{"expiry": e["expiry"], "dte": e["dte"], "atm_iv": e.get("atm_iv"),
                 "forward": e.get("forward"), "atm_strike": e.get("atm_strike")}
                for e in chain["expiries"]]
    ts = payload.get("term_structure") or {}
    got = [dict(v, leg=k) for k, v in ts.items() if isinstance(v, dict)]
    return sorted(got, key=lambda v: (v.get("dte") is None, v.get("dte") or 0))


@bp.get("/market/surface")
def market_surface() -> Any:
    """The newest IV sample: figures, term structure, near and far smiles."""
    row = one(f"SELECT {SNAP_COLS}, payload - 'chain' AS payload, payload->'chain'->'expiries'"
              " AS chain_expiries FROM iv_snapshots ORDER BY created_at DESC LIMIT 1")
    if row is None:
        return jsonify({"snapshot": None, "reason": "no IV snapshots yet"})
    payload = floats(dict(row.pop("payload") or {}))
    if row.get("chain_expiries"):
        payload["chain"] = {"expiries": floats(row["chain_expiries"])}
    row.pop("chain_expiries", None)
    near = payload.get("term_structure", {}).get("near") or {}
    smile = smile_rows(payload.get("smile"))
    if smile is not None and smile.get("forward") is None:
        smile["forward"] = near.get("forward")
    return jsonify({"snapshot": row, "term_structure": term_structure(payload),
                    "smile": smile, "far_smile": smile_rows(payload.get("far_smile")),
                    "atm_strike": near.get("atm_strike"),
                    "skew_definition": payload.get("skew_definition")})


# ------------------------------------------------------------------ history
@bp.get("/market/iv-history")
def market_iv_history() -> Any:
    """Near / far ATM IV and spot per sample, oldest first (the newest ``limit`` in range)."""
    values = query({"from": Date(optional=True), "to": Date(optional=True),
                    "limit": Int(optional=True, default=3000, minimum=1, maximum=20000)})
    date_range(values)
    got = rows("SELECT created_at, trade_date, spot, near_atm_iv, far_atm_iv, near_expiry,"
               " far_expiry FROM iv_snapshots WHERE (%(f)s::date IS NULL OR trade_date >= %(f)s)"
               " AND (%(t)s::date IS NULL OR trade_date <= %(t)s) ORDER BY created_at DESC"
               " LIMIT %(n)s", {"f": values["from"], "t": values["to"], "n": values["limit"]})
    got.reverse()
    return jsonify({"rows": got})


@bp.get("/market/realized")
def market_realized() -> Any:
    """Per session: near ATM IV at the last sample vs intraday and close-to-close realized vol."""
    from engine.market.realized import session_realized_vol
    from engine.strategies.iron_condor import close_to_close_vol
    values = query({"from": Date(optional=True), "to": Date(optional=True)})
    date_range(values)
    end = values["to"] or (one("SELECT max(trade_date) AS d FROM iv_snapshots") or {}).get("d")
    if end is None:
        return jsonify({"sessions": [], "reason": "no IV snapshots yet"})
    start = values["from"] or end - timedelta(days=30)
    n = int(runtime_settings().get("IC_RV_SESSIONS"))
    closes = rows("SELECT DISTINCT ON (trade_date) trade_date, spot, near_atm_iv, far_atm_iv"
                  " FROM iv_snapshots WHERE trade_date BETWEEN %s AND %s"
                  " ORDER BY trade_date, created_at DESC", (start - CLOSES_BACK, end))
    intraday: dict[date, tuple[list, list]] = defaultdict(lambda: ([], []))
    for r in rows("SELECT trade_date, created_at, spot FROM iv_snapshots WHERE trade_date"
                  " BETWEEN %s AND %s ORDER BY created_at", (start, end)):
        intraday[r["trade_date"]][0].append(r["created_at"])
        intraday[r["trade_date"]][1].append(float(r["spot"]))
    sessions = []
    for i, c in enumerate(closes):
        if c["trade_date"] < start:
            continue
        px = [float(x["spot"]) for x in closes[: i + 1]]
        times, spots = intraday.get(c["trade_date"], ([], []))
        srv = session_realized_vol(times, spots)
        cc = close_to_close_vol(px, n) if len(px) >= n + 1 else None
        sessions.append({"trade_date": c["trade_date"], "close": c["spot"],
                         "near_atm_iv": _f(c["near_atm_iv"]), "far_atm_iv": _f(c["far_atm_iv"]),
                         "session_rv": None if srv is None else round(100 * srv, 2),
                         "close_to_close_rv": None if cc is None else round(100 * cc, 2),
                         "samples": len(spots), "closes_available": len(px)})
    ic = one("SELECT created_at, payload->'metrics'->'IC' AS ic FROM (SELECT created_at, payload"
             " FROM strategy_battle_log ORDER BY created_at DESC LIMIT 500) b"
             " WHERE payload->'metrics'->'IC' ? 'realized_vol' ORDER BY created_at DESC LIMIT 1")
    return jsonify({"sessions": sessions, "rv_sessions": n,
                    "ic_last": ({"created_at": ic["created_at"],
                                 **{k: ic["ic"].get(k) for k in (
                                     "near_atm_iv", "near_atm_iv_trading", "realized_vol",
                                     "iv_rv_ratio", "vol_rule_text")}} if ic else None)})


# ------------------------------------------------------------------ futures spread
@bp.get("/market/spread")
def market_spread() -> Any:
    """Near/far futures calendar spread samples with CAL_ARB's z-score at each."""
    from engine.strategies.cal_arb import zscore
    st = runtime_settings()
    window, min_samples = int(st.get("CAL_ARB_WINDOW")), int(st.get("CAL_ARB_MIN_SAMPLES"))
    samples = rows("SELECT sampled_at, near_expiry, far_expiry, near_price, far_price, spread"
                   " FROM calendar_spread_history ORDER BY sampled_at, id")
    spreads: list[Decimal] = [r["spread"] for r in samples]
    out = []
    for i, r in enumerate(samples):
        # as the scanner decides: the history before this sample, the last ``window`` of it
        history = tuple(spreads[:i][-window:])
        z = mean = stdev = None
        if len(history) >= min_samples:
            z, mean, stdev = zscore(history, spreads[i], window)
        out.append({**r, "z": None if z is None else round(z, 4),
                    "mean": None if mean is None else round(mean, 4),
                    "stdev": None if stdev is None else round(stdev, 4)})
    return jsonify({"samples": out, "window": window, "min_samples": min_samples,
                    "entry_z": st.get("CAL_ARB_ZSCORE_ENTRY"),
                    "exit_z": st.get("CAL_ARB_ZSCORE_EXIT"),
                    "enabled": st.get("CAL_ARB_ENABLED")})
