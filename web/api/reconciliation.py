"""Reconciliation endpoints beside ``/api/reconciliation/log`` (web/api/trading.py): the
start-up gate and last check (``runtime_state`` row ``reconciliation``, written by the
MonitorActor) and the audit rows counted per action, for the Risk page."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from web.api import bp, one, rows
from web.validate import Int, query


@bp.get("/reconciliation/status")
def reconciliation_status() -> Any:
    """The start-up gate (live entries wait until the first reconciliation is done), the last
    check, and the audit rows of the last ``days`` days per action."""
    values = query({"days": Int(optional=True, default=1, minimum=1, maximum=90)})
    state = one("SELECT value, updated_at FROM runtime_state WHERE key = 'reconciliation'")
    counts = rows(
        "SELECT action, count(*) AS n, max(created_at) AS last_at FROM reconciliation_audit"
        " WHERE created_at >= now() - make_interval(days => %s) GROUP BY action ORDER BY action",
        (values["days"],))
    latest = rows("SELECT * FROM reconciliation_audit ORDER BY id DESC LIMIT 10")
    return jsonify({"state": state["value"] if state else None,
                    "updated_at": state["updated_at"] if state else None,
                    "counts": counts, "latest": latest})
