"""``python -m engine backtest download|import`` end to end (main(argv)), against the local
NSE archive server and a fresh database."""

from __future__ import annotations

from datetime import date

import pytest

from engine.cli import main
from engine.store import pool as pool_module
from tests.backtest.nse_server import NseArchiveServer, shared_files
from tests.shared_data import SHARED_DATA, require_shared_data


@pytest.fixture
def cli_db(db_url):
    pool_module.close_pool()  # the CLI's process pool on this test's database (DATABASE_URL)
    yield db_url
    pool_module.close_pool()


@pytest.fixture
def archive(monkeypatch):
    require_shared_data("strategy-squad_filtered")
    with NseArchiveServer(shared_files(SHARED_DATA)) as server:
        monkeypatch.setenv("NSE_ARCHIVE_BASE", server.base)
        yield server


def _rows(pool) -> int:
    with pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM bhavcopy_ohlc").fetchone()["n"]


def test_download_inspect_range_and_status(cli_db, archive, pool, capsys) -> None:
    assert main(["backtest", "download", "--date", "2025-02-03", "--inspect-header"]) == 0
    out = capsys.readouterr().out
    assert "format:  UDiFF (Rsvd1)" in out and "header:  TradDt,BizDt,Sgmt" in out
    assert "IDO     NIFTY" in out and "nothing written" in out
    assert _rows(pool) == 0
    assert main(["backtest", "download", "--start", "2025-02-24", "--end", "2025-02-28",
                 "--pause", "0"]) == 0
    out = capsys.readouterr().out
    assert "4 session(s): 4 downloaded" in out
    assert archive.requested_days()[1:] == [date(2025, 2, d) for d in (24, 25, 27, 28)]
    assert main(["backtest", "download", "--status"]) == 0
    out = capsys.readouterr().out
    assert "2025-02" in out and "first 2025-02-24, last 2025-02-28" in out
    assert main(["backtest", "download", "--date", "2025-02-26", "--pause", "0"]) == 0  # holiday
    out = capsys.readouterr().out
    assert "0 session(s)" in out and "no session from 2025-02-26 to 2025-02-26" in out


@pytest.mark.parametrize("argv, message", [
    (["--start", "2025-02-28", "--end", "2025-02-24"], "is after --end"),
    (["--inspect-header"], "--inspect-header needs --date"),
    (["--date", "2025-02-03", "--start", "2025-02-03"], "not both"),
    ([], "give --date, --start"),
    (["--start", "2999-01-01"], "in the future"),
])
def test_download_bad_input_exits_2(cli_db, argv, message, capsys) -> None:
    assert main(["backtest", "download", *argv]) == 2
    assert message in capsys.readouterr().err


def test_download_unparsable_date_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["backtest", "download", "--date", "03-02-2025"])
    assert exc.value.code == 2 and "expected YYYY-MM-DD" in capsys.readouterr().err


def test_import_files_folders_and_refusals(cli_db, pool, tmp_path, capsys) -> None:
    folder = require_shared_data("strategy-squad_filtered")
    one = folder / "fo28DEC2023bhav.csv"
    assert main(["backtest", "import", str(one)]) == 0
    assert "imported 1 file(s), 3,131 rows" in capsys.readouterr().out
    assert main(["backtest", "import", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["backtest", "import", str(tmp_path)]) == 2
    assert "no bhavcopy files" in capsys.readouterr().err
    bad = tmp_path / "BhavCopy_NSE_FO_0_0_0_20250903_F_0000.csv"
    text = (folder / bad.name).read_text(encoding="utf-8").replace(
        ",2025-09-09,2025-09-09,", ",2025-09-39,2025-09-09,", 1)
    bad.write_text(text, encoding="utf-8")
    before = _rows(pool)
    assert main(["backtest", "import", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"refused: {bad}, line " in out and "column XpryDt: not a date" in out
    assert _rows(pool) == before


def test_backtest_help_lists_the_data_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["backtest", "--help"])
    out = capsys.readouterr().out
    assert "download" in out and "import" in out and "run" in out and "grid-search" in out
