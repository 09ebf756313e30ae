"""OpenAPI 3 description of the JSON API (/docs/openapi.json) and a readable page (/docs)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from web.api import session_token

bp = Blueprint("docs", __name__, url_prefix="/docs")

S = {"type": "string"}
D = {"type": "string", "format": "date"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}
O = {"type": "object"}  # noqa: E741
RANGE = {"from": D, "to": D, "limit": I}

# (method, path, summary, public, query params, body properties, required body fields)
ROUTES: list[tuple[str, str, str, bool, dict, dict, tuple[str, ...]]] = [
    ("get", "/api/health", "Database, engine heartbeat age, token expiry; entries_paused, "
     "paused_by and action_needed (what the operator must do, e.g. after a supervisor "
     "escalation: check the log, then resume entries); 503 if the database is unreachable.",
     True, {}, {}, ()),
    ("post", "/api/auth/login", "Exchange a 6-digit code (authenticator or chat) for a session "
     "cookie; 401 wrong or already used code, 429 locked out. The answer's next is the given "
     "next when it is a dashboard page, else /.", True, {}, {"code": S, "next": S},
     ("code",)),
    ("post", "/api/auth/request-code", "Queue a one-time code for the chat channel(s) (valid 5 "
     "minutes, single use; delivered by the engine's notifier); 202 {status: queued, "
     "request_id}; 409 when no channel is configured.", True, {}, {}, ()),
    ("get", "/api/auth/code-status/{request_id}", "Delivery of a requested chat code: "
     "queued, delivered or failed with the reason (per channel).", True, {}, {}, ()),
    ("get", "/api/auth/session", "Whether logged in; the CSRF token for X-CSRF-Token.", True,
     {}, {}, ()),
    ("post", "/api/auth/logout", "End the session.", False, {}, {}, ()),
    ("get", "/api/auth/nginx-check", "200 with a live session, 401 without (nginx "
     "auth_request).", True, {}, {}, ()),
    ("get", "/api/positions", "Open positions with last MTM.", False, {}, {}, ()),
    ("get", "/api/pnl/today", "Today's realized + unrealized P&L.", False, {}, {}, ()),
    ("get", "/api/pnl/equity", "Cumulative realized P&L per day.", False, RANGE, {}, ()),
    ("get", "/api/trades", "Open or closed trades.", False,
     {"status": {"type": "string", "enum": ["open", "closed"]}, "strategy": S, **RANGE}, {}, ()),
    ("get", "/api/metrics/days", "Daily metrics snapshots.", False, RANGE, {}, ()),
    ("get", "/api/journal", "Trade journal entries.", False, {"strategy": S, **RANGE}, {}, ()),
    ("patch", "/api/journal/{tag}", "Set operator notes.", False, {}, {"notes": S}, ("notes",)),
    ("get", "/api/battle-log", "Latest strategy battle-log rows.", False, {"limit": I}, {}, ()),
    ("get", "/api/iv-snapshots", "IV snapshots (term structure, smile in payload).", False,
     RANGE, {}, ()),
    ("get", "/api/market/chain", "Option chain of the newest recorded sample for one expiry "
     "(CE | strike | PE, LTP, bid/ask, IV, delta, OI and OI change, PCR, max pain, open legs).",
     False, {"expiry": {"type": "string", "format": "date"}}, {}, ()),
    ("get", "/api/market/surface", "Newest IV sample: term structure and near/far smile.", False,
     {}, {}, ()),
    ("get", "/api/market/iv-history", "Near and far ATM IV per scan cycle.", False, RANGE, {}, ()),
    ("get", "/api/market/realized", "Per session: ATM IV vs intraday and close-to-close realized "
     "volatility.", False, RANGE, {}, ()),
    ("get", "/api/market/spread", "Futures calendar spread samples with CAL_ARB's z-score.",
     False, {}, {}, ()),
    ("get", "/api/risk", "Risk envelope state; action_needed when entries are paused.", False,
     {}, {}, ()),
    ("post", "/api/risk/pause", "Pause new entries (engine command).", False, {},
     {"reason": S, "idempotency_key": S}, ("reason",)),
    ("post", "/api/risk/resume", "Resume entries (engine command).", False, {},
     {"idempotency_key": S}, ()),
    ("post", "/api/risk/kill-switch", "Pause entries and arm Dhan's kill switch once the "
     "account is flat (BROKER=dhan; engine command, outcome as an alert); confirm must be "
     "true.", False, {}, {"reason": S, "confirm": B, "idempotency_key": S},
     ("reason", "confirm")),
    ("get", "/api/go-live", "Go-live stage of every strategy.", False, {}, {}, ()),
    ("post", "/api/go-live/{strategy}", "Move a strategy (DC, MDC, IC, AI_MARKET) to "
     "paper/shadow/live/disabled; confirm must be true.", False, {},
     {"stage": {"type": "string", "enum": ["paper", "shadow", "live", "disabled"]},
      "confirm": B, "idempotency_key": S}, ("stage", "confirm")),
    ("post", "/api/commands", "Queue close_trade {tag, mode?: send|record_from_broker, "
     "confirm?} (an open trade; record_from_broker needs confirm: true) or rerun_task {task} "
     "(a task the engine runs; none yet).", False, {},
     {"kind": {"type": "string", "enum": ["close_trade", "rerun_task"]}, "payload": O,
      "idempotency_key": S}, ("kind", "payload")),
    ("get", "/api/orders/unsettled", "Unsettled live order intents (orders in doubt), "
     "unresolved first: correlation id, trade, purpose, leg, side, quantity, filled, state, "
     "reason, age_s, unresolved, terminal and the actions open for each.", False, {}, {}, ()),
    ("post", "/api/orders/{cid}/resolve", "Queue resolve_order: the operator's decision on an "
     "unsettled order after checking the broker. action filled (price: positive, at most 2 "
     "decimals; quantity optional, between the filled units and the order's quantity), "
     "not_filled, or flatten (quantity required; also for a terminal order); confirm must be "
     "true. 404 unknown correlation id; 400 for a sliced leg, a settled order or filled/"
     "not_filled on a terminal one.", False, {},
     {"action": {"type": "string", "enum": ["filled", "not_filled", "flatten"]}, "price": S,
      "quantity": I, "confirm": B, "idempotency_key": S}, ("action", "confirm")),
    ("post", "/api/trades/{tag}/close", "Queue close_trade for an open trade: mode send "
     "(default; sends what the broker still holds for it) or record_from_broker (records it "
     "closed at the broker's trade-book prices, no order sent; confirm must be true).", False,
     {}, {"mode": {"type": "string", "enum": ["send", "record_from_broker"]}, "confirm": B,
          "idempotency_key": S}, ()),
    ("get", "/api/commands", "Recent engine commands.", False, {"limit": I}, {}, ()),
    ("get", "/api/commands/{command_id}", "One command with its status and result.", False,
     {}, {}, ()),
    ("get", "/api/settings", "Every runtime setting with default, override and what is "
     "allowed.", False, {}, {}, ()),
    ("put", "/api/settings/{key}", "Override a setting (audited); 400 with the reason when "
     "refused.", False, {}, {"value": S}, ("value",)),
    ("delete", "/api/settings/{key}", "Remove an override (audited).", False, {}, {}, ()),
    ("get", "/api/settings/{key}/history", "Audit history of one setting.", False,
     {"limit": I}, {}, ()),
    ("get", "/api/reconciliation/log", "Reconciliation audit rows.", False, RANGE, {}, ()),
    ("get", "/api/reconciliation/status", "Start-up reconciliation gate, last check and audit "
     "rows per action over the last days.", False, {"days": I}, {}, ()),
    ("get", "/api/parity", "Daily backtest-vs-live parity report summaries.", False,
     {"limit": I}, {}, ()),
    ("get", "/api/parity/{day}", "The parity reports of one day in full; 404 when none.", False,
     {}, {}, ()),
    ("get", "/api/ai/exit-advisories", "AI exit advisories.", False, RANGE, {}, ()),
    ("get", "/api/events", "Market events, NSE holidays and expiry days.", False, RANGE, {},
     ()),
    ("get", "/api/events/why-blocked", "Why a strategy is not entering now: the latest battle "
     "log, the event guard, the risk envelope and slots; 400 for an unknown strategy.", False,
     {"strategy": S}, {}, ()),
    ("post", "/api/backtest/run", "Start a backtest run; returns run_id. params are runtime "
     "setting overrides, each checked by the settings registry; data bhavcopy (default: the "
     "end-of-day replay of the imported NSE files), sim or snapshots (the intraday replay on the "
     "engine's recorded iv_snapshots, model prices, fill_model close only, no CAL_ARB); fill_model "
     "close (default) or next_close; at least one trading day.", False, {},
     {"strategy": S, "start": D, "end": D, "params": O,
      "data": {"type": "string", "enum": ["bhavcopy", "sim", "snapshots"]},
      "fill_model": {"type": "string", "enum": ["close", "next_close"]}},
     ("strategy", "start", "end")),
    ("get", "/api/backtest/strategies", "What the backtest form offers: each strategy's "
     "parameters (type, default, bounds, choices from the settings registry), whether it runs "
     "on end-of-day data, its declared grid space; the run-wide settings and the limits.",
     False, {}, {}, ()),
    ("get", "/api/backtest/runs", "Past runs with summary metrics (no equity curve) and "
     "progress {done, total, unit, pct, elapsed_s, eta_s} (a failed run keeps where it "
     "stopped).", False, {"limit": I, "strategy": S}, {}, ()),
    ("get", "/api/strategies", "Per registered strategy: go-live stage, today's P&L and trades "
     "at the engine's clock, the why-blocked answer, its latest battle-log row and one status "
     "(disabled, paused, blocked, eligible or waiting).", False, {}, {}, ()),
    ("get", "/api/backtest/runs/{run_id}", "Full trades + metrics of one run.", False, {}, {},
     ()),
    ("post", "/api/backtest/grid-search", "Start a grid search; returns job_id. param_space "
     "maps setting keys to 1-100 distinct values (checked by the settings registry), or "
     "use_defaults takes the strategy's declared space; at most 1000 combinations; ranked by "
     "rank_by (default sharpe, ties by net P&L) among combinations with at least min_trades "
     "trades; oos_fraction re-runs the best out of sample (walk-forward).", False, {},
     {"strategy": S, "start": D, "end": D, "param_space": O, "use_defaults": B,
      "data": {"type": "string", "enum": ["bhavcopy", "sim"]},
      "fill_model": {"type": "string", "enum": ["close", "next_close"]},
      "rank_by": S, "min_trades": I, "oos_fraction": S, "workers": I},
     ("strategy", "start", "end")),
    ("get", "/api/backtest/grid-search", "Recent grid-search jobs.", False, {"limit": I}, {},
     ()),
    ("get", "/api/backtest/grid-search/{job_id}", "Ranked results of one grid search.", False,
     {}, {}, ()),
    ("get", "/api/logs/tail", "Last lines of the engine or web log, redacted.", False,
     {"lines": I, "file": {"type": "string", "enum": ["engine", "web"]}}, {}, ()),
    ("get", "/api/system", "This web process: websocket clients, pool stats.", False, {}, {},
     ()),
    ("post", "/api/chat/cliq", "A command from the Zoho Cliq bot's message handler, "
     "authenticated by the X-Cliq-Secret header (CLIQ_WEBHOOK_SECRET; 401 wrong, 503 unset); "
     "the sender must be on CLIQ_ALLOWED_USERS. Answers {text} (the reply to show) or {} when "
     "ignored.", True, {}, {"message": S, "user": O, "chat": O, "message_id": S},
     ("message", "user")),
    ("get", "/api/chat/outbox", "Recent chat messages: the channel asked for, the one that "
     "delivered (delivered_via: the fallback when the primary failed), attempts, error; login "
     "codes without their text.", False, {"limit": I}, {}, ()),
]


def openapi() -> dict[str, Any]:
    """Build the OpenAPI 3.0 document from :data:`ROUTES`."""
    paths: dict[str, Any] = {}
    for method, path, summary, public, params, body, required in ROUTES:
        op: dict[str, Any] = {"summary": summary, "responses": {
            "200": {"description": "OK"},
            "400": {"description": "Bad input; body {error, field} names the field"}}}
        if method in ("post", "put", "patch"):
            op["responses"]["413"] = {"description": "Body larger than the limit "
                                                     "(WEB_MAX_BODY_BYTES, default 1 MiB)"}
        parameters = [{"name": n, "in": "path", "required": True, "schema": S}
                      for n in _path_params(path)]
        parameters += [{"name": n, "in": "query", "schema": s} for n, s in params.items()]
        if parameters:
            op["parameters"] = parameters
        if body or method in ("post", "put", "patch"):
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": body, "required": list(required)}}}}
        if public:
            op["security"] = []
        else:
            op["responses"]["401"] = {"description": "Not logged in"}
            if method != "get":
                op["responses"]["403"] = {"description": "Missing or wrong X-CSRF-Token"}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "NIFTY engine dashboard API", "version": "1",
                 "description": "Session cookie from /api/auth/login; every state-changing "
                                "request needs the X-CSRF-Token header from /api/auth/session. "
                                "Money is a decimal string. Request bodies: JSON objects of at "
                                "most 1 MiB (413 beyond), nested at most 32 levels; text "
                                "fields refuse NUL and other control characters except tab, "
                                "newline and carriage return."},
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie",
                                                       "name": "nifty_session"}}},
        "security": [{"session": []}],
        "paths": paths,
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _gate() -> Any:
    if session_token() is None:
        if request.path.endswith(".json"):
            return jsonify({"error": "not logged in"}), 401
        return redirect(url_for("views.login", next=request.path))
    return None


@bp.get("/openapi.json")
def openapi_json() -> Any:
    return _gate() or jsonify(openapi())


@bp.get("")
def docs_page() -> Any:
    from web.views import PAGES

    return _gate() or render_template("docs.html", page="docs", title="API", pages=PAGES)
