"""``market_events`` and ``nse_holidays`` writes, and the loader the engine reads events with.

Column mapping: date → event_date, time → event_time, kind → category, title → name,
impact → risk_level (lower case, the table's CHECK), country, source, source_url, confirmed.
The natural key is (event_date, category, name) (schema/009_market_events_key.sql). Upserts
never delete: an event a source stops listing stays known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg.rows import tuple_row

from engine.events.model import MarketEvent

__all__ = ["HolidayRow", "UpsertResult", "events_between", "read_events", "upsert_events",
           "upsert_holidays"]

_UPSERT = """
INSERT INTO market_events (event_date, event_time, name, category, risk_level, source,
                           country, source_url, confirmed, payload, updated_at)
VALUES (%(date)s, %(time)s, %(title)s, %(kind)s, %(impact)s, %(source)s, %(country)s,
        %(url)s, %(confirmed)s, jsonb_build_object('written_by', %(writer)s::text), now())
ON CONFLICT (event_date, category, name) DO UPDATE SET
    event_time = EXCLUDED.event_time, risk_level = EXCLUDED.risk_level,
    source = EXCLUDED.source, country = EXCLUDED.country, source_url = EXCLUDED.source_url,
    confirmed = EXCLUDED.confirmed, updated_at = now(),
    payload = market_events.payload || EXCLUDED.payload
WHERE (%(override)s OR coalesce(market_events.payload->>'written_by', 'seed') = 'seed')
  AND (market_events.event_time, market_events.risk_level, market_events.source,
       market_events.country, market_events.source_url, market_events.confirmed)
      IS DISTINCT FROM
      (EXCLUDED.event_time, EXCLUDED.risk_level, EXCLUDED.source, EXCLUDED.country,
       EXCLUDED.source_url, EXCLUDED.confirmed)
RETURNING (xmax = 0) AS inserted
"""


@dataclass(frozen=True, slots=True)
class UpsertResult:
    added: tuple[MarketEvent, ...] = ()
    changed: tuple[MarketEvent, ...] = ()
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class HolidayRow:
    date: date
    description: str
    segment: str = "FO"
    source: str = "nse"


def upsert_events(conn: Any, events: Iterable[MarketEvent], *, writer: str = "seed") -> UpsertResult:
    """Insert or update ``events`` on their natural key (the caller owns the transaction).

    ``writer`` is recorded in ``payload.written_by``. The seed file (``writer="seed"``) only
    updates rows the seed wrote: once an official source has written an event, the source's
    date, time and confirmation win over the operator's seed entry (which then counts as
    unchanged). Any other writer updates whatever differs.
    """
    added: list[MarketEvent] = []
    changed: list[MarketEvent] = []
    same = 0
    with conn.cursor(row_factory=tuple_row) as cur:
        for ev in events:
            cur.execute(_UPSERT, {"date": ev.date, "time": ev.time, "title": ev.title,
                                  "kind": ev.kind, "impact": ev.impact.lower(),
                                  "source": ev.source, "country": ev.country,
                                  "url": ev.source_url, "confirmed": ev.confirmed,
                                  "writer": writer, "override": writer != "seed"})
            row = cur.fetchone()
            if row is None:
                same += 1
            elif row[0]:
                added.append(ev)
            else:
                changed.append(ev)
    return UpsertResult(tuple(added), tuple(changed), same)


def upsert_holidays(conn: Any, rows: Sequence[HolidayRow]) -> tuple[int, int]:
    """Insert or refresh ``nse_holidays`` rows (the same statement as
    ``engine.market.calendar.seed_nse_holidays``; the table's trigger NOTIFYs every engine
    process to re-read its calendar). Never deletes. Returns (added, changed)."""
    added = changed = 0
    with conn.cursor(row_factory=tuple_row) as cur:
        for r in rows:
            cur.execute(
                "INSERT INTO nse_holidays (holiday_date, description, segment, source)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (holiday_date) DO UPDATE SET"
                " description = EXCLUDED.description, segment = EXCLUDED.segment,"
                " source = EXCLUDED.source"
                " WHERE (nse_holidays.description, nse_holidays.segment) IS DISTINCT FROM"
                " (EXCLUDED.description, EXCLUDED.segment)"
                " RETURNING (xmax = 0)", (r.date, r.description, r.segment, r.source))
            got = cur.fetchone()
            if got is not None:
                added, changed = (added + 1, changed) if got[0] else (added, changed + 1)
    return added, changed


def _event(row: Sequence[Any]) -> MarketEvent:
    d, t, name, category, risk, source, country, url, confirmed = row
    return MarketEvent(date=d, time=t, kind=category, title=name, impact=str(risk).upper(),
                       country=country or "", source=source or "", source_url=url or "",
                       confirmed=bool(confirmed))


def read_events(conn: Any, start: date, end: date, *, impacts: Iterable[str] | None = None
                ) -> tuple[MarketEvent, ...]:
    """Events dated ``start`` .. ``end`` (inclusive), by date and time; optional impact filter.
    Rows of a kind this engine does not know are skipped."""
    sql = ("SELECT event_date, event_time, name, category, risk_level, source, country,"
           " source_url, confirmed FROM market_events WHERE event_date BETWEEN %s AND %s")
    args: list[Any] = [start, end]
    if impacts is not None:
        sql += " AND risk_level = ANY(%s)"
        args.append([i.lower() for i in impacts])
    sql += " ORDER BY event_date, event_time NULLS FIRST, category, name"
    out = []
    with conn.cursor(row_factory=tuple_row) as cur:
        for row in cur.execute(sql, args).fetchall():
            try:
                out.append(_event(row))
            except ValueError:
                continue  # e.g. a legacy category: not an event the guard knows
    return tuple(out)


def events_between(pool: Any, start: date, end: date, *,
                   impacts: Iterable[str] | None = None) -> tuple[MarketEvent, ...]:
    """The events dated ``start`` .. ``end`` (inclusive) as frozen MarketEvents (one read).

    What the scanner and the backtester pass to the strategies: e.g.
    ``events_between(pool, today - timedelta(days=7), today + timedelta(days=30))``.
    """
    with pool.connection() as conn:
        return read_events(conn, start, end, impacts=impacts)


