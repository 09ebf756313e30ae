"""RiskActor: owns risk_envelope_state, risk_envelope_stages and runtime_state 'strategy_slots'.

Every entry intent passes through here: forwarded to the executor, or denied with a reason
(EntryDenied, which the scanner writes into the battle log).

The envelope is kept **per go-live stage** (paper losses never pause live trading) and its
counters are **derived from closed_trades**, the executor's record: on every start, and
whenever the number of closes changed (checked after every PositionClosed and before every
intent). Each new close is applied once, in close order, to decide the cap pauses, so a lost
event, a crash between the close and this actor, or a database restart can delay an update
but never lose one. Pauses survive restarts: a stage's cap pause in its own row, the global
pause (operator, supervisor, trades on hold, token) in the singleton.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from engine.actors.base import SupervisedActor
from engine.execution import recon_heal
from engine.execution import repository as trades_repo
from engine.execution.intents import blocking_intent
from engine.market.calendar import NseCalendar
from engine.messages.commands import EndOfDayTick, OpenPosition, PauseEntries, ResumeEntries
from engine.messages.events import (
    AlertRaised,
    EntryDenied,
    OrderRejected,
    PositionClosed,
    PositionOpened,
    RiskPaused,
    RiskResumed,
)
from engine.risk import repository
from engine.risk.envelope import (
    STAGES,
    ZERO,
    EnvelopeState,
    after_close,
    counters,
    derive,
    entry_denial,
)
from engine.risk.margin import entry_margin, margin_denial, open_margin
from engine.settings import SettingError, all_knobs
from engine.store.tx import transaction
from engine.strategies import registry
from engine.strategies.slots import strategy_slots
from engine.timeutil import IST, MARKET_CLOSE

logger = logging.getLogger(__name__)

PENDING_TTL = timedelta(minutes=5)
#: After the broker refuses a strategy's entry, its next entries wait 1, 2, 4, ... minutes
#: (at most REFUSAL_BACKOFF_MAX); the first refusal of each distinct reason is alerted.
REFUSAL_BACKOFF_MAX = timedelta(minutes=32)
LIMIT_KEYS = [k.key for k in all_knobs() if k.key.startswith("RISK_")]


class RiskActor(SupervisedActor):
    def setup(self) -> None:
        self._pool = self.ctx.services["pool"]
        self._settings = self.ctx.services["settings"]
        self._global: EnvelopeState = repository.load(self._pool)
        stored = repository.load_stages(self._pool)
        self._stages: dict[str, EnvelopeState] = {s: st for s, (st, _) in stored.items()}
        self._seen: dict[str, int] = {s: n for s, (_, n) in stored.items()}
        # approved intents not yet confirmed by PositionOpened/OrderRejected: tag -> (when, stage)
        self._pending: dict[str, tuple[datetime, str]] = {}
        # strategy -> (refusals in a row, last reason, no entry before)
        self._refused: dict[str, tuple[int, str, datetime]] = {}
        # margin of the admitted intents still in _pending: tag -> rupees
        self._pending_margin: dict[str, Decimal] = {}
        self._calendar = self.ctx.services.get("calendar")
        self._market = self.ctx.services.get("market")
        self._live_margin = self.ctx.services.get("margin_calculator")
        self._refresh(verify=True)
        # open positions are always read from open_trades (the executor's table), never kept here
        trades = trades_repo.load_open(self._pool)
        held = sorted(t.tag for t in trades.values() if t.hold)
        if held and self._global.pause_reason is None:
            # the executor may have put a trade on hold before this actor was running
            self._set_pause(f"executor: trades on hold {held}; check the broker")
        self._save_slots(trades)

    def handle(self, message: Any) -> Any:
        match message:
            case OpenPosition():
                self._on_intent(message)
            case PositionOpened(tag=tag, strategy=strategy):
                self._pending.pop(tag, None)
                self._refused.pop(strategy, None)
                self._save_slots()
            case PositionClosed(tag=tag):
                self._pending.pop(tag, None)
                self._refresh()  # the event is only a trigger: the counters come from the records
                self._save_slots()
            case OrderRejected(tag=tag, strategy=strategy, reason=why):
                if self._pending.pop(tag, None) is not None:  # an entry this actor admitted
                    self._entry_refused(strategy, why)
            case PauseEntries(reason=reason, source=source):
                self._set_pause(f"{source}: {reason}")
            case ResumeEntries(reason=reason):
                self._resume(reason)
            case EndOfDayTick():
                self._pending.clear()
                self._pending_margin.clear()
            case _:
                return super().handle(message)
        return None

    def _limits(self) -> dict[str, Any]:
        return self._settings.snapshot(LIMIT_KEYS)

    # ------------------------------------------------------------------ derived counters
    def _refresh(self, *, verify: bool = False) -> None:
        """Bring every stage envelope in line with closed_trades; apply new closes once."""
        with self._pool.connection() as conn:
            counts = repository.close_counts(conn)
            if not verify and all(counts.get(s, 0) == self._seen.get(s, 0) for s in STAGES):
                return
            closes = repository.load_closes(conn)
        limits = self._limits()
        now = self.clock.now()
        paused_now: list[tuple[str, EnvelopeState]] = []
        for stage in STAGES:
            rows = [c for m, c in closes if m == stage]
            stored, seen = self._stages[stage], min(self._seen.get(stage, 0), len(rows))
            truth = derive(rows, stored)
            state = derive(rows[:seen], stored)  # what the stored row should say
            if verify and counters(state) != counters(stored):
                logger.warning("risk envelope %s did not match closed_trades (%s closes); rebuilt"
                               " from the records", stage, seen)
            before = state.paused(now)
            for close in rows[seen:]:  # each close not yet applied, once, in close order
                state = after_close(state, close.realized_pnl, _close_time(close, now), limits,
                                    trade_date=close.trade_date)
            final = replace(truth, pause_reason=state.pause_reason, paused_until=state.paused_until)
            after = final.paused(now)
            if after and after != before:
                paused_now.append((stage, final))
            self._stages[stage], self._seen[stage] = final, len(rows)
        self._global = repository.all_stages(closes, self._global)
        self._persist()
        for stage, state in paused_now:
            reason = state.paused(now)
            logger.warning("risk envelope paused %s entries: %s", stage, reason)
            self.publish(self.new(RiskPaused, reason=f"{stage}: {reason}",
                                  paused_until=state.paused_until, stage=stage))

    # ------------------------------------------------------------------ intents
    def _on_intent(self, intent: OpenPosition) -> None:
        now = self.clock.now()
        self._refresh()  # a close whose event was lost still counts before this entry
        stage = trades_repo.trading_stage(self._pool, intent.strategy)
        # count from open_trades (the source of truth) so a lost event cannot over-admit
        trades = trades_repo.load_open(self._pool)
        open_tags = set(trades)
        # an intent lost with a crashed executor must not hold a slot for the rest of the day
        self._pending = {tag: (at, st) for tag, (at, st) in self._pending.items()
                         if tag not in open_tags and now - at < PENDING_TTL}
        in_stage = [t for t in trades.values() if t.mode == stage]
        occupied = len(in_stage) + sum(1 for _, st in self._pending.values() if st == stage)
        open_mtm = sum((t.mtm for t in in_stage if t.mtm is not None), ZERO)
        reason: str | None = None
        refused = self._refused.get(intent.strategy)
        if refused is not None and now < refused[2]:
            reason = (f"the broker refused the last {refused[0]} entr"
                      f"{'y' if refused[0] == 1 else 'ies'} of {intent.strategy} ({refused[1]}); "
                      f"next try after {refused[2].astimezone(IST):%H:%M} IST")
        if reason is None and self._global.paused(now):
            reason = f"entries paused: {self._global.paused(now)}"
        if reason is None:  # an order in doubt at the broker blocks every new entry
            with self._pool.connection() as conn:
                doubt = blocking_intent(conn)
            if doubt is not None:
                what = ("unresolved" if doubt["state"] == "unresolved"
                        else f"{doubt['state']}, not yet booked")
                reason = (f"order {doubt['correlation_id']} ({doubt['purpose']} of "
                          f"{doubt['trade_tag']}: {doubt['side']} {doubt['quantity']} of security"
                          f" {doubt['security_id']}) is {what}: no new entry until it is resolved")
        if reason is None:  # BROKER=dhan: not before the start-up reconciliation (recon_heal)
            reason = recon_heal.startup_block(self.ctx.services, stage)
        if reason is None:
            denial = entry_denial(self._stages[stage], now, occupied, self._limits(),
                                  open_mtm=Decimal(open_mtm))
            reason = f"{denial} [{stage}]" if denial else None
        if reason is None and (intent.tag in open_tags or intent.tag in self._pending):
            reason = f"tag {intent.tag} is already open"
        margin: Decimal | None = None
        if reason is None:  # last: it may ask the broker
            reason, intent, margin = self._margin_check(intent, stage, in_stage, now)
        if reason is not None:
            logger.info("entry %s denied: %s", intent.tag, reason)
            self.publish(self.reply(EntryDenied, intent, strategy=intent.strategy, tag=intent.tag,
                                    reason=reason))
            return
        if not self.send("executor", intent):
            self.publish(self.reply(EntryDenied, intent, strategy=intent.strategy, tag=intent.tag,
                                    reason="executor unavailable (restarting); entry dropped"))
            return
        self._pending[intent.tag] = (now, stage)
        if margin is not None:
            self._pending_margin[intent.tag] = margin

    # ------------------------------------------------------------------ margin
    def _margin_check(self, intent: OpenPosition, stage: str, in_stage: list, now: datetime
                      ) -> tuple[str | None, OpenPosition, Decimal | None]:
        """(denial or None, the intent carrying its margin in ``params["margin"]``, margin).

        Live: Dhan's multi-order calculator (service ``margin_calculator``), falling back to
        the approximation with a log line when it fails; paper and shadow: the approximation
        (``engine.risk.margin``). The expiry-day jump is added when the position would still
        be open on its jump day (the strategy's planned exit, max hold or exit DTE).
        """
        calendar = self._current_calendar()
        today = now.astimezone(IST).date()
        try:
            spot = self._spot(intent)
            est, held = entry_margin(intent.legs, spot, now, calendar, **self._exit_plan(intent))
        except Exception as exc:  # no spot, a leg without a price, a bad planned exit
            return (f"margin not estimated ({exc}): entry refused", intent, None)
        record: dict[str, Any] = {"approximation": est.to_json(), "held_into_jump": held}
        total, source = est.total, "approximation"
        if stage == "live" and self._live_margin is not None:
            try:
                live = self._live_margin.basket(intent.legs)
                total, source = live.total + est.expiry_day_extra, "dhan"
                record["dhan"] = live.to_json()
            except Exception as exc:
                logger.warning("Dhan margin calculator failed for %s (%s): using the "
                               "approximation ₹%s", intent.tag, exc, est.total)
                record["dhan_error"] = str(exc)[:200]
        record.update(total=str(total), source=source)
        limits = self._limits()
        self._pending_margin = {t: m for t, m in self._pending_margin.items()
                                if t in self._pending}
        held_margin = open_margin(in_stage, spot, today, calendar)
        held_margin += sum((m for tag, m in self._pending_margin.items()
                            if tag in self._pending and self._pending[tag][1] == stage), ZERO)
        why = margin_denial(total, open_margin=held_margin,
                            capital=Decimal(limits["RISK_CAPITAL_BASE"]),
                            max_pct=Decimal(limits["RISK_MAX_MARGIN_PCT"]),
                            max_total_pct=Decimal(limits["RISK_MAX_TOTAL_MARGIN_PCT"]),
                            source=source)
        if why and est.expiry_day_extra > 0:
            why += f"; it includes the expiry-day jump ₹{est.expiry_day_extra} ({est.jump_day})"
        intent = replace(intent, params={**intent.params, "margin": record})
        return (f"{why} [{stage}]" if why else None), intent, total

    def _current_calendar(self) -> NseCalendar:
        cal = self._calendar
        cal = cal.current() if hasattr(cal, "current") else cal
        return cal if isinstance(cal, NseCalendar) else NseCalendar()

    def _spot(self, intent: OpenPosition) -> Decimal:
        """NIFTY now: the strategy's own (``params["spot"]``), else the market snapshot."""
        raw = intent.params.get("spot")
        if raw is None and self._market is not None:
            raw = self._market.snapshot().spot
        if raw is None:
            raise ValueError("no spot: neither the intent nor a market snapshot has one")
        return Decimal(str(raw))

    def _exit_plan(self, intent: OpenPosition) -> dict[str, Any]:
        """What says when the strategy exits: its planned exit, max hold, exit DTE."""
        plan: dict[str, Any] = {"planned_exit": intent.params.get("planned_exit")}
        with contextlib.suppress(SettingError):  # a strategy without a max hold
            plan["max_hold_minutes"] = int(self._settings.get(
                f"{intent.strategy}_MAX_HOLD_MINUTES"))
        with contextlib.suppress(ValueError):  # not a registered strategy (AI_MARKET, ...)
            plan["exit_dte"] = getattr(registry.get(intent.strategy).module, "EXIT_DTE", None)
        return plan

    def _entry_refused(self, strategy: str, why: str) -> None:
        """Back off a strategy whose entries the broker keeps refusing; alert once per reason."""
        count, last, _ = self._refused.get(strategy, (0, "", self.clock.now()))
        count += 1
        wait = min(timedelta(minutes=2 ** (count - 1)), REFUSAL_BACKOFF_MAX)
        self._refused[strategy] = (count, why, self.clock.now() + wait)
        logger.warning("entry of %s refused (%d in a row): %s; next try in %s", strategy, count,
                       why, wait)
        if _same_reason(why) != _same_reason(last):
            self.publish(self.new(AlertRaised, source="risk", text=(
                f"entries of {strategy} refused by the broker: {why}. The strategy's next "
                "entries wait 1, 2, 4, ... minutes (at most 32); this is alerted once per "
                "reason.")))

    # ------------------------------------------------------------------ pauses
    def _set_pause(self, reason: str) -> None:
        self._global = replace(self._global, pause_reason=reason, paused_until=None)
        self._persist()
        self.publish(self.new(RiskPaused, reason=reason, source="operator"))

    def _resume(self, reason: str) -> None:
        """The operator's resume lifts the global pause and every stage's cap pause."""
        self._global = replace(self._global, pause_reason=None, paused_until=None)
        self._stages = {s: replace(st, pause_reason=None, paused_until=None)
                        for s, st in self._stages.items()}
        self._persist()
        self.publish(self.new(RiskResumed, reason=reason or "resumed"))

    def _persist(self) -> None:
        with transaction(self._pool) as conn:
            repository.save(conn, self._global)
            for stage, state in self._stages.items():
                repository.save_stage(conn, stage, state, self._seen.get(stage, 0))

    def _save_slots(self, trades: dict | None = None) -> None:
        """runtime_state 'strategy_slots', recomputed from open_trades (as the seeds say)."""
        trades = trades_repo.load_open(self._pool) if trades is None else trades
        value: dict[str, Any] = strategy_slots(trades.values(), self._settings)
        value["open_positions"] = len(trades)
        with transaction(self._pool) as conn:
            conn.execute(
                "INSERT INTO runtime_state (key, value, updated_at) VALUES ('strategy_slots', %s,"
                " now()) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                (Jsonb(value),))


def _same_reason(text: str) -> str:
    """A refusal's reason without what changes from order to order (tags, order and
    correlation ids, prices), to alert once per kind of refusal."""
    return re.sub(r"\S*\d{4,}\S*", "#", text)


def _close_time(close, now: datetime) -> datetime:
    """When a close happened, for dating its pause (a close replayed on a later start pauses
    until the end of *its* period, not of the restart's)."""
    if close.closed_at is not None:
        return close.closed_at.astimezone(IST)
    return min(now, datetime.combine(close.trade_date, MARKET_CLOSE, IST))


__all__ = ["RiskActor"]
