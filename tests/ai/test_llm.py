"""The LLM port against a local chat-completions server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import logging
import time

import pytest

from engine.ai.llm import LlmClient, LlmConfig, LlmError, LlmTimeout, llm_from_env
from engine.redact import redact
from tests.ai.fake_llm import FakeLlm, Scripted

KEY = "sk-test-0123456789abcdef"


@pytest.fixture
def fake():
    f = FakeLlm(lambda body: '{"ok": true}')
    yield f
    f.close()


def client(fake: FakeLlm, **kw) -> LlmClient:
    kw.setdefault("backoff", (0.01,))
    return LlmClient(LlmConfig.from_env({"LLM_BASE_URL": fake.url, "LLM_MODEL": "m-1",
                                         "LLM_API_KEY": KEY}), **kw)


MSG = [{"role": "user", "content": "hi"}]


def test_answer_usage_json_mode_and_bearer_key(fake) -> None:
    answer = client(fake).chat(MSG)
    assert answer.text == '{"ok": true}'
    assert (answer.input_tokens, answer.output_tokens, answer.attempts) == (120, 40, 1)
    body, headers = fake.requests[0], fake.headers[0]
    assert body["model"] == "m-1" and body["response_format"] == {"type": "json_object"}
    assert body["temperature"] == 0.0 and body["max_tokens"] == 600
    assert headers["Authorization"] == f"Bearer {KEY}"


def test_key_is_a_secret_never_in_repr_logs_or_errors(fake, caplog) -> None:
    c = client(fake, retries=0)
    assert KEY not in repr(c) and KEY not in repr(c.config)
    assert redact(f"calling with {KEY}") == "calling with ***"
    fake.queue(Scripted(status=401, raw=f'{{"error": {{"message": "bad key {KEY}"}}}}'))
    with caplog.at_level(logging.DEBUG), pytest.raises(LlmError) as exc:
        c.chat(MSG)
    assert "HTTP 401" in str(exc.value) and KEY not in str(exc.value)
    assert KEY not in caplog.text


def test_5xx_and_429_are_retried_with_back_off_then_succeed(fake) -> None:
    fake.queue(Scripted(status=503), Scripted(status=429, headers={"Retry-After": "0"}),
               Scripted(content='{"v": 1}', usage=(10, 5)))
    answer = client(fake, retries=2).chat(MSG)
    assert answer.text == '{"v": 1}' and answer.attempts == 3 and len(fake.requests) == 3


def test_retries_exhausted_name_the_status(fake) -> None:
    fake.queue(*[Scripted(status=502)] * 3)
    with pytest.raises(LlmError, match=r"HTTP 502 after 2 attempt"):
        client(fake, retries=1).chat(MSG)
    assert len(fake.requests) == 2


def test_other_4xx_is_not_retried(fake) -> None:
    fake.queue(Scripted(status=404))
    with pytest.raises(LlmError, match="HTTP 404"):
        client(fake, retries=3).chat(MSG)
    assert len(fake.requests) == 1


def test_malformed_completion_body(fake) -> None:
    fake.queue(Scripted(raw='{"choices": []}'))
    with pytest.raises(LlmError, match="not a chat completion"):
        client(fake).chat(MSG)
    fake.queue(Scripted(raw="<html>proxy error</html>"))
    with pytest.raises(LlmError, match="not a chat completion"):
        client(fake).chat(MSG)


def test_slow_answer_times_out_without_retry(fake) -> None:
    fake.queue(Scripted(content="{}", delay=1.0))
    began = time.monotonic()
    with pytest.raises(LlmTimeout, match=r"within 0\.3 s"):
        client(fake, timeout_s=0.3, retries=3).chat(MSG)
    assert time.monotonic() - began < 0.9 and len(fake.requests) == 1


def test_server_without_json_mode_is_asked_again_without_it(fake) -> None:
    fake.refuse_json_mode = True
    c = client(fake)
    assert c.chat(MSG).text == '{"ok": true}'
    assert "response_format" in fake.requests[0] and "response_format" not in fake.requests[1]
    c.chat(MSG)
    assert len(fake.requests) == 3  # remembered: no refused attempt the second time


def test_off_until_base_url_and_model_are_set() -> None:
    assert llm_from_env(env={}) is None
    assert llm_from_env(env={"LLM_BASE_URL": "http://x/v1"}) is None
    assert "LLM_MODEL" in LlmConfig.from_env({"LLM_BASE_URL": "http://x/v1"}).problem()
    with pytest.raises(ValueError, match="LLM_BASE_URL"):
        LlmConfig.from_env({"LLM_BASE_URL": "ftp://x", "LLM_MODEL": "m"})
