"""``GET /metrics``: the engine's metrics in the Prometheus text exposition format (0.0.4).

From the engine's snapshot (``runtime_state`` ``engine_metrics``, saved with every heartbeat;
``engine.ops.metrics``): the scan-cycle latency histogram, actor restarts, broker errors by
code. From the database at scrape time: open positions and their MTM by stage, orders by
outcome (``order_intents`` states), the Dhan token's seconds to expiry, the heartbeat's age.

Access: with ``METRICS_TOKEN`` set, ``Authorization: Bearer <METRICS_TOKEN>`` is required;
without it only loopback clients are answered. No label carries a secret: labels are stages,
order states, actor roles and error codes only, and the token row is read for its expiry.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, request

from web.api import one, rows

bp = Blueprint("metrics", __name__)

PREFIX = "nifty_engine_"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+")


def _label(value: Any) -> str:
    text = str(value)
    return text if text and len(text) <= 40 and set(text) <= _SAFE else "other"


def _num(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    out = float(value)
    return repr(int(out)) if out.is_integer() and abs(out) < 1e15 else repr(out)


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[str, dict[str, str], Any]]) -> None:
        self.lines.append(f"# HELP {PREFIX}{name} {help_text}")
        self.lines.append(f"# TYPE {PREFIX}{name} {kind}")
        for suffix, labels, value in samples:
            body = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
            self.lines.append(f"{PREFIX}{name}{suffix}{'{' + body + '}' if body else ''} "
                              f"{_num(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _allowed() -> Response | None:
    token = current_app.config.get("METRICS_TOKEN") or os.environ.get("METRICS_TOKEN", "")
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("metrics: Authorization: Bearer <METRICS_TOKEN> required\n", 401,
                            content_type="text/plain")
        return None
    if (request.remote_addr or "") not in LOOPBACK:
        return Response("metrics: loopback only (set METRICS_TOKEN to scrape from elsewhere)\n",
                        403, content_type="text/plain")
    return None


def _engine_snapshot(out: _Out) -> None:
    row = one("SELECT value FROM runtime_state WHERE key = 'engine_metrics'")
    snap = (row or {}).get("value") or {}
    hist = snap.get("scan_cycle") or {}
    buckets, counts = hist.get("buckets") or [], hist.get("counts") or []
    samples = [("_bucket", {"le": _num(edge)}, n) for edge, n in zip(buckets, counts, strict=False)]
    samples.append(("_bucket", {"le": "+Inf"}, hist.get("count", 0)))
    samples += [("_sum", {}, hist.get("sum", 0)), ("_count", {}, hist.get("count", 0))]
    out.family("scan_cycle_seconds", "histogram", "Time the scanner took per scan cycle.",
               samples)
    counters = snap.get("counters") or {}
    out.family("actor_restarts_total", "counter", "Actor restarts by the supervisor.",
               [("", {"actor": k}, v) for k, v in sorted(
                   (counters.get("actor_restarts_total") or {}).items())])
    out.family("broker_errors_total", "counter", "Errors answered by Dhan, by error code.",
               [("", {"code": k}, v) for k, v in sorted(
                   (counters.get("broker_errors_total") or {}).items())])


def _database(out: _Out) -> None:
    stages = {r["mode"]: r for r in rows(
        "SELECT mode, count(*) AS n, coalesce(sum((payload->>'mtm')::numeric), 0) AS mtm"
        " FROM open_trades GROUP BY mode")}
    out.family("open_positions", "gauge", "Open positions by go-live stage.",
               [("", {"stage": s}, stages.get(s, {}).get("n", 0))
                for s in ("paper", "shadow", "live")])
    out.family("mtm_rupees", "gauge", "Mark-to-market of the open positions (rupees).",
               [("", {"stage": s}, Decimal(stages.get(s, {}).get("mtm", 0)))
                for s in ("paper", "shadow", "live")])
    orders = rows("SELECT state, count(*) AS n FROM order_intents WHERE NOT sliced"
                  " GROUP BY state ORDER BY state")
    out.family("orders_total", "counter", "Live orders recorded, by outcome (order_intents "
               "state; new = not sent yet).", [("", {"outcome": r["state"]}, r["n"])
                                               for r in orders])
    token = one("SELECT value->>'expires_at' AS expires_at FROM runtime_state"
                " WHERE key = 'dhan_token'")
    beat = one("SELECT updated_at FROM runtime_state WHERE key = 'engine_heartbeat'")
    now = datetime.now().astimezone()
    if token and token.get("expires_at"):
        left = (datetime.fromisoformat(token["expires_at"]) - now).total_seconds()
        out.family("token_expiry_seconds", "gauge",
                   "Seconds until the Dhan access token expires (negative: expired).",
                   [("", {}, round(left, 1))])
    if beat:
        out.family("heartbeat_age_seconds", "gauge", "Seconds since the engine's heartbeat.",
                   [("", {}, round((now - beat["updated_at"]).total_seconds(), 1))])


@bp.get("/metrics")
def metrics() -> Response:
    refused = _allowed()
    if refused is not None:
        return refused
    out = _Out()
    _engine_snapshot(out)
    _database(out)
    return Response(out.text(), 200, content_type=CONTENT_TYPE)
