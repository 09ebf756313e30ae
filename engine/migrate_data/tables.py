"""How each legacy table maps into the PostgreSQL schema (schema/001_initial_schema.sql).

Legacy sources (the old bot's ``arb_bot_records.sqlite3`` and its JSON files) use the table
names of the seeds and, mostly, the same column names. Differences are absorbed here:

* column aliases (``date`` -> ``trade_date``, ``entry_time`` -> ``opened_at``, ...), and any
  ``<name>_json`` text column maps to ``<name>`` (``payload_json`` -> ``payload``);
* legacy columns without a target column are folded into the row's JSONB payload column when
  the table has one, otherwise reported as ignored;
* a natural key per table, so rows that carry no id (JSON) and rows already present under
  another id are recognised on re-runs.

Policies:
  ``insert``  history rows: insert when neither the id/unique keys nor the natural key exist.
  ``upsert``  keyed state (go-live stage, runtime state, settings, risk envelope): insert, or
              replace the current row when the legacy row is newer (``updated_at``) or the
              current row was never touched (``replace_when``); identical rows are skipped.
Tables are processed in this order (parents before children for the foreign keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMMON_ALIASES: dict[str, str] = {
    "date": "trade_date",
    "day": "trade_date",
    "entry_time": "opened_at",
    "exit_time": "closed_at",
    "qty": "quantity",
    "pnl": "realized_pnl",
    "net_pnl": "realized_pnl",
    "timestamp": "created_at",
    "ts": "created_at",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TableSpec:
    """Mapping of one legacy table onto its PostgreSQL table."""

    name: str
    natural_key: tuple[str, ...] = ()
    policy: str = "insert"
    conflict_key: tuple[str, ...] = ()
    stamp: str | None = None
    replace_when: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)
    payload: str | None = None

    def target_column(self, legacy: str) -> str:
        """Return the target column name for a legacy column name (unchecked)."""
        key = legacy.strip()
        if key in self.aliases:
            return self.aliases[key]
        return COMMON_ALIASES.get(key, key)


SPECS: tuple[TableSpec, ...] = (
    TableSpec(name="open_trades", natural_key=("tag",), payload="payload"),
    TableSpec(name="metrics_days", natural_key=("trade_date",), payload="session_stats"),
    TableSpec(name="executions", payload="payload",
              natural_key=("trade_date", "tag", "security_id", "side", "action", "executed_at"),
              aliases={"time": "executed_at", "created_at": "executed_at",
                       "timestamp": "executed_at", "ts": "executed_at",
                       "transaction_type": "side", "leg_security_id": "security_id"}),
    TableSpec(name="closed_trades", natural_key=("trade_date", "tag"), payload="payload",
              aliases={"reason": "exit_reason", "close_reason": "exit_reason",
                       "entry_premium": "entry_price", "exit_premium": "exit_price"}),
    TableSpec(name="go_live_state", policy="upsert", conflict_key=("strategy",),
              stamp="updated_at", replace_when="cur.updated_by = 'seed'",
              aliases={"state": "stage", "mode": "stage", "status": "stage"}),
    TableSpec(name="runtime_state", policy="upsert", conflict_key=("key",), stamp="updated_at"),
    TableSpec(name="risk_envelope_state", policy="upsert", conflict_key=("id",),
              stamp="updated_at",
              replace_when=("(cur.last_close_date IS NULL AND cur.lifetime_pnl = 0"
                            " AND cur.loss_streak = 0 AND cur.pause_reason IS NULL)")),
    TableSpec(name="ai_market_analysis", natural_key=("trade_date", "called_at"),
              aliases={"created_at": "called_at", "call_time": "called_at",
                       "response": "raw_response", "error": "error_text",
                       "status": "execution_status"}),
    TableSpec(name="ai_market_trades", natural_key=("trade_date", "open_tag"),
              aliases={"tag": "open_tag", "pnl": "realized_pnl"}),
    TableSpec(name="ai_predictions", natural_key=("trade_date", "task", "created_at"),
              payload="payload"),
    TableSpec(name="ai_exit_advisories",
              natural_key=("trade_date", "trade_tag", "reason", "created_at"),
              aliases={"tag": "trade_tag"}),
    TableSpec(name="ai_market_sentiment", natural_key=("created_at",), payload="components"),
    TableSpec(name="nse_holidays", natural_key=("holiday_date",),
              aliases={"date": "holiday_date", "trade_date": "holiday_date",
                       "name": "description"}),
    TableSpec(name="market_events", natural_key=("event_date", "name", "source"),
              payload="payload",
              aliases={"date": "event_date", "time": "event_time", "risk": "risk_level"}),
    TableSpec(name="reconciliation_audit",
              natural_key=("created_at", "action", "trade_tag", "security_id"),
              payload="details", aliases={"tag": "trade_tag", "details_json": "details"}),
    TableSpec(name="strategy_battle_log", natural_key=("created_at",), payload="payload",
              aliases={"selected": "selected_strategy"}),
    TableSpec(name="iv_snapshots", natural_key=("created_at",), payload="payload"),
    TableSpec(name="trade_journal", natural_key=("tag",), payload="trade_payload",
              aliases={"payload": "trade_payload", "payload_json": "trade_payload",
                       "trade_json": "trade_payload", "notes": "operator_notes"}),
    TableSpec(name="calendar_spread_history",
              natural_key=("sampled_at", "near_expiry", "far_expiry"),
              aliases={"created_at": "sampled_at", "timestamp": "sampled_at",
                       "ts": "sampled_at"}),
    TableSpec(name="futures_id_cache", policy="upsert", conflict_key=("leg",),
              stamp="refreshed_at", aliases={"updated_at": "refreshed_at"}),
    TableSpec(name="bot_settings", policy="upsert", conflict_key=("key",), stamp="updated_at"),
    TableSpec(name="settings_audit",
              natural_key=("key", "updated_at", "old_value", "new_value", "updated_by")),
    TableSpec(name="bhavcopy_ohlc",
              natural_key=("trade_date", "symbol", "expiry", "option_type", "strike"),
              aliases={"oi": "open_interest"}),
    TableSpec(name="backtest_grid_jobs",
              natural_key=("strategy", "start_date", "end_date", "created_at"),
              aliases={"id": "job_id"}),
    TableSpec(name="backtest_runs",
              natural_key=("strategy", "start_date", "end_date", "created_at"),
              aliases={"id": "run_id"}),
)

SPEC_BY_NAME: dict[str, TableSpec] = {spec.name: spec for spec in SPECS}

# Legacy columns naming the trading day of a row when it has no explicit one.
DAY_SOURCES: tuple[str, ...] = ("opened_at", "closed_at", "executed_at", "called_at",
                                "created_at", "sampled_at")
