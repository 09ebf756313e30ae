"""ScannerActor: each scan cycle samples the market, records the IV surface and the spread,
runs the strategies and logs one strategy_battle_log row. Entries go to the risk actor as
intents; strategy exits go to the executor.

A cycle is applied exactly once: its battle-log row (unique on the cycle time) is written
first, in the one transaction of the cycle, and everything else the cycle writes (the IV
sample, the spread sample, the funnel counts) and sends (entries, exits) happens only if that
row was new. A cycle replayed after a restart therefore changes nothing; the newest battle-log
row is also where a restarted simulated clock resumes (``engine.app.simulated_start``).

Owns: strategy_battle_log, iv_snapshots, calendar_spread_history, futures_id_cache.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.ai.wiring import scan_hints
from engine.events.guard import input_events
from engine.events.store import events_between
from engine.execution import journal
from engine.execution import repository as trades_repo
from engine.execution.paper import ExecutionRefused
from engine.market.calendar import NseCalendar, uncovered_reason
from engine.market.chain_record import with_chain
from engine.market.snapshot import price_decimal
from engine.market.snapshot_store import (
    decimal_or_none,
    iv_percent,
    prune_iv_snapshots,
    record_iv_snapshot,
)
from engine.market.surface import compute_surface
from engine.messages.commands import ClosePosition, OpenPosition, PruneTick, ScanTick
from engine.messages.events import (
    AlertRaised,
    EntryDenied,
    PositionClosed,
    PositionOpened,
    RiskPaused,
    RiskResumed,
)
from engine.scan_inputs import HISTORY_KEEP, futures_quote, next_spread_history, strategy_input
from engine.store.tx import transaction
from engine.strategies.base import FuturesQuote
from engine.strategies.cycle import CycleResult, run_cycle
from engine.strategies.registry import specs
from engine.strategies.slots import strategy_slots
from engine.strategies.view_cache import shared as snapshot_views

logger = logging.getLogger(__name__)

DAILY_CLOSES = 30  # sessions of closes handed to strategies (IC's realized volatility)
EVENTS_REFRESH = timedelta(minutes=30)  # engine time between reads of market_events


class _AlreadyApplied(Exception):
    """The cycle's battle-log row exists: roll the cycle's transaction back."""


def _jsonable(value: Any) -> Any:
    """Strategy metrics as JSON: Decimals and dates as text, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (Decimal, date, datetime)):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


class ScannerActor(SupervisedActor):
    def setup(self) -> None:
        services = self.ctx.services
        self._pool = services["pool"]
        self._market = services["market"]
        self._settings = services["settings"]
        # the live calendar (CalendarSource, re-read from nse_holidays) or a fixed NseCalendar
        self._calendar = services.get("calendar")
        self._alerted_years: set[int] = set()  # used only without a CalendarSource
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT near_expiry, far_expiry, spread FROM calendar_spread_history"
                " ORDER BY sampled_at DESC, id DESC LIMIT %s", (HISTORY_KEEP,)).fetchall()
            risk = conn.execute("SELECT pause_reason, paused_until FROM risk_envelope_state"
                                " WHERE id = 1").fetchone()
            stage_rows = conn.execute("SELECT stage, pause_reason, paused_until FROM"
                                      " risk_envelope_stages WHERE pause_reason IS NOT NULL"
                                      ).fetchall()
            # the spot range of the latest session so far, as the cycles recorded it
            day_range = conn.execute(
                "SELECT trade_date, max(spot) AS hi, min(spot) AS lo FROM strategy_battle_log"
                " WHERE trade_date = (SELECT trade_date FROM strategy_battle_log ORDER BY"
                " created_at DESC LIMIT 1) AND spot IS NOT NULL GROUP BY trade_date").fetchone()
        rows.reverse()
        self._pair = (rows[-1]["near_expiry"], rows[-1]["far_expiry"]) if rows else None
        self._history: list[Decimal] = [r["spread"] for r in rows]
        self._paused: str | None = risk["pause_reason"] if risk else None
        self._paused_until: datetime | None = risk["paused_until"] if risk else None
        # one stage's cap pause (paper losses do not pause live): stage -> (reason, until)
        self._stage_paused: dict[str, tuple[str, datetime | None]] = {
            r["stage"]: (f"{r['stage']}: {r['pause_reason']}", r["paused_until"])
            for r in stage_rows}
        self._open = {t.tag: t for t in trades_repo.load_open(self._pool).values()}
        # (day, high, low) of spot over the day's cycles
        self._session_range: tuple[Any, float, float] | None = (
            (day_range["trade_date"], float(day_range["hi"]), float(day_range["lo"]))
            if day_range else None)
        self._last_alert: str | None = None
        self._view = None  # the last cycle's MarketView (the journal's entry market)
        self._events: tuple[Any, ...] = ()  # the market events the last cycle's strategies saw
        self._closes: tuple[Any, tuple[float, ...]] | None = None
        self._event_cache: tuple[datetime, tuple[Any, ...]] | None = None
        self._param_keys = sorted({k for spec in specs() for k in spec.param_keys}
                                  | {"DC_FAMILY_SLOTS", "EXPIRY_DAY_EXIT_TIME"})

    def handle(self, message: Any) -> Any:
        match message:
            case ScanTick(at=at):
                self._scan(at)
            case PruneTick(table=table, keep_days=days, at=at):
                self._prune(table, days, at)
            case RiskPaused(reason=reason, paused_until=until, stage=None):
                self._paused, self._paused_until = reason, until
            case RiskPaused(reason=reason, paused_until=until, stage=stage):
                self._stage_paused[stage] = (reason, until)
            case RiskResumed():
                self._paused = None
                self._stage_paused.clear()
            case PositionOpened():
                self._open = dict(trades_repo.load_open(self._pool))
            case PositionClosed(tag=tag):
                self._open.pop(tag, None)
            case EntryDenied(tag=tag, reason=reason):
                self._record_denial(tag, reason)
            case _:
                return super().handle(message)
        return None

    # ------------------------------------------------------------------ scan cycle
    def _paused_reason(self, now: datetime, strategy: str) -> str | None:
        """The pause in force for ``strategy``: the global one, or its stage's cap pause."""
        if self._paused and (self._paused_until is None or now < self._paused_until):
            return self._paused
        if not self._stage_paused:
            return None
        stage = trades_repo.trading_stage(self._pool, strategy)
        reason, until = self._stage_paused.get(stage, (None, None))
        if reason and (until is None or now < until):
            return reason
        return None

    def _calendar_refusal(self, at: datetime) -> str | None:
        """Why entries are refused today for lack of a holiday list (alerted once a year)."""
        source = self._calendar
        if source is None:
            return None
        current = source.current() if hasattr(source, "current") else source
        if current.covers(at.date()):
            return None
        reason = uncovered_reason(at.year)
        claim = getattr(source, "claim_alert", None)
        first = claim(at.year) if claim is not None else at.year not in self._alerted_years
        self._alerted_years.add(at.year)
        if first:
            logger.error("entries refused: %s (open positions are still monitored)", reason)
            self.publish(self.new(AlertRaised, source="calendar", text=reason))
        return reason

    def _scan(self, at: datetime) -> None:
        try:
            snap = self._market.snapshot()
        except ExecutionRefused as exc:  # market data unavailable: say so, don't crash
            logger.warning("scan %s skipped: market data unavailable (%s)", at, exc)
            if str(exc) != self._last_alert:  # alert once per distinct problem, not every cycle
                self._last_alert = str(exc)
                self.publish(self.new(AlertRaised, source="market data", text=str(exc)))
            with transaction(self._pool) as conn:
                conn.execute(
                    "INSERT INTO strategy_battle_log (created_at, trade_date, rejections) VALUES"
                    " (%s, %s, %s) ON CONFLICT (created_at) DO NOTHING",
                    (at, at.date(), Jsonb({"market": f"data unavailable: {exc}"})))
            return
        near, far = futures_quote(snap, "near"), futures_quote(snap, "far")
        day, hi, lo = self._session_range or (None, snap.spot, snap.spot)
        if day != at.date():
            hi = lo = snap.spot
        hi, lo = max(hi, snap.spot), min(lo, snap.spot)
        self._session_range = (at.date(), hi, lo)
        surface = None
        try:
            # one IV solve per snapshot, shared with the market view (and the monitor's)
            surface = compute_surface(snap, spot_high=hi, spot_low=lo,
                                      expiries=snapshot_views.analysis(snap))
            surface = with_chain(surface, snap)  # + payload["chain"] (the dashboard's Chain page)
        except (ValueError, ArithmeticError) as exc:
            logger.warning("IV surface skipped at %s: %s", at, exc)
        result = self._decide(snap, at, surface, hi - lo)
        rejections: dict[str, Any] = dict(result.rejections)
        entries = result.entries
        refusal = self._calendar_refusal(at)
        if refusal is not None:  # unknown exchange calendar: no entries; exits still go out
            rejections["calendar"] = refusal
            entries = ()
        funnel = {"cycles": 1, "signals": len(result.entries)}
        if len(entries) < len(result.entries):
            funnel["denied"] = len(result.entries) - len(entries)
        try:
            # one transaction in pipeline mode: two round trips (the writes up to the IV sample
            # with the commit record's answer, then the rest with the commit) instead of one
            # per statement; a kill or error anywhere before the commit leaves none of them
            with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
                # the row is the cycle's commit record: when it exists already, this cycle was
                # applied before a restart and nothing of it is written or sent again
                battle = conn.execute(
                    "INSERT INTO strategy_battle_log (created_at, trade_date, spot, iv,"
                    " realized_range, near_straddle, selected_strategy, eligibility, rejections,"
                    " payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (created_at) DO NOTHING RETURNING id",
                    (at, at.date(), price_decimal(snap.spot),
                     iv_percent(surface.near_atm_iv if surface else None),
                     decimal_or_none(surface.realized_range if surface else None, 2),
                     decimal_or_none(surface.near_straddle if surface else None, 2),
                     result.selected_strategy if entries else None,
                     Jsonb(dict(result.eligibility)),
                     Jsonb(rejections),
                     Jsonb(_jsonable({"metrics": result.metrics,
                                      "entry_tags": [e.tag for e in result.entries],
                                      "exit_tags": [x.tag for x in result.exits]}))))
                if surface is not None:  # its answer is read with the battle log's (one trip)
                    record_iv_snapshot(conn, surface)
                row = battle.fetchone()
                if row is None:  # the IV sample above goes with the rollback
                    raise _AlreadyApplied
                sampled = (self._sample_spread(conn, at, near, far)
                           if near is not None and far is not None else None)
                self._futures_cache(conn, near, far, snap.lot_size)
                trades_repo.bump_funnel(conn, at.date(), funnel)
        except _AlreadyApplied:
            logger.warning("scan %s was already applied (replayed after a restart): skipped", at)
            return
        if sampled is not None:  # committed: the in-memory window follows the table
            self._history, self._pair = sampled
        logger.debug("scan %s battle_log=%s %s", at, row["id"], rejections)
        for exit_ in result.exits:
            self.send("executor", self.new(ClosePosition, tag=exit_.tag, reason=exit_.reason))
        for entry in entries:
            self.send("risk", self.new(OpenPosition, strategy=entry.strategy, tag=entry.tag,
                                       legs=entry.legs, reason=entry.reason, reply_to=self.name,
                                       params={"direction": entry.direction, **entry.context},
                                       entry_context=self._entry_context(entry, result)))

    def _entry_context(self, entry, result: CycleResult) -> dict[str, Any]:
        """The journal's entry half (engine.execution.journal.entry_context); {} on failure
        (a journal detail must never stop an entry)."""
        view = self._view
        try:
            return journal.entry_context(
                view, strategy=entry.strategy, legs=entry.legs, reason=entry.reason,
                context=entry.context, decisions=result.decisions,
                events=self._events)
        except Exception:
            logger.exception("journal entry context of %s not captured", entry.tag)
            return {}

    def _decide(self, snap, at: datetime, surface, session_range: float) -> CycleResult:
        """Every registered strategy on this cycle's input (engine.strategies.cycle)."""
        calendar = self._calendar
        calendar = calendar.current() if hasattr(calendar, "current") else calendar
        calendar = calendar or NseCalendar()
        view = None
        try:
            view = snapshot_views.view(snap, calendar, events=self._market_events(at),
                                       realized_range=session_range)
        except (ValueError, ArithmeticError, KeyError) as exc:
            logger.warning("market view skipped at %s: %s", at, exc)
        self._view = view
        trades = list(self._open.values())
        inp = strategy_input(snap, at, self._history, trades, None)
        hints = scan_hints(self._pool, self._settings, at)  # AI predictions (off by default)
        extra = {"daily_closes": self._daily_closes(at),
                 "surface_near_atm_iv": surface.near_atm_iv if surface else None}
        if hints.enabled:
            extra["ai_hints"] = hints.to_json()
        inp = replace(inp, market=view, slots=strategy_slots(trades, self._settings),
                      extra=extra)
        values = self._settings.snapshot(self._param_keys)
        values["_calendar"] = calendar
        params = {spec.name: values for spec in specs()}
        self._events = input_events(inp)
        paused = {spec.name: self._paused_reason(at, spec.name) or hints.blocks.get(spec.name)
                  for spec in specs()}
        return run_cycle(inp, params, paused=paused)

    def _market_events(self, at: datetime) -> tuple[Any, ...]:
        """``market_events`` from a week back to a month ahead (what the event guard reads),
        read again every EVENTS_REFRESH of engine time (so ``make fetch-events`` takes
        effect within it). A failed read keeps the last events (never silently none)."""
        cached = self._event_cache
        if cached is not None and cached[0].date() == at.date() and at - cached[0] < EVENTS_REFRESH:
            return cached[1]
        day = at.date()
        try:
            events = events_between(self._pool, day - timedelta(days=7), day + timedelta(days=30))
        except Exception as exc:
            logger.warning("market events not read (%s: %s); the guard keeps the last ones",
                           type(exc).__name__, exc)
            return cached[1] if cached is not None else ()
        self._event_cache = (at, events)
        return events

    def _daily_closes(self, at: datetime) -> tuple[float, ...]:
        """The closes of the sessions before today (for realized volatility), cached a day."""
        day = at.date()
        if self._closes is not None and self._closes[0] == day:
            return self._closes[1]
        closes: tuple[float, ...] = ()
        source = getattr(self._market, "daily_closes", None)
        if source is not None:
            try:
                closes = tuple(source(DAILY_CLOSES))
            except Exception as exc:  # a data gap must not stop the scan
                logger.warning("daily closes unavailable (%s); using the battle log's", exc)
        if not closes:
            with self._pool.connection() as conn:
                rows = conn.execute(
                    "SELECT DISTINCT ON (trade_date) trade_date, spot FROM strategy_battle_log"
                    " WHERE trade_date < %s AND spot IS NOT NULL ORDER BY trade_date DESC,"
                    " created_at DESC LIMIT %s", (day, DAILY_CLOSES)).fetchall()
            closes = tuple(float(r["spot"]) for r in reversed(rows))
        self._closes = (day, closes)
        return closes

    def _sample_spread(self, conn, at: datetime, near: FuturesQuote, far: FuturesQuote
                       ) -> tuple[list[Decimal], tuple[Any, Any]]:
        """Write this cycle's spread sample; return the (history, pair) it leads to."""
        history, pair, rolled = next_spread_history(self._history, self._pair, near, far)
        if rolled:
            logger.info("futures rolled %s -> %s: clearing calendar_spread_history", self._pair, pair)
            conn.execute("DELETE FROM calendar_spread_history")
        conn.execute(
            "INSERT INTO calendar_spread_history (sampled_at, near_expiry, far_expiry, near_price,"
            " far_price, spread) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (sampled_at) DO NOTHING",
            (at, near.expiry, far.expiry, near.ltp, far.ltp, history[-1]))
        conn.execute(
            "DELETE FROM calendar_spread_history WHERE id NOT IN (SELECT id FROM"
            " calendar_spread_history ORDER BY sampled_at DESC, id DESC LIMIT %s)", (HISTORY_KEEP,))
        return history, pair

    @staticmethod
    def _futures_cache(conn, near: FuturesQuote | None, far: FuturesQuote | None, lot: int) -> None:
        for leg, q in (("near", near), ("far", far)):
            if q is None:
                continue
            conn.execute(
                "INSERT INTO futures_id_cache (leg, security_id, symbol, expiry, lot_size) VALUES"
                " (%s, %s, 'NIFTY', %s, %s) ON CONFLICT (leg) DO UPDATE SET security_id ="
                " EXCLUDED.security_id, expiry = EXCLUDED.expiry, lot_size = EXCLUDED.lot_size,"
                " refreshed_at = now() WHERE futures_id_cache.expiry <> EXCLUDED.expiry",
                (leg, q.security_id, q.expiry, lot))

    def _record_denial(self, tag: str, reason: str) -> None:
        with transaction(self._pool) as conn:
            conn.execute(
                "UPDATE strategy_battle_log SET rejections = rejections || jsonb_build_object("
                "'risk', %s::text), selected_strategy = NULL WHERE id = (SELECT id FROM"
                " strategy_battle_log WHERE payload->'entry_tags' ? %s ORDER BY id DESC LIMIT 1)",
                (f"{tag}: {reason}", tag))
            trades_repo.bump_funnel(conn, self.clock.now().date(), {"denied": 1})

    def _prune(self, table: str, keep_days: int, at: datetime) -> None:
        with transaction(self._pool) as conn:
            if table == "iv_snapshots":
                n = prune_iv_snapshots(conn, older_than_days=keep_days, now=at)
            elif table == "strategy_battle_log":
                n = conn.execute("DELETE FROM strategy_battle_log WHERE created_at < %s",
                                 (at - timedelta(days=keep_days),)).rowcount
            else:
                logger.error("scanner asked to prune %s, which it does not own", table)
                return
        logger.info("pruned %d rows older than %d days from %s", n, keep_days, table)

