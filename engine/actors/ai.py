"""AiActor: the AI flows of issue 19 (engine/ai). Owns the ai_* tables and ai_llm_calls.

It runs on its own timer (``AiTick`` every ``ai_tick_s`` wall seconds, default 1, told to
itself, not through the directory) and looks at the engine clock to see what is due:

* always (no LLM needed), in market hours: a SentimentService sample every
  ``AI_SENTIMENT_EVERY_MIN`` (flow 4); with ``AI_EXIT_OVERLAY_ENABLED``, the breakout-risk and
  sentiment-risk exit overlays once per engine minute over the open trades (flow 3: one
  ai_exit_advisories row per event, an alert, and with ``AI_EXIT_OVERLAY_MODE=AUTO_CLOSE`` a
  ClosePosition to the executor);
* with the LLM port configured: the daily AI_MARKET analysis at ``AI_MARKET_RUN_TIME`` and on
  ``RerunAiMarket`` (flow 1), whose valid trade idea goes to the RiskActor as an AI_MARKET
  ``OpenPosition`` (the normal path: risk, then the executor in the strategy's go-live stage)
  and is mirrored in ai_market_trades, its target / stop / time exit sent by this actor;
  market_view and breakout_risk predictions every ``AI_PREDICT_EVERY_MIN`` up to the daily
  cap (flow 2); after the close, the day's journal debriefs within the token budget.

LLM calls run in one worker thread (a slow model never blocks this actor, so the supervisor
never sees it stuck); results come back as ``AiAnalysed``. Every step is guarded: an AI
failure is logged and never crashes the actor, pauses entries or touches other actors'
state. Without the LLM port it sends nothing to any actor unless the exit overlay is on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pykka

from engine.actors.base import SupervisedActor
from engine.ai import market_flow, store
from engine.ai.brief import build_brief
from engine.ai.debrief import debrief_day
from engine.ai.llm import llm_from_env
from engine.ai.messages import AiAnalysed, AiTick, RerunAiMarket
from engine.ai.overlay import AUTO_CLOSE, overlay_decisions
from engine.ai.runner import run_analysis, run_prediction
from engine.ai.sentiment import inputs_from_view, score_sentiment
from engine.ai.verdict import MarketVerdict
from engine.events.store import events_between
from engine.execution import repository as trades_repo
from engine.market.calendar import NseCalendar
from engine.messages.commands import ClosePosition, OpenPosition
from engine.messages.events import (
    AlertRaised,
    EntryDenied,
    OrderRejected,
    PositionClosed,
    PositionOpened,
)
from engine.strategies.market_view import MarketView, build_market_view
from engine.timeutil import IST

__all__ = ["AiActor"]

logger = logging.getLogger(__name__)

STRATEGY = market_flow.STRATEGY
TASKS = ("market_view", "breakout_risk")
CLOSE_RESEND = timedelta(minutes=1)
OVERLAY_KEYS = ("AI_EXIT_OVERLAY_ENABLED", "AI_EXIT_OVERLAY_MODE", "AI_EXIT_MIN_CONFIDENCE",
                "AI_SHORT_GAMMA_STRATEGIES", "AI_SENTIMENT_EXIT_SCORE", "AI_SENTIMENT_MIN_COVERAGE")


def _hhmm(text: str) -> time:
    return time.fromisoformat(str(text))


class AiActor(SupervisedActor):
    def setup(self) -> None:
        self._ready = False
        self._halt = threading.Event()
        self._worker: ThreadPoolExecutor | None = None
        try:
            self._setup()
        except Exception:  # an AI problem must never fail the engine's start
            logger.exception("AI actor not started (the engine runs without the AI flows)")

    def _setup(self) -> None:
        s = self.ctx.services
        self._pool = s["pool"]
        self._settings = s["settings"]
        self._market = s["market"]
        self._calendar = s.get("calendar")
        self._llm = s["llm"] if "llm" in s else llm_from_env(self._settings)
        self._inflight: set[str] = set()
        self._last_sentiment: datetime | None = None
        self._last_predict: dict[str, datetime] = {}
        self._analysed_day: date | None = None
        self._debriefed_day: date | None = None
        self._overlay_minute: datetime | None = None
        self._pending: dict[str, int] = {}                  # intent tag -> analysis id
        self._exits: dict[str, tuple[str, Decimal, Decimal]] = {}  # tag -> (sid, target, stop)
        self._closing: dict[str, datetime] = {}
        self._verdicts: dict[int, MarketVerdict | None] = {}  # written by the worker
        latest = store.latest_sentiment(self._pool, self.clock.now().astimezone(IST).date())
        if latest is not None:
            self._last_sentiment = latest["created_at"].astimezone(IST)
        if self._llm is not None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="ai-llm")
            for event in (PositionOpened, PositionClosed, EntryDenied, OrderRejected):
                self.ctx.directory.subscribe(event, self.name)
            logger.info("AI flows on: LLM %s (model %s)", self._llm.config.base_url,
                        self._llm.model)
            self._sync_mirror()
        else:
            logger.info("AI flows: LLM port off (LLM_BASE_URL / LLM_MODEL unset): sentiment only")
        self._ready = True
        period = float(s.get("ai_tick_s", 1.0))
        threading.Thread(target=self._timer, args=(period, self.actor_ref), name="ai-timer",
                         daemon=True).start()

    def on_stop(self) -> None:
        self._halt.set()
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)

    def _timer(self, period: float, ref: pykka.ActorRef[Any]) -> None:
        while not self._halt.wait(period):
            try:
                ref.tell(AiTick(ts=self.clock.now(), message_id=self.ctx.ids.next_id("ai-timer")))
            except pykka.ActorDeadError:
                return

    # ------------------------------------------------------------------ messages
    def handle(self, message: Any) -> Any:
        if not self._ready:
            return None
        try:
            self._handle(message)
        except Exception:
            logger.exception("AI actor: %s failed (ignored; the AI flows go on)",
                             type(message).__name__)
        return None

    def _handle(self, message: Any) -> None:
        match message:
            case AiTick():
                self._tick(self.clock.now().astimezone(IST))
            case RerunAiMarket(requested_by=who):
                logger.warning("AI_MARKET analysis re-run requested by %s", who)
                self._start_analysis("rerun", self.clock.now().astimezone(IST))
            case AiAnalysed(analysis_id=aid, tradable=True):
                self._trade(aid)
            case AiAnalysed():
                pass
            case PositionOpened(strategy=s, tag=tag) if s == STRATEGY:
                self._pending.pop(tag, None)
                self._sync_mirror()
            case PositionClosed(strategy=s, tag=tag) if s == STRATEGY:
                self._exits.pop(tag, None)
                self._closing.pop(tag, None)
                self._sync_mirror()
            case EntryDenied(tag=tag, reason=why) | OrderRejected(tag=tag, reason=why) \
                    if tag in self._pending:
                aid = self._pending.pop(tag)
                store.set_analysis_status(self._pool, aid, f"not opened: {why}")
            case PositionOpened() | PositionClosed() | EntryDenied() | OrderRejected():
                pass  # other strategies' trades
            case _:
                logger.warning("AI actor: unexpected message, dropped: %s", type(message).__name__)

    # ------------------------------------------------------------------ the timer's work
    def _cal(self) -> NseCalendar:
        cal = self._calendar
        cal = cal.current() if hasattr(cal, "current") else cal
        return cal if isinstance(cal, NseCalendar) else NseCalendar()

    def _guard(self, what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:
            logger.exception("AI %s failed (skipped this time)", what)

    def _tick(self, now: datetime) -> None:
        cal = self._cal()
        if not cal.is_market_open(now):
            if self._llm is not None and cal.is_trading_day(now.date()) \
                    and now >= cal.session_close(now.date()) + timedelta(minutes=10):
                self._guard("debriefs", lambda: self._debriefs(now))
            return
        self._guard("sentiment", lambda: self._sentiment(now))
        self._guard("AI_MARKET exits", lambda: self._ai_exits(now))
        self._guard("exit overlay", lambda: self._overlay(now))
        if self._llm is None:
            return
        self._guard("AI_MARKET analysis", lambda: self._maybe_analysis(now))
        self._guard("predictions", lambda: self._maybe_predictions(now))

    def _view(self, now: datetime) -> MarketView:
        day = now.date()
        events = events_between(self._pool, day, day)
        with self._pool.connection() as conn:
            row = conn.execute("SELECT max(spot) - min(spot) AS r FROM strategy_battle_log"
                               " WHERE trade_date = %s AND spot IS NOT NULL", (day,)).fetchone()
        rng = float(row["r"]) if row and row["r"] is not None else None
        return build_market_view(self._market.snapshot(), self._cal(), events=events,
                                 realized_range=rng)

    def _prev_close_and_open(self, day: date) -> tuple[Decimal | None, Decimal | None]:
        prev = None
        source = getattr(self._market, "daily_closes", None)
        if source is not None:
            with contextlib.suppress(Exception):
                closes = tuple(source(1))
                prev = Decimal(repr(float(closes[-1]))).quantize(Decimal("0.01")) if closes else None
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT (SELECT spot FROM strategy_battle_log WHERE trade_date < %s AND spot IS"
                " NOT NULL ORDER BY created_at DESC LIMIT 1) AS prev, (SELECT spot FROM"
                " strategy_battle_log WHERE trade_date = %s AND spot IS NOT NULL ORDER BY"
                " created_at LIMIT 1) AS open", (day, day)).fetchone()
        return prev if prev is not None else row["prev"], row["open"]

    # flow 4 ------------------------------------------------------------------------------
    def _sentiment(self, now: datetime) -> None:
        every = timedelta(minutes=int(self._settings.get("AI_SENTIMENT_EVERY_MIN")))
        if self._last_sentiment is not None and self._last_sentiment.date() == now.date() \
                and now - self._last_sentiment < every:
            return
        self._last_sentiment = now
        day = now.date()
        first = store.first_sentiment(self._pool, day)
        reference = (first["components"] or {}).get("_inputs") if first else None
        prev_close, _open = self._prev_close_and_open(day)
        result = score_sentiment(inputs_from_view(self._view(now), prev_close=prev_close,
                                                  reference=reference))
        store.insert_sentiment(self._pool, day=day, at=now, sentiment=result)

    # flow 3 + sentiment risk -------------------------------------------------------------
    def _overlay(self, now: datetime) -> None:
        minute = now.replace(second=0, microsecond=0)
        if minute == self._overlay_minute:
            return
        self._overlay_minute = minute
        settings = self._settings.snapshot(list(OVERLAY_KEYS))
        if not settings["AI_EXIT_OVERLAY_ENABLED"]:
            return
        trades = trades_repo.load_open(self._pool)
        if not trades:
            return
        day = now.date()
        decisions = overlay_decisions(store.predictions_of_day(self._pool, day),
                                      store.latest_sentiment(self._pool, day),
                                      trades.values(), settings, now)
        for trade, d in decisions:
            if not store.insert_advisory(self._pool, day=day, tag=trade.tag, strategy=trade.strategy,
                                         reason=d.reason, confidence=d.confidence_pct,
                                         action=d.action, at=now):
                continue  # this event was recorded (and acted on) already
            what = "closing it" if d.action == AUTO_CLOSE else "advisory only, not closed"
            self.publish(self.new(AlertRaised, source="ai", text=f"{d.text}: {what}"))
            if d.action == AUTO_CLOSE:
                self.send("executor", self.new(ClosePosition, tag=trade.tag, reason=d.text))

    # flow 1 ------------------------------------------------------------------------------
    def _maybe_analysis(self, now: datetime) -> None:
        if self._analysed_day == now.date() or not self._settings.get("AI_MARKET_ENABLED"):
            return
        if now.time() < _hhmm(self._settings.get("AI_MARKET_RUN_TIME")):
            return
        self._analysed_day = now.date()
        if store.analyses_of_day(self._pool, now.date(), "scheduled"):
            return  # ran before a restart
        self._start_analysis("scheduled", now)

    def _start_analysis(self, trigger: str, now: datetime) -> None:
        if self._llm is None or self._worker is None:
            self.publish(self.new(AlertRaised, source="ai", text=(
                "AI_MARKET analysis not run: the LLM port is not configured (LLM_BASE_URL, "
                "LLM_MODEL)")))
            return
        if "ai_market" in self._inflight:
            logger.info("AI_MARKET analysis already running: %s request ignored", trigger)
            return
        day = now.date()
        prev_close, day_open = self._prev_close_and_open(day)
        latest = store.latest_sentiment(self._pool, day)
        brief = build_brief(self._view(now), prev_close=prev_close, day_open=day_open,
                            sentiment={k: str(latest[k]) for k in ("score", "label",
                                                                   "coverage_pct")}
                            if latest else None)
        self._inflight.add("ai_market")
        self._submit("ai_market", lambda: self._analysis_job(brief, trigger, now))

    def _analysis_job(self, brief: dict[str, Any], trigger: str, now: datetime) -> None:
        aid, verdict = run_analysis(self._pool, self._llm, brief, trigger=trigger, now=now)
        self._verdicts[aid] = verdict
        self.actor_ref.tell(AiAnalysed(ts=self.clock.now(), message_id=self.ctx.ids.next_id(
            "ai-worker"), analysis_id=aid, tradable=verdict is not None))

    def _trade(self, analysis_id: int) -> None:
        verdict = self._verdicts.pop(analysis_id, None)
        if verdict is None:
            return
        now = self.clock.now().astimezone(IST)
        exit_at = _hhmm(self._settings.get("AI_MARKET_EXIT_TIME"))
        if now.time() >= exit_at:
            store.set_analysis_status(self._pool, analysis_id,
                                      f"not traded: after AI_MARKET_EXIT_TIME {exit_at:%H:%M}")
            return
        plan = market_flow.plan_trade(
            verdict, self._view(now), min_confidence=int(self._settings.get(
                "AI_MARKET_MIN_CONFIDENCE")), lots=int(self._settings.get("AI_MARKET_LOTS")),
            now=now, analysis_id=analysis_id)
        if isinstance(plan, str):
            store.set_analysis_status(self._pool, analysis_id, f"not traded: {plan}")
            return
        store.insert_ai_trade(self._pool, analysis_id=analysis_id, day=now.date(), tag=plan.tag,
                              strike=plan.strike, option_type=plan.option_type)
        self._pending[plan.tag] = analysis_id
        reason = (f"AI_MARKET {verdict.verdict} {verdict.confidence_pct} %: buy {plan.expiry}"
                  f" {plan.strike} {plan.option_type} (analysis #{analysis_id})")
        sent = self.send("risk", self.new(
            OpenPosition, strategy=STRATEGY, tag=plan.tag, legs=(plan.leg,), reason=reason,
            reply_to=self.name, params={
                "direction": f"LONG_{plan.option_type}", "spot": str(plan.spot),
                "ai_analysis_id": analysis_id, "target_pct": str(plan.target_pct),
                "stop_pct": str(plan.stop_pct), "planned_exit": datetime.combine(
                    now.date(), exit_at, tzinfo=IST).isoformat()}))
        store.set_analysis_status(self._pool, analysis_id, f"sent {plan.tag} to risk" if sent
                                  else "not traded: the risk actor is not running")

    def _sync_mirror(self) -> None:
        """ai_market_trades follows open_trades / closed_trades (the executor's records)."""
        rows = store.open_ai_trades(self._pool)
        if not rows:
            return
        open_trades = trades_repo.load_open(self._pool)
        for row in rows:
            tag = row["open_tag"]
            trade = open_trades.get(tag)
            if trade is not None:
                ctx = trade.context or {}
                entry = trade.legs[0].entry_price
                target, stop = market_flow.levels(entry, Decimal(str(ctx.get("target_pct", 50))),
                                                  Decimal(str(ctx.get("stop_pct", 30))))
                if row["entry_price"] is None:
                    store.set_ai_trade_entry(self._pool, tag, entry=entry, target=target, stop=stop)
                    store.set_analysis_status(self._pool, row["analysis_id"],
                                              f"opened {tag} ({trade.mode}) at {entry}")
                self._exits[tag] = (trade.legs[0].leg.security_id, target, stop)
                continue
            with self._pool.connection() as conn:
                closed = conn.execute("SELECT exit_price, realized_pnl, closed_at FROM"
                                      " closed_trades WHERE tag = %s ORDER BY id DESC LIMIT 1",
                                      (tag,)).fetchone()
            if closed is not None:
                store.close_ai_trade(self._pool, tag, exit_price=closed["exit_price"],
                                     realized_pnl=closed["realized_pnl"],
                                     closed_at=closed["closed_at"])
                store.set_analysis_status(self._pool, row["analysis_id"],
                                          f"closed {tag}: P&L ₹{closed['realized_pnl']}")

    def _ai_exits(self, now: datetime) -> None:
        if not self._exits:
            return
        exit_at = _hhmm(self._settings.get("AI_MARKET_EXIT_TIME"))
        for tag, (sid, target, stop) in list(self._exits.items()):
            sent = self._closing.get(tag)
            if sent is not None and now - sent < CLOSE_RESEND:
                continue
            try:
                bid = self._market.quote(sid).bid
            except Exception:
                bid = None
            reason = market_flow.exit_due(bid=bid, target=target, stop=stop, now=now,
                                          exit_time=exit_at)
            if reason is not None:
                self._closing[tag] = now
                self.send("executor", self.new(ClosePosition, tag=tag, reason=reason))

    # flow 2 ------------------------------------------------------------------------------
    def _maybe_predictions(self, now: datetime) -> None:
        every = timedelta(minutes=int(self._settings.get("AI_PREDICT_EVERY_MIN")))
        cap = int(self._settings.get("AI_PREDICT_DAILY_RUN_CAP"))
        for task in TASKS:
            last = self._last_predict.get(task)
            if task in self._inflight or (last is not None and last.date() == now.date()
                                          and now - last < every):
                continue
            self._last_predict[task] = now
            if store.count_predictions(self._pool, now.date(), task) >= cap:
                continue
            prev_close, day_open = self._prev_close_and_open(now.date())
            brief = build_brief(self._view(now), prev_close=prev_close, day_open=day_open)
            self._inflight.add(task)
            self._submit(task, lambda t=task, b=brief: run_prediction(
                self._pool, self._llm, t, b, cap=cap, now=now))

    # journal -----------------------------------------------------------------------------
    def _debriefs(self, now: datetime) -> None:
        if self._debriefed_day == now.date() or "debrief" in self._inflight:
            return
        self._debriefed_day = now.date()
        budget = int(self._settings.get("AI_DEBRIEF_DAILY_TOKEN_BUDGET"))
        self._inflight.add("debrief")
        self._submit("debrief", lambda: debrief_day(self._pool, self._llm, now.date(),
                                                    budget=budget))

    def _submit(self, kind: str, job: Callable[[], Any]) -> None:
        assert self._worker is not None

        def run() -> None:
            try:
                job()
            except Exception:
                logger.exception("AI %s job failed", kind)
            finally:
                self._inflight.discard(kind)

        try:
            self._worker.submit(run)
        except RuntimeError:  # shutting down
            self._inflight.discard(kind)
