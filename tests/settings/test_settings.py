"""Runtime settings against a real database: validation, audit, cross-process cache busting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest

from engine.settings import SettingError, Settings, knob
from tests.conftest import eventually


def _counts(pool) -> tuple[int, int]:
    with pool.connection() as conn:
        a = conn.execute("SELECT count(*) AS n FROM bot_settings").fetchone()["n"]
        b = conn.execute("SELECT count(*) AS n FROM settings_audit").fetchone()["n"]
    return a, b


def test_settings_default_when_no_override(pool) -> None:
    assert Settings(pool).get("DC_PROFIT_TARGET_PCT") == knob("DC_PROFIT_TARGET_PCT").default == Decimal("0.15")
    assert Settings(pool).get("AI_PREDICT_DAILY_RUN_CAP") == 6


def test_settings_set_writes_override_and_audit_row(pool) -> None:
    s = Settings(pool)
    s.set("DC_PROFIT_TARGET_PCT", "0.28", updated_by="tester")
    s.set("DC_PROFIT_TARGET_PCT", "0.35", updated_by="dashboard")
    assert s.get("DC_PROFIT_TARGET_PCT") == Decimal("0.35")
    history = s.history("DC_PROFIT_TARGET_PCT")
    assert [(h["old_value"], h["new_value"], h["updated_by"]) for h in history] == [
        ("0.28", "0.35", "dashboard"), (None, "0.28", "tester")]


def test_settings_reset_restores_default_and_audits_null(pool) -> None:
    s = Settings(pool)
    s.set("DC_LOTS", "3", updated_by="t")
    s.reset("DC_LOTS", updated_by="t")
    assert s.get("DC_LOTS") == 1
    assert s.history("DC_LOTS")[0]["new_value"] is None


@pytest.mark.parametrize(("key", "value", "message"), [
    ("NOT_A_KNOB", "1", "unknown setting"),
    ("DC_LOTS", "two", "expected an integer between 1 and 50"),
    ("DC_LOTS", "0", "between 1 and 50"),
    ("CAL_ARB_ZSCORE_ENTRY", "NaN", "decimal number"),
    ("DC_ENABLED", "maybe", "true or false"),
    ("EXPIRY_DAY_EXIT_TIME", "16:00", "one of"),
    # Python's int()/Decimal() would take these; an operator typing them meant something else
    ("DC_LOTS", "\uff15", "expected an integer"),       # full-width 5
    ("DC_LOTS", "1_0", "expected an integer"),
    ("DC_LOTS", "\u0665", "expected an integer"),       # Arabic-Indic 5
    ("CAL_ARB_ZSCORE_ENTRY", "1e1", "decimal number"),
    ("CAL_ARB_ZSCORE_ENTRY", "2_5", "decimal number"),
    ("CAL_ARB_ZSCORE_ENTRY", "Infinity", "decimal number"),
])
def test_settings_bad_value_refused_nothing_written(pool, key: str, value: str, message: str) -> None:
    with pytest.raises(SettingError, match=message):
        Settings(pool).set(key, value, updated_by="t")
    assert _counts(pool) == (0, 0)


def test_settings_bool_knob_coercion() -> None:
    assert knob("DC_ENABLED").coerce("off") is False
    assert knob("DC_ENABLED").coerce("TRUE") is True


def test_settings_cache_busted_in_second_process_by_notify(pool, db_url: str) -> None:
    """A second process with a 5-minute cache sees a write within a second (NOTIFY)."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from engine.store.pool import open_pool
            from engine.settings import Settings
            s = Settings(open_pool({db_url!r}), ttl=300).listen({db_url!r})
            print(s.get("DC_LOTS"), flush=True)          # primes the cache
            sys.stdin.readline()                           # parent has written
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if s.get("DC_LOTS") == 4:
                    print("seen", round(1.0 - (deadline - time.monotonic()), 3), flush=True)
                    break
                time.sleep(0.01)
            else:
                print("stale", s.get("DC_LOTS"), flush=True)
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "1"
    Settings(pool).set("DC_LOTS", "4", updated_by="t")
    child.stdin.write("go\n")
    child.stdin.flush()
    answer = child.stdout.readline().split()
    child.wait(10)
    assert answer[0] == "seen", answer


def test_settings_cache_serves_from_memory_within_ttl(pool) -> None:
    s = Settings(pool, ttl=300)
    assert s.get("DC_LOTS") == 1
    with pool.connection() as conn:  # a write that bypasses NOTIFY
        conn.execute("INSERT INTO bot_settings (key, value, updated_by) VALUES ('DC_LOTS', '9', 'x')")
    assert s.get("DC_LOTS") == 1
    s.invalidate()
    assert eventually(lambda: s.get("DC_LOTS") == 9)


@pytest.mark.parametrize(("raw", "value"), [("2.5", Decimal("2.5")), (" 3 ", Decimal("3")),
                                            ("+1.25", Decimal("1.25")), (".5", Decimal("0.5"))])
def test_settings_plain_decimal_notation_accepted(raw: str, value: Decimal) -> None:
    assert knob("CAL_ARB_ZSCORE_ENTRY").coerce(raw) == value


def test_cli_settings_set_by_must_name_someone(db_url: str, capsys) -> None:
    from engine.cli import main
    from engine.store import pool as pool_module

    pool_module.close_pool()
    try:
        for by in ("", "   "):
            assert main(["settings", "set", "DC_LOTS", "2", "--by", by]) == 2
            assert "--by must name who" in capsys.readouterr().err
        assert main(["settings", "history"]) == 0
        assert "DC_LOTS" not in capsys.readouterr().out  # nothing was written
    finally:
        pool_module.close_pool()
