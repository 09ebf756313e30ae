"""``python -m engine events fetch|list`` and ``why-blocked`` against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.events import mospi, nse, oea
from engine.events.seed import load_seed


@pytest.fixture
def cli_db(db_url: str):
    from engine.store import pool as pool_module

    pool_module.close_pool()
    yield db_url
    pool_module.close_pool()


def test_fetch_offline_loads_the_seed_reports_every_source_and_exits_0(cli_db, dead_url, monkeypatch,
                                                                      capsys) -> None:
    for env in (nse.ENV, mospi.ENV, oea.ENV):
        monkeypatch.setenv(env, dead_url)
    assert main(["events", "fetch"]) == 0
    out = capsys.readouterr().out.splitlines()
    n = len(load_seed())
    assert out[0] == f"seed file: {n} added, 0 changed, 0 unchanged"
    for name in (nse.NAME, mospi.NAME, oea.NAME):
        assert any(line.startswith(f"{name}: FAILED (GET {dead_url}") for line in out), out
    assert out[-1] == "3 source(s) skipped; the seed loaded, so this is not an error"
    assert main(["events", "fetch", "--seed-only"]) == 0
    assert capsys.readouterr().out.strip() == f"seed file: 0 added, 0 changed, {n} unchanged"


def test_fetch_with_a_bad_seed_exits_1(cli_db, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "seed.json"
    bad.write_text(json.dumps({"events": [{"date": "x"}]}))
    assert main(["events", "fetch", "--seed", str(bad), "--seed-only"]) == 1
    assert "entry 0: bad date 'x'" in capsys.readouterr().out


def test_list_filters_by_dates_and_impact(cli_db, capsys) -> None:
    assert main(["events", "fetch", "--seed-only"]) == 0
    capsys.readouterr()
    assert main(["events", "list", "--from", "2025-02-01", "--to", "2025-02-07", "--impact", "HIGH"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["2025-02-01 11:00  HIGH   BUDGET          Union Budget 2025-26",
                   "2025-02-07 10:00  HIGH   RBI_MPC         RBI MPC decision",
                   "2 event(s) 2025-02-01 .. 2025-02-07"]
    assert main(["events", "list", "--from", "2025-02-07", "--to", "2025-02-01"]) == 2
    with pytest.raises(SystemExit):
        main(["events", "list", "--impact", "SEVERE"])


def test_why_blocked_cli(cli_db, capsys) -> None:
    assert main(["why-blocked", "--strategy", "XX"]) == 2
    assert "expected one of CAL_ARB, DC, MDC, IC" in capsys.readouterr().err
    assert main(["why-blocked", "--strategy", "DC", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["strategy"] == "DC" and body["last_cycle"] is None
    assert main(["why-blocked", "--strategy", "IC"]) == 0
    assert "no scan cycle recorded yet" in capsys.readouterr().out
