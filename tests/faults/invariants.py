"""The books' invariants, as SQL: each query returns the rows that violate it.

Fault tests (random kills, connection loss, broker faults) assert that all of them hold
afterwards; ``tests/faults/test_invariants.py`` proves each one catches what it names.
"""

from __future__ import annotations

from typing import Any

INVARIANTS: dict[str, str] = {
    "one close per (trade day, tag)":
        "SELECT trade_date, tag FROM closed_trades GROUP BY 1, 2 HAVING count(*) > 1",
    "a trade is never both open and closed":
        "SELECT o.tag FROM open_trades o JOIN closed_trades c ON c.tag = o.tag",
    "every close has its entry executions":
        "SELECT c.tag FROM closed_trades c WHERE NOT EXISTS (SELECT 1 FROM executions e"
        " WHERE e.tag = c.tag AND e.action = 'OPEN')",
    "every close has its exit executions":
        "SELECT c.tag FROM closed_trades c WHERE NOT EXISTS (SELECT 1 FROM executions e"
        " WHERE e.tag = c.tag AND e.action = 'CLOSE')",
    "every open trade has its entry executions":
        "SELECT o.tag FROM open_trades o WHERE NOT EXISTS (SELECT 1 FROM executions e"
        " WHERE e.tag = o.tag AND e.action = 'OPEN')",
    "no exit execution of a trade that is not closed":
        "SELECT DISTINCT e.tag FROM executions e WHERE e.action = 'CLOSE' AND NOT EXISTS"
        " (SELECT 1 FROM closed_trades c WHERE c.tag = e.tag)",
    "no entry execution without a trade (orphan)":
        "SELECT DISTINCT e.tag FROM executions e WHERE e.action = 'OPEN'"
        " AND NOT EXISTS (SELECT 1 FROM closed_trades c WHERE c.tag = e.tag)"
        " AND NOT EXISTS (SELECT 1 FROM open_trades o WHERE o.tag = e.tag)",
    "an open trade's legs are its entry executions":
        "SELECT o.tag FROM open_trades o WHERE"
        " (SELECT coalesce(jsonb_agg(x ORDER BY x), '[]') FROM (SELECT (l->>'security_id') || ':'"
        "   || (l->>'side') || ':' || (l->>'quantity') AS x"
        "   FROM jsonb_array_elements(o.payload->'legs') l) legs) <>"
        " (SELECT coalesce(jsonb_agg(x ORDER BY x), '[]') FROM (SELECT security_id || ':' || side"
        "   || ':' || quantity AS x FROM executions e WHERE e.tag = o.tag AND e.action = 'OPEN'"
        "  ) ex)",
    "each exit execution reverses an entry execution of the trade":
        "SELECT e.tag, e.security_id FROM executions e WHERE e.action = 'CLOSE' AND NOT EXISTS"
        " (SELECT 1 FROM executions o WHERE o.tag = e.tag AND o.action = 'OPEN'"
        "  AND o.security_id = e.security_id AND o.side <> e.side AND o.quantity = e.quantity)",
    "no execution recorded twice (same trade, action, security, correlation id)":
        "SELECT tag, action, security_id, correlation_id FROM executions"
        " WHERE correlation_id IS NOT NULL GROUP BY 1, 2, 3, 4 HAVING count(*) > 1",
    "no correlation id used by two trades":
        "SELECT correlation_id FROM executions WHERE correlation_id IS NOT NULL"
        " GROUP BY 1 HAVING count(DISTINCT tag) > 1",
    "net P&L = gross - charges on every close":
        "SELECT tag FROM closed_trades WHERE realized_pnl <> gross_pnl - charges",
    "one journal row per close":
        "SELECT c.tag FROM closed_trades c WHERE NOT EXISTS (SELECT 1 FROM trade_journal j"
        " WHERE j.tag = c.tag)",
    "metrics_days realized P&L = sum over closed_trades":
        "SELECT d.trade_date FROM (SELECT trade_date, sum(realized_pnl) AS pnl, count(*) AS n,"
        " count(*) FILTER (WHERE realized_pnl > 0) AS wins FROM closed_trades GROUP BY 1) d"
        " LEFT JOIN metrics_days m USING (trade_date)"
        " WHERE m.trade_date IS NULL OR m.realized_pnl <> d.pnl",
    "metrics_days closes, wins and losses = counts over closed_trades":
        "SELECT d.trade_date FROM (SELECT trade_date, count(*) AS n,"
        " count(*) FILTER (WHERE realized_pnl > 0) AS wins FROM closed_trades GROUP BY 1) d"
        " LEFT JOIN metrics_days m USING (trade_date)"
        " WHERE m.trade_date IS NULL OR m.trades_closed <> d.n OR m.wins <> d.wins"
        " OR m.losses <> d.n - d.wins",
    "metrics_days with closes that closed_trades does not have":
        "SELECT m.trade_date FROM metrics_days m WHERE m.trades_closed > 0 AND NOT EXISTS"
        " (SELECT 1 FROM closed_trades c WHERE c.trade_date = m.trade_date)",
    "metrics_days opens = trades opened that day":
        "SELECT d.trade_date FROM (SELECT trade_date, count(DISTINCT tag) AS n FROM executions"
        " WHERE action = 'OPEN' GROUP BY 1) d LEFT JOIN metrics_days m USING (trade_date)"
        " WHERE m.trade_date IS NULL OR m.trades_opened <> d.n",
    "stage envelope lifetime P&L = sum over its closes":
        "SELECT s.stage FROM risk_envelope_stages s WHERE s.lifetime_pnl <> (SELECT"
        " coalesce(sum(realized_pnl), 0) FROM closed_trades c WHERE c.mode = s.stage)",
    "stage envelope has seen every close of its stage":
        "SELECT s.stage FROM risk_envelope_stages s WHERE s.closes_seen <> (SELECT count(*)"
        " FROM closed_trades c WHERE c.mode = s.stage)",
    "stage envelope daily P&L = closes on its last close date":
        "SELECT s.stage FROM risk_envelope_stages s WHERE s.daily_pnl <> (SELECT"
        " coalesce(sum(realized_pnl), 0) FROM closed_trades c WHERE c.mode = s.stage"
        " AND c.trade_date = s.last_close_date)",
    "stage envelope last close date = latest close of its stage":
        "SELECT s.stage FROM risk_envelope_stages s WHERE s.last_close_date IS DISTINCT FROM"
        " (SELECT max(trade_date) FROM closed_trades c WHERE c.mode = s.stage)",
    "stage envelope loss streak = trailing losing closes":
        "SELECT s.stage FROM risk_envelope_stages s WHERE s.loss_streak <> (SELECT count(*) FROM"
        " (SELECT realized_pnl, sum((realized_pnl >= 0)::int) OVER (ORDER BY trade_date DESC,"
        "  closed_at DESC, id DESC) AS wins_after FROM closed_trades c WHERE c.mode = s.stage) t"
        " WHERE wins_after = 0)",
    "all-stage envelope lifetime P&L = sum over closed_trades":
        "SELECT id FROM risk_envelope_state WHERE lifetime_pnl <> (SELECT"
        " coalesce(sum(realized_pnl), 0) FROM closed_trades)",
    "strategy slots = open trades":
        "SELECT key FROM runtime_state WHERE key = 'strategy_slots'"
        " AND (value->>'open_positions')::int <> (SELECT count(*) FROM open_trades)",
    "one battle-log row per scan time":
        "SELECT created_at FROM strategy_battle_log GROUP BY 1 HAVING count(*) > 1",
    "one spread sample per sample time":
        "SELECT sampled_at FROM calendar_spread_history GROUP BY 1 HAVING count(*) > 1",
}


def violations(conn: Any) -> dict[str, list[Any]]:
    """Invariant name -> offending rows, for every invariant that does not hold."""
    found: dict[str, list[Any]] = {}
    for name, sql in INVARIANTS.items():
        rows = conn.execute(sql).fetchall()
        if rows:
            found[name] = [dict(r) if hasattr(r, "keys") else r for r in rows[:5]]
    return found
