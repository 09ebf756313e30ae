"""Secret redaction: by the values the process holds and by shape, on every handler.

Property: whatever a log line looks like, no registered (configured or learned) secret value
survives into the output of any handler the engine installs (console, file, console trade
lines), and ordinary words stay readable.
"""

from __future__ import annotations

import io
import logging
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.redact
from engine.commands.run import ConsoleReporter, _print_state
from engine.config import load
from engine.logsetup import setup_logging
from engine.redact import is_secret_key, redact, register_secret


@pytest.fixture(autouse=True)
def _registry_restored():
    """Secrets registered by one test (random ones included) must not mask another's text."""
    saved = engine.redact._values
    yield
    engine.redact._values = saved


def _forget(saved):
    engine.redact._values = saved

SECRET_ALPHABET = string.ascii_letters + string.digits + "-_.:/+="
secret_values = st.text(SECRET_ALPHABET, min_size=6, max_size=40).filter(
    lambda s: s.strip() == s and any(c.isalnum() for c in s))
filler = st.text(string.printable.replace("\x0b", "").replace("\x0c", ""), max_size=60)
WRAPPERS = (
    "{a}{s}{b}",
    "{a} token={s} {b}",
    "{a} {{'token': '{s}', 'pin': '{s}'}} {b}",
    '{a} {{"accessToken": "{s}"}} {b}',
    "{a} GET https://api.telegram.org/bot{s}/sendMessage {b}",
    "{a} DASHBOARD_SECRET_KEY={s}{b}",
    "{a} pause: token={s} pin={s}",
    "{a}\n{s}\n{b}",
)


@pytest.fixture
def handlers_output(tmp_path):
    """Install the engine's handlers; return a function giving everything they wrote."""
    setup_logging("debug", tmp_path)
    console = next(h for h in logging.getLogger().handlers
                   if type(h) is logging.StreamHandler)
    stream = io.StringIO()
    console.setStream(stream)
    chat = logging.getLogger("engine.chat")
    reporter = ConsoleReporter()
    chat.addHandler(reporter)

    seen = {"stream": 0, "file": 0}

    def written(capsys) -> str:
        """What the handlers wrote since the last call."""
        for h in logging.getLogger().handlers:
            h.flush()
        console_text, file_text = stream.getvalue(), (tmp_path / "engine.log").read_text()
        new = console_text[seen["stream"]:] + file_text[seen["file"]:] + capsys.readouterr().out
        seen.update(stream=len(console_text), file=len(file_text))
        return new

    yield written
    chat.removeHandler(reporter)
    setup_logging("info", None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=secret_values, a=filler, b=filler, wrapper=st.sampled_from(WRAPPERS))
def test_no_registered_secret_survives_any_handler(secret, a, b, wrapper, handlers_output, capsys):
    saved = engine.redact._values
    handlers_output(capsys)  # discard what earlier examples wrote
    register_secret(secret)
    try:
        line = wrapper.format(a=a, b=b, s=secret)
        logging.getLogger("engine.test").warning("%s", line)
        logging.getLogger("engine.chat").info(line)
        try:
            raise RuntimeError(line)
        except RuntimeError:
            logging.getLogger("engine.test").exception("failed")
        assert secret not in handlers_output(capsys)
    finally:
        _forget(saved)


@given(secret=secret_values, a=filler, b=filler, wrapper=st.sampled_from(WRAPPERS))
def test_redact_removes_registered_values_anywhere(secret, a, b, wrapper):
    saved = engine.redact._values
    register_secret(secret)
    try:
        assert secret not in redact(wrapper.format(a=a, b=b, s=secret))
    finally:
        _forget(saved)


def test_configured_secrets_are_registered_by_loading_the_configuration():
    env = {"DHAN_PIN": "583920", "DHAN_TOTP_SECRET": "KRUGS4ZANFZSAYJA",
           "TELEGRAM_BOT_TOKEN": "7000001:AAF-k9x", "DASHBOARD_SECRET_KEY": "kq8-9vvz-yyy",
           "LLM_API_KEY": "sk-test-31337", "DATABASE_URL": "postgresql://u:pw-84c1@h/db"}
    load(env)
    text = " ".join(f"{k.lower()} {v}" for k, v in env.items())
    out = redact(text)
    for value in ("583920", "KRUGS4ZANFZSAYJA", "7000001:AAF-k9x", "kq8-9vvz-yyy",
                  "sk-test-31337", "pw-84c1"):
        assert value not in out


@pytest.mark.parametrize(("line", "secret"), [
    ("GET /bot123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"),
    ("{'token': 'tk-value-9981', 'pin': '918273'}", "918273"),
    ("{'token': 'tk-value-9981', 'pin': '918273'}", "tk-value-9981"),
    ("DASHBOARD_SECRET_KEY=f00dbabe-cafe", "f00dbabe-cafe"),
    ("token abcd1234efgh5678ijkl", "abcd1234efgh5678ijkl"),
    ("pause: dhan token=zz81xx pin=4455", "zz81xx"),
    ('{"accessToken": "eyJhbGciOiJIUzUxMiJ9.eyJleHAiOjE3MDB9.c2lnbmF0dXJl"}', "c2lnbmF0dXJl"),
    ("Authorization: Bearer abcdef1234567890", "abcdef1234567890"),
    ("https://x.example/cb?client=1&access_token=q9q9q9q9&x=1", "q9q9q9q9"),
])
def test_unregistered_secret_shapes_are_masked(line, secret):
    assert secret not in redact(line)


@pytest.mark.parametrize("line", [
    "engine.actors.token: token actor idle",
    "engine.actors.token: 3 restarts in 60s",
    "pinned the near expiry; spinning up the scanner",
    "usage prompt_tokens=812 completion_tokens=40 tokens=852",
    "token: expired at 2025-02-04 09:15 IST",
    "client_id=1100000001 mode=paper",
    "the secret of a good spread",
])
def test_ordinary_words_survive(line):
    assert redact(line) == line


@pytest.mark.parametrize(("key", "secret"), [
    ("token", True), ("DHAN_PIN", True), ("accessToken", True), ("api_key", True),
    ("DASHBOARD_SECRET_KEY", True), ("totp_seed", True), ("zapikey", True),
    ("pinned", False), ("spinning", False), ("tokens", False), ("prompt_tokens", False),
    ("client_id", False), ("TELEGRAM_CHAT_ID", False), ("keyboard", False),
])
def test_secret_key_names(key, secret):
    assert is_secret_key(key) is secret


def test_engine_up_state_line_redacts_the_pause_reason(pool, capsys):
    with pool.connection() as conn:
        conn.execute("UPDATE risk_envelope_state SET pause_reason = %s WHERE id = 1",
                     ("token refresh failed: token=tok-5544aa pin=102938",))
    _print_state(pool, "state")
    out = capsys.readouterr().out
    assert "PAUSED" in out and "tok-5544aa" not in out and "102938" not in out
