"""The ``make fetch-events`` job: the seed file first, then every official-source adapter.

Each step runs in its own transaction and is reported on its own: a source that cannot be
reached or whose payload changed shape is reported and skipped, never aborting the job and
never deleting a known event (upserts only). The NSE adapter also refreshes
``nse_holidays``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.events import mospi, nse, oea
from engine.events.seed import SEED_PATH, SeedError, load_seed
from engine.events.sources import ParseResult, SourceChanged, SourceError
from engine.events.store import upsert_events, upsert_holidays
from engine.store.tx import transaction

__all__ = ["FetchReport", "Source", "SourceReport", "default_sources", "run_fetch"]


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    fetch: Callable[[], str]
    parse: Callable[[str], ParseResult]


@dataclass(frozen=True, slots=True)
class SourceReport:
    name: str
    ok: bool
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    error: str | None = None
    holidays_added: int = 0
    holidays_changed: int = 0

    def line(self) -> str:
        if not self.ok:
            return f"{self.name}: FAILED ({self.error}); skipped, known events kept"
        text = f"{self.name}: {self.added} added, {self.changed} changed, {self.unchanged} unchanged"
        if self.holidays_added or self.holidays_changed:
            text += (f"; nse_holidays {self.holidays_added} added, "
                     f"{self.holidays_changed} changed")
        return text


@dataclass(frozen=True, slots=True)
class FetchReport:
    seed: SourceReport
    sources: tuple[SourceReport, ...] = field(default_factory=tuple)

    @property
    def lines(self) -> list[str]:
        return [self.seed.line(), *(s.line() for s in self.sources)]

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(s.name for s in (self.seed, *self.sources) if not s.ok)


def default_sources(*, nse_base: str | None = None, mospi_url: str | None = None,
                    oea_url: str | None = None, timeout: Any = None) -> tuple[Source, ...]:
    """The three official adapters; URLs from the arguments, else the EVENTS_* environment
    variables, else the public sites."""
    kw = {} if timeout is None else {"timeout": timeout}
    return (
        Source(nse.NAME, lambda: nse.fetch(nse_base, **kw), nse.parse),
        Source(mospi.NAME, lambda: mospi.fetch(mospi_url, **kw), mospi.parse),
        Source(oea.NAME, lambda: oea.fetch(oea_url, **kw), oea.parse),
    )


def _write(pool: Any, name: str, result: ParseResult, writer: str) -> SourceReport:
    with transaction(pool) as conn:
        up = upsert_events(conn, result.events, writer=writer)
        h_added, h_changed = upsert_holidays(conn, result.holidays) if result.holidays else (0, 0)
    return SourceReport(name, True, len(up.added), len(up.changed), up.unchanged,
                        holidays_added=h_added, holidays_changed=h_changed)


def run_fetch(pool: Any, *, seed_path: Path | str = SEED_PATH,
              sources: Sequence[Source] | None = None) -> FetchReport:
    """Load the seed, then every source; one report line per step."""
    try:
        seed = _write(pool, "seed file", ParseResult(load_seed(seed_path)), "seed")
    except SeedError as exc:
        seed = SourceReport("seed file", False, error=str(exc))
    reports = []
    for src in default_sources() if sources is None else sources:
        try:
            result = src.parse(src.fetch())
            if not result.events:
                raise SourceChanged(f"{src.name}: the payload lists no events")
            reports.append(_write(pool, src.name, result, src.name))
        except SourceError as exc:
            reports.append(SourceReport(src.name, False, error=str(exc)))
        except Exception as exc:  # a parser bug or bad data: report it, go on with the rest
            reports.append(SourceReport(src.name, False, error=f"{type(exc).__name__}: {exc}"))
    return FetchReport(seed, tuple(reports))
