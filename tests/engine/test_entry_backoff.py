"""A broker that keeps refusing a strategy's entries is not hammered every scan minute: the
strategy backs off 1, 2, 4, ... minutes and the operator is alerted once per reason."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import pykka

from engine.messages.tap import MessageTap
from engine.timeutil import IST
from tests.engine.harness import Harness


def test_repeated_entry_refusal_backs_off_and_alerts_once(db_url: str) -> None:
    tap = MessageTap()
    h = Harness(db_url, tap=tap)
    with h.pool.connection() as conn:  # every entry of CAL_ARB will be refused by the executor
        conn.execute("INSERT INTO go_live_state (strategy, stage, updated_by) VALUES"
                     " ('CAL_ARB', 'disabled', 'test') ON CONFLICT (strategy) DO UPDATE SET"
                     " stage = 'disabled'")
    h.start()
    try:
        h.run_until(13, 0)
        denied = h.query("SELECT count(*) AS n FROM strategy_battle_log"
                         " WHERE rejections::text LIKE '%%the broker refused the last%%'")[0]["n"]
    finally:
        h.stop()
        pykka.ActorRegistry.stop_all(timeout=10)
    entries = tap.entries()
    refused = [e for e in entries if e.type == "OrderRejected"]
    intents = [e for e in entries if e.type == "OpenPosition" and e.sender == "risk"]
    alerts = [e for e in entries if e.type == "AlertRaised" and e.fields["source"] == "risk"]
    signals = [e for e in entries if e.type == "OpenPosition" and e.sender == "scanner"]
    assert refused, "the executor should refuse CAL_ARB's entries in stage 'disabled'"
    assert len(refused) == len(intents), "every admitted entry was refused"
    assert len(alerts) == 1 and "refused by the broker" in alerts[0].fields["text"]
    # back-off: far fewer admitted entries than signals, and growing gaps between them
    assert len(signals) > len(intents) >= 2
    times = [datetime.fromisoformat(e.ts).astimezone(IST) for e in intents]
    gaps = [(b - a).total_seconds() / 60 for a, b in pairwise(times)]
    assert all(g >= 1 for g in gaps)
    assert max(gaps) >= 8, gaps  # waits grew past the first minutes
    assert denied > 0
