"""The command line: --help everywhere, migrate/status/settings against a real database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _subcommands(parser) -> dict:
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def test_cli_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = _subcommands(parser)
    assert {"migrate", "status", "settings"} <= set(commands)
    for name, sub in commands.items():
        help_text = sub.format_help()
        assert name in help_text and len(help_text) > 40
        for nested in _subcommands(sub).values():
            assert "usage" in nested.format_help()


def test_cli_migrate_twice_is_noop(empty_database: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database)
    assert main(["migrate"]) == 0
    assert "applied 001_initial_schema.sql" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "schema is up to date" in capsys.readouterr().out
    assert main(["migrate", "--status"]) == 0
    assert "applied" in capsys.readouterr().out


def test_cli_settings_set_bad_value_exit_2_with_reason(db_url: str, capsys) -> None:
    from engine.store import pool as pool_module

    pool_module.close_pool()
    try:
        assert main(["settings", "set", "DC_LOTS", "lots"]) == 2
        assert "expected an integer" in capsys.readouterr().err
        assert main(["settings", "set", "DC_LOTS", "2", "--by", "ops"]) == 0
        assert "DC_LOTS: (default) -> 2" in capsys.readouterr().out
        assert main(["settings", "get", "DC_LOTS"]) == 0
        assert capsys.readouterr().out.strip() == "2"
    finally:
        pool_module.close_pool()


def test_cli_module_entry_point_help() -> None:
    out = subprocess.run([sys.executable, "-m", "engine", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "migrate" in out.stdout and "settings" in out.stdout


def test_up_first_run_creates_dashboard_secret_in_env_file(tmp_path, monkeypatch, capsys) -> None:
    import stat

    import pyotp

    from engine.commands.run import LOGIN_HINTS, _first_login_setup

    monkeypatch.setenv("DASHBOARD_TOTP_SECRET", "")  # restored (removed) after the test
    env = tmp_path / ".env"
    assert _first_login_setup(str(env)) == "created"
    # right after creating the secret, `up` must not tell the user to create one
    assert "auth setup" not in LOGIN_HINTS["created"]
    secret = env.read_text().strip().split("=", 1)[1]
    assert len(secret) >= 16 and pyotp.TOTP(secret).now().isdigit()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "scan this QR code" in capsys.readouterr().out
    # second run: secret now in the environment, nothing changes
    assert _first_login_setup(str(env)) == "configured"
    assert env.read_text().strip() == f"DASHBOARD_TOTP_SECRET={secret}"


def test_cli_backtest_run_and_grid_search(db_url, capsys) -> None:
    import json

    from engine.store import pool as pool_module

    pool_module.close_pool()
    assert main(["backtest", "run", "--start", "2025-02-03", "--end", "2025-02-03", "--data", "sim",
                 "--strategy", "CAL_ARB", "--param", "CAL_ARB_ZSCORE_ENTRY=2.5", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["metrics"]["trades"] == len(run["trades"]) > 0 and run["run_id"] is not None
    # CAL_ARB on end-of-day data (the default --data bhavcopy) is refused with the reason
    assert main(["backtest", "run", "--start", "2025-02-03", "--end", "2025-02-03",
                 "--strategy", "CAL_ARB"]) == 2
    assert "intraday samples" in capsys.readouterr().err
    pool_module.close_pool()
    # grid search (run on real data in tests/backtest/test_grid.py): CAL_ARB on end-of-day
    # data, an empty space, a bad value are refused before anything runs
    assert main(["backtest", "grid-search", "--start", "2025-02-03", "--end", "2025-02-03",
                 "--strategy", "CAL_ARB", "--param", "CAL_ARB_ZSCORE_ENTRY=2.5"]) == 2
    assert "intraday samples" in capsys.readouterr().err
    assert main(["backtest", "grid-search", "--start", "2025-02-03", "--end", "2025-02-03",
                 "--strategy", "DC"]) == 2
    assert "--use-defaults or --param" in capsys.readouterr().err
    assert main(["backtest", "grid-search", "--start", "2025-02-03", "--end", "2025-02-03",
                 "--strategy", "DC", "--param", "DC_LOTS=1,999"]) == 2
    assert "DC_LOTS" in capsys.readouterr().err
    assert main(["backtest", "run", "--start", "2025-02-03", "--end", "2025-02-03",
                 "--param", "NOPE=1"]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_cli_risk_pause_resume_are_queued_commands_and_status_shows_stages(db_url, capsys):
    from engine.store import pool as pool_module

    pool_module.close_pool()
    try:
        assert main(["risk", "pause", "lunch break", "--by", "ravi"]) == 0
        assert "queued pause_entries" in capsys.readouterr().out
        assert main(["risk", "resume", "--by", " "]) == 2
        assert "--by must name" in capsys.readouterr().err
        assert main(["risk", "resume"]) == 0
        assert main(["risk", "status"]) == 0
        out = capsys.readouterr().out
        assert "entries allowed" in out and "paper" in out and "live" in out
        assert "pause_entries pending" in out and "resume_entries pending" in out
        with pool_module.get_pool().connection() as conn:
            rows = conn.execute("SELECT kind, payload, requested_by FROM engine_commands"
                                " ORDER BY id").fetchall()
        assert (rows[0]["kind"], rows[0]["requested_by"]) == ("pause_entries", "ravi")
        assert rows[0]["payload"] == {"reason": "lunch break"} and len(rows) == 2
    finally:
        pool_module.close_pool()
