"""DATABASE_URL unset: the embedded server starts, migrations apply, a second start reuses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("pgserver", reason="embedded PostgreSQL (pgserver) not installed")


def _engine(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["ENGINE_VAR_DIR"] = str(var_dir)
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_embedded_server_starts_migrates_and_is_reused(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    first = _engine(var_dir, "migrate")
    assert first.returncode == 0, first.stderr
    assert "applied 001_initial_schema.sql" in first.stdout
    assert (var_dir / "pgdata" / "PG_VERSION").exists()

    second = _engine(var_dir, "migrate")
    assert second.returncode == 0, second.stderr
    assert "schema is up to date" in second.stdout  # same data directory, same database

    status = _engine(var_dir, "status")
    assert status.returncode == 0, status.stderr
    assert "embedded (socket)" in status.stdout
    assert "risk_envelope_state" in status.stdout
