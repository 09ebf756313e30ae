"""Contract identity across NSE's re-dating of live contracts.

From EOD 2025-08-28 NSE moved index-derivative expiries from Thursday to Tuesday, and
re-dated the contracts already listed (2025-09-25 → 2025-09-30, 2025-12-24 → 2025-12-30,
2029-12-27 → 2029-12-24, ...; later a newly declared holiday moved 2026-03-31 → 2026-03-30).
Such a contract keeps its name (``FinInstrmNm``) and its id (``FinInstrmId``) but its
``XpryDt`` changes, so a leg keyed on (expiry, strike, type) would vanish from the file.

The ingest (``engine.backtest.ingest``) records each observed change in ``bhavcopy_redated``
(symbol, old expiry → new expiry, first trade date seen with the new expiry). The replay asks
:func:`redated_expiry` under which expiry a contract it holds is listed on a given day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = ["ListedContract", "Redating", "detect_redatings", "load_redatings", "redated_expiry"]


@dataclass(frozen=True, slots=True)
class Redating:
    """Contracts of ``symbol`` expiring ``old_expiry`` are listed with ``new_expiry`` from
    ``redated_on`` (the first ingested trade date showing the new date) on."""

    symbol: str
    old_expiry: date
    new_expiry: date
    redated_on: date


class ListedContract(NamedTuple):
    """The identity columns of one bhavcopy row."""

    symbol: str
    expiry: date
    option_type: str
    strike: Decimal
    instrument_id: str | None
    contract_name: str | None


def detect_redatings(earlier: Iterable[ListedContract], later: Iterable[ListedContract],
                     later_date: date) -> dict[tuple[str, date, date], tuple[int, str | None]]:
    """Re-datings between two ingested trade dates (``later_date`` the later one).

    A contract of the earlier day is re-dated when it was still alive on ``later_date``
    (expiry >= it), is not listed under its old expiry on ``later_date``, and a contract of the
    same symbol, type and strike with the same name or the same instrument id is listed there
    under another expiry. Ids alone are no key across days (NSE reuses them once a contract
    expires); together with "old still alive, gone under the old date" they are.

    Returns:
        (symbol, old expiry, new expiry) -> (contracts moved, one contract name).
    """
    later = list(later)
    keys = {(c.symbol, c.expiry, c.option_type, c.strike) for c in later}
    by_id: dict[tuple[str, str, Decimal, str], ListedContract] = {}
    by_name: dict[tuple[str, str, Decimal, str], ListedContract] = {}
    for c in later:
        if c.instrument_id:
            by_id[(c.symbol, c.option_type, c.strike, c.instrument_id)] = c
        if c.contract_name:
            by_name[(c.symbol, c.option_type, c.strike, c.contract_name)] = c
    out: dict[tuple[str, date, date], tuple[int, str | None]] = {}
    for a in earlier:
        if a.expiry < later_date or (a.symbol, a.expiry, a.option_type, a.strike) in keys:
            continue
        b = None
        if a.contract_name:
            b = by_name.get((a.symbol, a.option_type, a.strike, a.contract_name))
        if b is None and a.instrument_id:
            b = by_id.get((a.symbol, a.option_type, a.strike, a.instrument_id))
        if b is None or b.expiry == a.expiry:
            continue
        k = (a.symbol, a.expiry, b.expiry)
        n, name = out.get(k, (0, None))
        out[k] = (n + 1, name or b.contract_name)
    return out


def redated_expiry(redatings: Iterable[Redating], symbol: str, expiry: date, on_date: date) -> date:
    """The expiry under which a ``symbol`` contract first listed with ``expiry`` appears in the
    bhavcopy of ``on_date`` (``expiry`` itself when it was never re-dated by then). Chains
    (re-dated twice) are followed.

    Raises:
        ValueError: two different new expiries for one old expiry on the same date (the
            recorded data contradicts itself), or a cycle.
    """
    by_old: dict[tuple[str, date], list[Redating]] = {}
    for r in redatings:
        if r.symbol == symbol and r.redated_on <= on_date:
            by_old.setdefault((r.symbol, r.old_expiry), []).append(r)
    current, seen = expiry, {expiry}
    while (symbol, current) in by_old:
        moves = by_old[(symbol, current)]
        latest = max(m.redated_on for m in moves)
        targets = {m.new_expiry for m in moves if m.redated_on == latest}
        if len(targets) != 1:
            shown = ", ".join(str(t) for t in sorted(targets))
            raise ValueError(f"{symbol} {current}: re-dated to several expiries on {latest} "
                             f"({shown})")
        current = targets.pop()
        if current in seen:
            raise ValueError(f"{symbol} {expiry}: re-dating cycle through {current}")
        seen.add(current)
    return current


def load_redatings(pool: Any, symbol: str | None = None) -> list[Redating]:
    """Every recorded re-dating (of ``symbol`` when given) from ``bhavcopy_redated``."""
    sql = "SELECT symbol, old_expiry, new_expiry, redated_on FROM bhavcopy_redated"
    params: tuple[Any, ...] = ()
    if symbol is not None:
        sql += " WHERE symbol = %s"
        params = (symbol,)
    with pool.connection() as conn:
        rows = conn.execute(sql + " ORDER BY symbol, redated_on, old_expiry", params).fetchall()
    return [Redating(r["symbol"], r["old_expiry"], r["new_expiry"], r["redated_on"]) for r in rows]
