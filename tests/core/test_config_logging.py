"""Configuration validation and secret redaction in logs."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import ConfigError, load
from engine.logsetup import MAX_BYTES, RedactingFilter, redact, register_secret, setup_logging


def test_config_defaults_are_paper_on_simulated_market() -> None:
    cfg = load({})
    assert (cfg.broker, cfg.market_source) == ("paper", "sim")
    assert cfg.starting_capital == Decimal("500000")
    assert all(cfg.dry_run_flags.values())


@pytest.mark.parametrize(("env", "name"), [
    ({"SIM_SPEED": "fast"}, "SIM_SPEED"),
    ({"SIM_SPEED": "0"}, "SIM_SPEED"),
    ({"BROKER": "zerodha"}, "BROKER"),
    ({"DC_DRY_RUN": "perhaps"}, "DC_DRY_RUN"),
    ({"BROKER": "dhan"}, "DHAN_CLIENT_ID"),
    ({"TELEGRAM_ENABLED": "true"}, "TELEGRAM_BOT_TOKEN"),
    ({"SIM_START": "03-02-2025"}, "SIM_START"),
    ({"STARTING_CAPITAL": "lots"}, "STARTING_CAPITAL"),
])
def test_config_bad_value_names_the_variable(env: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load(env)


def test_config_redacted_hides_secrets() -> None:
    cfg = load({"DHAN_ACCESS_TOKEN": "abc.def.ghi", "DHAN_PIN": "123456", "DHAN_CLIENT_ID": "110"})
    shown = cfg.redacted()
    assert shown["dhan_access_token"] == "***" and shown["dhan_pin"] == "***"
    assert shown["dhan_client_id"] == "110"
    assert "123456" not in repr(cfg)


@pytest.mark.parametrize("line", [
    'renewed access-token=eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjE3MDB9.c2lnbmF0dXJl ok',
    '{"accessToken": "eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjE3MDB9.c2lnbmF0dXJl"}',
    "pin=482913 totp_secret=JBSWY3DPEHPK3PXP",
    "Authorization: Bearer abcdef1234567890",
])
def test_redact_removes_secrets(line: str) -> None:
    out = redact(line)
    for secret in ("eyJhbGciOiJIUzUxMiJ9", "482913", "JBSWY3DPEHPK3PXP", "abcdef1234567890"):
        assert secret not in out
    assert "***" in out


def test_logging_file_handler_redacts_registered_secret_and_uses_ist(tmp_path: Path) -> None:
    setup_logging("debug", tmp_path)
    register_secret("s3cr3t-token-value")
    logging.getLogger("engine.test").info("token is %s", "s3cr3t-token-value")
    for h in logging.getLogger().handlers:
        h.flush()
    text = (tmp_path / "engine.log").read_text()
    assert "s3cr3t-token-value" not in text
    assert "token is ***" in text
    assert "+05:30" in text
    handler = next(h for h in logging.getLogger().handlers if hasattr(h, "maxBytes"))
    assert (handler.maxBytes, handler.backupCount) == (MAX_BYTES, 7)
    setup_logging("info", None)


def test_redacting_filter_covers_exception_text() -> None:
    try:
        raise RuntimeError("failed with pin=991122")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", None, __import__("sys").exc_info())
    RedactingFilter().filter(record)
    assert "991122" not in record.exc_text
