"""``python -m engine orders list|resolve`` and ``python -m engine close``: what they show,
what they queue in ``engine_commands`` (the same payloads as the dashboard's forms), and the
clear refusals for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb

from engine.cli import main
from engine.execution.intents import IntentStore
from engine.store import pool as pool_module
from engine.timeutil import IST

DAY = date(2025, 2, 3)


@pytest.fixture
def cli_pool(db_url: str) -> Iterator:
    """The process-wide pool the CLI uses, on the test's fresh database."""
    pool_module.close_pool()
    try:
        yield pool_module.get_pool()
    finally:
        pool_module.close_pool()


def _commands(pool) -> list[dict]:
    with pool.connection() as conn:
        return conn.execute("SELECT kind, payload, requested_by, status FROM engine_commands"
                            " ORDER BY id").fetchall()


def _intent(pool, cid: str, *, state: str = "unresolved", tag: str = "DC-20250203-100600"):
    store = IntentStore(pool)
    row = store.create(trade_date=DAY, tag=tag, purpose="exit", leg_index=1, attempt=0,
                       security_id="1000739309", side="BUY", quantity=75, product="MARGIN",
                       segment="NSE_FNO", order_type="LIMIT", price=Decimal("101.5"),
                       correlation_id=cid)
    return store.update(row.id, state=state)


def _open_trade(pool, tag: str, mode: str) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO open_trades (tag, strategy, mode, trade_date, opened_at,"
                     " entry_price, quantity, payload) VALUES (%s, 'DC', %s, %s, %s, 0, 150, %s)",
                     (tag, mode, DAY, datetime(2025, 2, 3, 10, 6, tzinfo=IST),
                      Jsonb({"legs": [], "hold": "exit incomplete (test)"})))


def test_orders_list_shows_unsettled_intents_and_how_to_resolve(cli_pool, capsys) -> None:
    assert main(["orders", "list"]) == 0
    assert "no unsettled order intents" in capsys.readouterr().out
    _intent(cli_pool, "DC-20250203-100600-X-1")
    settled = _intent(cli_pool, "DC-20250203-090000-0", state="TRADED", tag="DC-20250203-090000")
    IntentStore(cli_pool).settle(settled.trade_tag, "exit", "booked (test)")
    assert main(["orders", "list"]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    assert header.split()[:7] == ["cid", "tag", "leg", "side", "qty", "filled", "security"]
    assert row.split()[:8] == ["DC-20250203-100600-X-1", "DC-20250203-100600", "exit/1", "BUY",
                               "75", "0", "1000739309", "unresolved"]
    assert "DC-20250203-090000" not in out, "settled intents are not listed"
    assert "1 unresolved" in out and "orders resolve CID" in out


def test_orders_resolve_queues_resolve_order_and_refuses_bad_input(cli_pool, capsys) -> None:
    cid = "DC-20250203-100600-X-1"
    _intent(cli_pool, cid)
    cases = [
        (["--action", "filled", "--price", "101.5"], "--confirm is required"),
        (["--action", "filled", "--confirm"], "needs --price"),
        (["--action", "filled", "--price", "abc", "--confirm"], "is not a number"),
        (["--action", "flatten", "--confirm"], "needs --quantity"),
        (["--action", "not_filled", "--price", "1", "--confirm"], "goes with --action filled"),
        (["--action", "filled", "--price", "101.5", "--quantity", "76", "--confirm"],
         "the order is for 75 units"),
        (["--action", "not_filled", "--confirm", "--by", " "], "--by must name"),
    ]
    for extra, why in cases:
        assert main(["orders", "resolve", cid, *extra]) == 2, extra
        assert why in capsys.readouterr().err, extra
    assert main(["orders", "resolve", "NOPE-1", "--action", "not_filled", "--confirm"]) == 2
    assert "no order intent with correlation id 'NOPE-1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: an unknown action is a usage error
        main(["orders", "resolve", cid, "--action", "maybe", "--confirm"])
    assert _commands(cli_pool) == []

    assert main(["orders", "resolve", cid, "--action", "filled", "--price", "101.50",
                 "--quantity", "75", "--confirm", "--by", "ravi"]) == 0
    assert "queued resolve_order" in capsys.readouterr().out
    assert main(["orders", "resolve", cid, "--action", "flatten", "--quantity", "75",
                 "--confirm"]) == 0
    first, second = _commands(cli_pool)
    assert (first["kind"], first["requested_by"], first["status"]) == (
        "resolve_order", "ravi", "pending")
    assert first["payload"] == {"correlation_id": cid, "action": "filled", "confirm": True,
                                "price": "101.50", "quantity": 75}
    assert second["payload"] == {"correlation_id": cid, "action": "flatten", "confirm": True,
                                 "quantity": 75}
    assert second["requested_by"].endswith("@cli")


def test_close_queues_close_trade_in_both_modes_and_refuses_bad_input(cli_pool, capsys
                                                                      ) -> None:
    _open_trade(cli_pool, "DC-20250203-100600", "live")
    _open_trade(cli_pool, "DC-20250203-110000", "paper")
    assert main(["close", "NOPE"]) == 2
    assert "no open trade with tag 'NOPE'" in capsys.readouterr().err
    assert main(["close", "DC-20250203-100600", "--record-from-broker"]) == 2
    assert "--record-from-broker needs --confirm" in capsys.readouterr().err
    assert main(["close", "DC-20250203-110000", "--record-from-broker", "--confirm"]) == 2
    assert "is for live trades" in capsys.readouterr().err
    assert _commands(cli_pool) == []

    assert main(["close", "DC-20250203-100600", "--by", "ravi"]) == 0
    assert "queued close_trade" in capsys.readouterr().out
    assert main(["close", "DC-20250203-100600", "--record-from-broker", "--confirm"]) == 0
    plain, record = _commands(cli_pool)
    assert (plain["kind"], plain["payload"], plain["requested_by"]) == (
        "close_trade", {"tag": "DC-20250203-100600"}, "ravi")
    assert record["payload"] == {"tag": "DC-20250203-100600", "mode": "record_from_broker",
                                 "confirm": True}


def test_orders_and_close_help_explain_the_modes(capsys) -> None:
    for argv, words in ((["orders", "resolve", "--help"], ("not_filled", "--confirm")),
                        (["close", "--help"], ("--record-from-broker", "trade book")),
                        (["orders", "list", "--help"], ("usage",))):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert all(w in out for w in words), (argv, out)
