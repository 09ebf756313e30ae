"""The .env reader used by local runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.dotenv import load_dotenv, parse, set_in_file


def test_parse_comments_quotes_and_export() -> None:
    text = '# comment\nA=1\nexport B = two  # trailing\nC="x # not a comment"\n\nD=\'q\'\n'
    assert parse(text) == {"A": "1", "B": "two", "C": "x # not a comment", "D": "q"}


def test_parse_malformed_line_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"\.env:2: expected KEY=VALUE"):
        parse("A=1\nthis is not a setting\n")


def test_load_does_not_override_environment(tmp_path: Path, monkeypatch) -> None:
    env = tmp_path / ".env"
    env.write_text("DOTENV_T1=from-file\nDOTENV_T2=from-file\n")
    monkeypatch.setenv("DOTENV_T1", "from-env")
    monkeypatch.delenv("DOTENV_T2", raising=False)
    assert load_dotenv(env) == ["DOTENV_T2"]
    assert os.environ["DOTENV_T1"] == "from-env" and os.environ["DOTENV_T2"] == "from-file"
    monkeypatch.delenv("DOTENV_T2")


def test_set_in_file_replaces_key_and_is_private(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("X=1\nDASHBOARD_TOTP_SECRET=OLD\n")
    set_in_file(env, "DASHBOARD_TOTP_SECRET", "NEW")
    assert env.read_text() == "X=1\nDASHBOARD_TOTP_SECRET=NEW\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
