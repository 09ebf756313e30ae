"""The operator-maintained seed file ``data/market_events_seed.json`` (pure loader).

Format::

    {"format": 1,
     "comment": "free text",
     "events": [
       {"date": "2025-02-07", "time": "10:00", "kind": "RBI_MPC", "title": "RBI MPC decision",
        "impact": "HIGH", "country": "IN", "source": "RBI",
        "source_url": "https://www.rbi.org.in/...", "confirmed": true, "note": "optional"}
     ]}

Required keys of an entry: date (YYYY-MM-DD), kind (see ``engine.events.model.KINDS``), title,
impact (HIGH/MEDIUM/LOW), country, source, source_url. Optional: time (HH:MM IST, or null),
confirmed (default true; false = the date could not be checked against the official
calendar), note. Any other key, a bad date or time, a bad kind or impact, an empty title or a
duplicate (date + kind + title) refuses the whole file with every problem, each naming the
entry index and title.
"""

from __future__ import annotations

import json
import re
from datetime import date, time
from pathlib import Path
from typing import Any

from engine.events.model import IMPACTS, KINDS, MarketEvent

__all__ = ["SEED_PATH", "SeedError", "load_seed", "parse_seed"]

SEED_PATH = Path(__file__).resolve().parent.parent.parent / "data" / "market_events_seed.json"
TOP_KEYS = frozenset({"format", "comment", "events"})
REQUIRED = ("date", "kind", "title", "impact", "country", "source", "source_url")
OPTIONAL = ("time", "confirmed", "note")
ENTRY_KEYS = frozenset(REQUIRED + OPTIONAL)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}$")


class SeedError(ValueError):
    """The seed file is refused; ``problems`` lists every reason (entry index and title)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        shown = problems[:20]
        more = f"\n  (+{len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{source} refused:\n  " + "\n  ".join(shown) + more)
        self.problems = problems


def _entry_problems(i: int, raw: Any) -> tuple[list[str], MarketEvent | None]:
    if not isinstance(raw, dict):
        return [f"entry {i}: expected an object, got {type(raw).__name__}"], None
    title = raw.get("title")
    who = f"entry {i} ({title!r})" if isinstance(title, str) and title else f"entry {i}"
    out: list[str] = []
    for key in sorted(set(raw) - ENTRY_KEYS):
        out.append(f"{who}: unknown key {key!r} (allowed: {', '.join(sorted(ENTRY_KEYS))})")
    for key in REQUIRED:
        if key not in raw:
            out.append(f"{who}: missing {key!r}")
        elif not isinstance(raw[key], str) or not raw[key].strip():
            out.append(f"{who}: {key} must be non-empty text, got {raw[key]!r}")
    d = t = None
    if isinstance(raw.get("date"), str):
        try:
            if not _DATE.match(raw["date"]):
                raise ValueError
            d = date.fromisoformat(raw["date"])
        except ValueError:
            out.append(f"{who}: bad date {raw['date']!r} (expected YYYY-MM-DD)")
    tv = raw.get("time")
    if tv is not None:
        try:
            if not isinstance(tv, str) or not _TIME.match(tv):
                raise ValueError
            t = time.fromisoformat(tv)
        except ValueError:
            out.append(f"{who}: bad time {tv!r} (expected HH:MM IST or null)")
    if isinstance(raw.get("kind"), str) and raw["kind"] not in KINDS:
        out.append(f"{who}: unknown kind {raw['kind']!r} (expected one of {', '.join(KINDS)})")
    if isinstance(raw.get("impact"), str) and raw["impact"] not in IMPACTS:
        out.append(f"{who}: bad impact {raw['impact']!r} (expected one of {', '.join(IMPACTS)})")
    conf = raw.get("confirmed", True)
    if not isinstance(conf, bool):
        out.append(f"{who}: confirmed must be true or false, got {conf!r}")
    if "note" in raw and not isinstance(raw["note"], str):
        out.append(f"{who}: note must be text")
    if out or d is None:
        return out, None
    return [], MarketEvent(date=d, time=t, kind=raw["kind"], title=" ".join(raw["title"].split()),
                           impact=raw["impact"], country=raw["country"].strip(),
                           source=raw["source"].strip(), source_url=raw["source_url"].strip(),
                           confirmed=bool(conf))


def parse_seed(doc: Any, source: str = "seed file") -> tuple[MarketEvent, ...]:
    """The events of a parsed seed document, sorted by date; raises :class:`SeedError`."""
    if not isinstance(doc, dict):
        raise SeedError(source, [f"expected a JSON object with 'events', got {type(doc).__name__}"])
    problems = [f"unknown top-level key {k!r} (allowed: {', '.join(sorted(TOP_KEYS))})"
                for k in sorted(set(doc) - TOP_KEYS)]
    if doc.get("format", 1) != 1:
        problems.append(f"format {doc.get('format')!r}: this engine reads format 1")
    entries = doc.get("events")
    if not isinstance(entries, list):
        raise SeedError(source, [*problems, "'events' must be a list"])
    events: list[MarketEvent] = []
    seen: dict[tuple[date, str, str], int] = {}
    for i, raw in enumerate(entries):
        errs, ev = _entry_problems(i, raw)
        problems.extend(errs)
        if ev is None:
            continue
        first = seen.setdefault(ev.key, i)
        if first != i:
            problems.append(f"entry {i} ({ev.title!r}): duplicate of entry {first} "
                            f"(same date {ev.date}, kind {ev.kind} and title)")
            continue
        events.append(ev)
    if problems:
        raise SeedError(source, problems)
    return tuple(sorted(events, key=lambda e: (e.date, e.time or time(0), e.kind, e.title)))


def load_seed(path: Path | str = SEED_PATH) -> tuple[MarketEvent, ...]:
    """Read and validate the seed file; raises :class:`SeedError` (also for bad JSON)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedError(str(p), [f"cannot read: {exc.strerror or exc}"]) from None
    except json.JSONDecodeError as exc:
        raise SeedError(str(p), [f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    return parse_seed(doc, str(p))
