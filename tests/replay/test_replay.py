"""Deterministic replay: a fixed seed and configuration in lock-step mode produce the same
event log — every command and event between actors, with simulated timestamps — on every run.

The golden file is tests/replay/golden_dc_seed7.jsonl. To regenerate it after an intended
behaviour change: UPDATE_GOLDEN=1 pytest tests/replay (and review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pykka
import pytest

from engine.messages.tap import MessageTap
from engine.settings import Settings
from tests.engine.harness import Harness

GOLDEN = Path(__file__).with_name("golden_dc_seed7.jsonl")


@pytest.fixture(autouse=True)
def _stop_all():
    yield
    pykka.ActorRegistry.stop_all(timeout=10)


def _replay(db_url: str, overrides: dict[str, str] | None = None) -> str:
    tap = MessageTap(exclude=())
    h = Harness(db_url, tap=tap)
    for key, value in (overrides or {}).items():
        Settings(h.pool).set(key, value, updated_by="replay")
    h.start()
    try:
        h.run_until(11, 30)
    finally:
        h.stop()
    return tap.dumps()


def test_replay_matches_golden_log(new_database) -> None:
    log = _replay(new_database())
    if os.environ.get("UPDATE_GOLDEN") == "1" or not GOLDEN.exists():
        GOLDEN.write_text(log)
    assert "OpenPosition" in log and "PositionClosed" in log, "the golden must include trading"
    assert log == GOLDEN.read_text(), "event log differs from the golden file"


def test_replay_twice_is_identical(new_database) -> None:
    assert _replay(new_database()) == _replay(new_database())


def test_replay_changed_strategy_parameter_changes_log(new_database) -> None:
    changed = _replay(new_database(), {"CAL_ARB_ZSCORE_ENTRY": "2.6"})
    assert changed != GOLDEN.read_text()
