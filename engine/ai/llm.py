"""The LLM port: an OpenAI-compatible chat-completions client on ``requests``.

Works with any server that speaks ``POST {LLM_BASE_URL}/chat/completions`` (hosted providers,
llama.cpp server, vLLM, Ollama's ``/v1``). Off until ``LLM_BASE_URL`` and ``LLM_MODEL`` are
set (environment, like the other endpoints and keys; ``LLM_API_KEY`` is optional, a secret:
registered for redaction, sent only in the ``Authorization`` header, never logged, never in an
error text).

Behaviour of :meth:`LlmClient.chat`:

* ``response_format: {"type": "json_object"}`` is asked for when ``json=True``; a server that
  refuses it with a 400 naming ``response_format`` is asked again without it, and is
  remembered as not supporting it.
* 5xx, 429 and connection errors are retried ``retries`` times with back-off 1, 2, 4 s
  (a 429's ``Retry-After`` is honoured, at most 30 s); a timeout is not retried (the call
  may still be running and billed); other 4xx fail at once.
* Every answer carries the token usage the server reported (0 when it reports none).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from engine.redact import redact, register_secret

__all__ = ["LlmAnswer", "LlmClient", "LlmConfig", "LlmError", "LlmTimeout", "llm_from_env"]

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 30.0
MAX_ERROR_CHARS = 300


class LlmError(RuntimeError):
    """A call that produced no usable answer (the message is safe to store and show)."""

    def __init__(self, message: str, *, attempts: int = 1, status: int | None = None) -> None:
        super().__init__(redact(message)[:MAX_ERROR_CHARS])
        self.attempts = attempts
        self.status = status


class LlmTimeout(LlmError):
    """The server did not answer within the timeout."""


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """Where the model is. ``api_key`` is hidden from repr."""

    base_url: str = ""
    model: str = ""
    api_key: str = field(default="", repr=False)

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)

    def problem(self) -> str | None:
        """Why the port is off, or None."""
        if self.configured:
            return None
        missing = [n for n, v in (("LLM_BASE_URL", self.base_url), ("LLM_MODEL", self.model)) if not v]
        return f"the LLM port is not configured (set {' and '.join(missing)})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LlmConfig:
        e = os.environ if env is None else env
        base = e.get("LLM_BASE_URL", "").strip().rstrip("/")
        if base and not base.startswith(("http://", "https://")):
            raise ValueError(f"LLM_BASE_URL={base!r}: expected an http(s) URL such as "
                             "https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
        key = e.get("LLM_API_KEY", "").strip()
        register_secret(key)
        return cls(base_url=base, model=e.get("LLM_MODEL", "").strip(), api_key=key)


@dataclass(frozen=True, slots=True)
class LlmAnswer:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    attempts: int
    latency_ms: int


class LlmClient:
    """One model endpoint. Thread-safe (a new HTTP session per call).

    Args:
        config: endpoint, model, key.
        timeout_s / retries: callables (read per call, so a settings change applies at once)
            or plain numbers.
        sleep: how back-off waits (tests pass a shorter one through ``backoff``).
    """

    def __init__(self, config: LlmConfig, *, timeout_s: Callable[[], float] | float = 30,
                 retries: Callable[[], int] | int = 2, backoff: Sequence[float] = (1.0, 2.0, 4.0),
                 max_tokens: Callable[[], int] | int = 600) -> None:
        if not config.configured:
            raise ValueError(config.problem())
        self.config = config
        self._timeout = timeout_s if callable(timeout_s) else (lambda: float(timeout_s))
        self._retries = retries if callable(retries) else (lambda: int(retries))
        self._max_tokens = max_tokens if callable(max_tokens) else (lambda: int(max_tokens))
        self._backoff = tuple(backoff) or (0.0,)
        self._json_mode = True  # until the server refuses response_format

    @property
    def model(self) -> str:
        return self.config.model

    def __repr__(self) -> str:
        return f"LlmClient({self.config.base_url!r}, model={self.config.model!r})"

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.config.api_key:
            h["Authorization"] = f"Bearer {self.config.api_key}"
        return h

    def chat(self, messages: Sequence[Mapping[str, str]], *, json_mode: bool = True,
             temperature: float = 0.0) -> LlmAnswer:
        """One chat completion; raises LlmError / LlmTimeout (never with the key in it)."""
        body: dict[str, Any] = {"model": self.config.model, "messages": list(messages),
                                "temperature": temperature, "max_tokens": self._max_tokens()}
        use_json = json_mode and self._json_mode
        url = f"{self.config.base_url}/chat/completions"
        retries = max(0, self._retries())
        attempt = 0
        began = time.monotonic()
        while True:
            attempt += 1
            payload = {**body, "response_format": {"type": "json_object"}} if use_json else body
            try:
                resp = requests.post(url, json=payload, headers=self._headers(),
                                     timeout=self._timeout())
            except requests.Timeout:
                raise LlmTimeout(f"no answer from the LLM within {self._timeout():g} s",
                                 attempts=attempt) from None
            except requests.RequestException as exc:
                if attempt <= retries:
                    self._wait(attempt, None)
                    continue
                raise LlmError(f"LLM unreachable after {attempt} attempt(s): "
                               f"{type(exc).__name__}", attempts=attempt) from None
            status = resp.status_code
            if status == 400 and use_json and "response_format" in resp.text:
                logger.info("LLM server refuses response_format; asking without it from now on")
                self._json_mode = use_json = False
                attempt -= 1
                continue
            if status == 429 or status >= 500:
                if attempt <= retries:
                    self._wait(attempt, resp.headers.get("Retry-After"))
                    continue
                raise LlmError(f"LLM answered HTTP {status} after {attempt} attempt(s): "
                               f"{_error_text(resp)}", attempts=attempt, status=status)
            if status != 200:
                raise LlmError(f"LLM refused the call: HTTP {status}: {_error_text(resp)}",
                               attempts=attempt, status=status)
            return self._answer(resp, attempt, began)

    def _answer(self, resp: requests.Response, attempt: int, began: float) -> LlmAnswer:
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LlmError("LLM answer is not a chat completion (no choices[0].message.content): "
                           f"{resp.text[:120]!r}", attempts=attempt) from None
        if not isinstance(text, str):
            raise LlmError("LLM answer content is not text", attempts=attempt)
        usage = data.get("usage") or {}
        return LlmAnswer(text=text, input_tokens=_int(usage.get("prompt_tokens")),
                         output_tokens=_int(usage.get("completion_tokens")),
                         model=str(data.get("model") or self.config.model), attempts=attempt,
                         latency_ms=int((time.monotonic() - began) * 1000))

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = self._backoff[min(attempt - 1, len(self._backoff) - 1)]
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
        logger.info("LLM call attempt %d failed; retrying in %.1f s", attempt, delay)
        time.sleep(delay)


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _error_text(resp: requests.Response) -> str:
    try:
        err = resp.json().get("error")
        text = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        text = resp.text
    return json.dumps(str(text or "")[:200])


def llm_from_env(settings: Any = None, env: Mapping[str, str] | None = None) -> LlmClient | None:
    """The configured client (timeouts and retries from ``settings``), or None when off."""
    config = LlmConfig.from_env(env)
    if not config.configured:
        return None
    if settings is None:
        return LlmClient(config)
    return LlmClient(config, timeout_s=lambda: float(settings.get("LLM_TIMEOUT_S")),
                     retries=lambda: int(settings.get("LLM_RETRIES")),
                     max_tokens=lambda: int(settings.get("AI_MAX_OUTPUT_TOKENS")))
