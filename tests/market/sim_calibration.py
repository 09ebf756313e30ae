"""Liquidity calibration of the market simulator from real NSE F&O bhavcopies.

Run ``python -m tests.market.sim_calibration [DATA_DIR]`` (default ``/work/shared/data``):
it reads every UDiFF zip there (``BhavCopy_NSE_FO_0_0_0_YYYYMMDD_F_0000.csv.zip``) and
prints how NIFTY option volume (contracts) and open interest (units) fall off

* by **expiry kind**: ``front`` = the first expiry on or after the trade date (on an expiry
  day, that day's contract), ``monthly`` = the first monthly after the front,
  ``next_weekly`` = the expiry after the front when it is not that monthly,
  ``other_weekly`` = weeklies further out, ``later_monthly`` = the monthlies after; and
* by **moneyness** in ATM standard deviations, ``z = ln(K/F) / w`` with ``w = sigma_atm sqrt T``
  taken from the expiry's own ATM straddle (``straddle ~ 0.7979 F w``) and the forward ``F``
  from put-call parity at the strike where ``|C - P|`` is smallest (``F = K + C - P``),
  split into the out-of-the-money side (CE above F, PE below) and the in-the-money side.

Each day's numbers are divided by that day's **front ATM reference**: the mean of the CE and
PE volume (OI) at the rank-0 strike nearest F; the table prints the median ratio over days.
Kind ratios use each expiry's own ATM strike; moneyness ratios are relative to the same
expiry's ATM, pooled into the front and the back expiries (so the model is separable:
volume = ref x kind factor x moneyness profile). The constants in
``engine/market/simulator.py`` (``_RANK_VOLUME``, ``_RANK_OI`` from the non-expiry-day
columns, ``_FRONT_VOL_OTM`` ... on the ``_Z_KNOTS``) are rounded from this output.

Bhavcopies have no bid/ask; the simulator derives its spreads from this liquidity.
"""

from __future__ import annotations

import math
import re
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

from tests.market.bhav import nifty_options

DATA = Path("/work/shared/data")
Z_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
MAX_RANK = 5
_NAME = re.compile(r"BhavCopy_NSE_FO_0_0_0_(\d{8})_F_0000\.csv\.zip$")


def _bucket(az: float) -> int | None:
    for i in range(len(Z_EDGES) - 1):
        if Z_EDGES[i] <= az < Z_EDGES[i + 1]:
            return i
    return None


def day_table(path: Path) -> dict:
    """One file's ratios: {'rank_vol': {r: x}, 'rank_oi': ..., 'mny_vol': {(r, b, otm): x},
    'mny_oi': ..., 'ref_vol': contracts, 'ref_oi': units, 'expiry_day': bool}."""
    rows: dict[date, dict[float, dict[str, tuple[float, int, int]]]] = defaultdict(
        lambda: defaultdict(dict))
    trade = None
    for r in nifty_options(path):
        trade = date.fromisoformat(r["TradDt"])
        e = date.fromisoformat(r["XpryDt"])
        rows[e][float(r["StrkPric"])][r["OptnTp"]] = (
            float(r["ClsPric"]), int(r["TtlTradgVol"]), int(r["OpnIntrst"]))
    assert trade is not None, f"no NIFTY options in {path}"
    exps = sorted(e for e in rows if e >= trade)[:MAX_RANK + 1]
    months = {}
    for e in sorted(rows):  # the last listed expiry of each month is its monthly
        months[(e.year, e.month)] = e
    monthlies = sorted(m for m in months.values() if m > exps[0])
    out: dict = {"rank_vol": {}, "rank_oi": {}, "mny_vol": defaultdict(list),
                 "mny_oi": defaultdict(list), "expiry_day": exps[0] == trade, "date": trade}
    ref = None
    for rank, e in enumerate(exps):
        both = {k: v for k, v in rows[e].items() if "CE" in v and "PE" in v
                and v["CE"][0] > 0 and v["PE"][0] > 0}
        if not both:
            continue
        k0 = min(both, key=lambda k: abs(both[k]["CE"][0] - both[k]["PE"][0]))
        fwd = k0 + both[k0]["CE"][0] - both[k0]["PE"][0]
        katm = min(both, key=lambda k: abs(k - fwd))
        w = (both[katm]["CE"][0] + both[katm]["PE"][0]) / (0.7979 * fwd)
        atm_vol = 0.5 * (both[katm]["CE"][1] + both[katm]["PE"][1])
        atm_oi = 0.5 * (both[katm]["CE"][2] + both[katm]["PE"][2])
        if rank == 0:
            ref = (atm_vol, atm_oi)
            out["ref_vol"], out["ref_oi"] = atm_vol, atm_oi
        if ref is None or atm_vol <= 0 or atm_oi <= 0 or w <= 0:
            continue
        kind = _kind(rank, e, monthlies)
        out["rank_vol"][kind] = atm_vol / ref[0]
        out["rank_oi"][kind] = atm_oi / ref[1]
        prof = "front" if rank == 0 else "back"
        for k, sides in rows[e].items():
            z = math.log(k / fwd) / w
            b = _bucket(abs(z))
            if b is None:
                continue
            for kind, (_, vol, oi) in sides.items():
                otm = (kind == "CE") == (k > fwd)
                out["mny_vol"][(prof, b, otm)].append(vol / atm_vol)
                out["mny_oi"][(prof, b, otm)].append(oi / atm_oi)
    return out


KINDS = ("front", "next_weekly", "monthly", "other_weekly", "later_monthly")


def _kind(rank: int, e: date, monthlies: list[date]) -> str:
    """front (rank 0), monthly (first monthly after the front), next_weekly (rank 1, not
    that monthly), later_monthly, other_weekly."""
    if rank == 0:
        return "front"
    if monthlies and e == monthlies[0]:
        return "monthly"
    if e in monthlies:
        return "later_monthly"
    return "next_weekly" if rank == 1 else "other_weekly"


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if not n:
        return float("nan")
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def measure(data: Path = DATA) -> dict:
    """Median ratios over every UDiFF zip in ``data`` (see the module docstring)."""
    files = sorted(p for p in data.glob("*.zip") if _NAME.search(p.name))
    if not files:
        raise FileNotFoundError(f"no UDiFF F&O bhavcopy zips in {data}")
    days = [day_table(p) for p in files]
    res: dict = {"dates": [d["date"] for d in days], "rank_vol": {}, "rank_oi": {},
                 "mny_vol": {}, "mny_oi": {},
                 "ref_vol": _median([d["ref_vol"] for d in days if not d["expiry_day"]]),
                 "ref_oi": _median([d["ref_oi"] for d in days if not d["expiry_day"]]),
                 "ref_vol_expiry_day": _median([d["ref_vol"] for d in days if d["expiry_day"]])}
    for key in ("rank_vol", "rank_oi"):
        for kind in KINDS:
            for tag, sel in (("all", None), ("non_expiry", False), ("expiry_day", True)):
                xs = [d[key][kind] for d in days if kind in d[key]
                      and (sel is None or d["expiry_day"] == sel)]
                res[key][(kind, tag)] = _median(xs)
    for key in ("mny_vol", "mny_oi"):
        pooled: dict = defaultdict(list)
        for d in days:
            for (prof, b, otm), xs in d[key].items():
                pooled[(prof, b, otm)].append(_median(xs))
        res[key] = {k: _median(v) for k, v in pooled.items()}
    return res


def report(res: dict) -> str:
    lines = [f"files: {len(res['dates'])} ({res['dates'][0]} .. {res['dates'][-1]})",
             f"front ATM reference (median, non-expiry days): volume {res['ref_vol']:,.0f} "
             f"contracts/side, OI {res['ref_oi']:,.0f} units/side; on expiry days volume "
             f"{res['ref_vol_expiry_day']:,.0f}",
             "", "ATM liquidity by expiry kind (ratio to the front ATM):",
             f"{'kind':>13} {'vol all':>9} {'vol non-exp':>11} {'vol exp-day':>11} "
             f"{'OI all':>8} {'OI non-exp':>10} {'OI exp-day':>10}"]
    for kind in KINDS:
        v = [res["rank_vol"][(kind, t)] for t in ("all", "non_expiry", "expiry_day")]
        o = [res["rank_oi"][(kind, t)] for t in ("all", "non_expiry", "expiry_day")]
        lines.append(f"{kind:>13} {v[0]:>9.2e} {v[1]:>11.2e} {v[2]:>11.2e} "
                     f"{o[0]:>8.2e} {o[1]:>10.2e} {o[2]:>10.2e}")
    for key, label in (("mny_vol", "volume"), ("mny_oi", "OI")):
        lines += ["", f"{label} by |z| (ATM SDs) relative to the same expiry's ATM, OTM / ITM side:",
                  f"{'|z| bucket':>10} {'front':>13} {'back':>13}"]
        for b in range(len(Z_EDGES) - 1):
            cells = []
            for prof in ("front", "back"):
                o = res[key].get((prof, b, True), float("nan"))
                i = res[key].get((prof, b, False), float("nan"))
                cells.append(f"{o:>6.3f}/{i:<6.3f}")
            lines.append(f"{Z_EDGES[b]:>4.2f}-{Z_EDGES[b + 1]:<5.2f} " + " ".join(cells))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    data = Path(argv[1]) if len(argv) > 1 else DATA
    print(report(measure(data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
