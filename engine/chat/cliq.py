"""Zoho Cliq: outgoing messages through the incoming-webhook API, incoming commands as the
JSON a Cliq bot message handler posts to the dashboard (``POST /api/chat/cliq``).

Outgoing: POST ``CLIQ_WEBHOOK_URL`` — ``{base}/api/v2/channelsbyname/<channel>/message?zapikey=…``
or ``{base}/api/v2/bots/<bot>/message?zapikey=…`` — with ``{"text": ...}``; Cliq answers 200
or 204. The URL holds the zapikey: it is a secret, never logged (errors name the HTTP status).

Incoming: the bot's message handler (Deluge) calls the dashboard with the header
``X-Cliq-Secret: <CLIQ_WEBHOOK_SECRET>`` and a body of the handler's own parameters:
``{"message": "/status", "user": {"id": "...", "email": "...", "first_name": "..."},
"chat": {"id": "...", "type": "..."}, "message_id": "..."}``; the answer ``{"text": ...}`` is
the message the handler returns to the user.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from engine.notify.channels import ChatError
from engine.redact import register_secret

logger = logging.getLogger(__name__)

MAX_MESSAGE = 5000      # Cliq's limit on a message's text (longer text is split)
MAX_RETRIES = 3
SECRET_HEADER = "X-Cliq-Secret"  # noqa: S105 - a header name, not a secret


class CliqClient:
    name = "cliq"
    supports_targets = True

    def __init__(self, webhook_url: str, *, timeout: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None) -> None:
        if not webhook_url:
            raise ValueError("webhook_url: required for Cliq (CLIQ_WEBHOOK_URL)")
        register_secret(webhook_url)
        self._url = webhook_url
        self._timeout = timeout
        self._sleep = sleep
        self._session = session or requests.Session()

    def send(self, text: str, *, chat_id: str | None = None, silent: bool = False) -> int:
        """Post ``text`` (in parts of at most 5000 characters) to the webhook's channel or bot.
        ``chat_id`` and ``silent`` have no Cliq meaning (the webhook names the target)."""
        from engine.chat.telegram import split_message

        parts = split_message(text, MAX_MESSAGE)
        for part in parts:
            self._post(part)
        return len(parts)

    def _post(self, text: str) -> None:
        failures = 0
        while True:
            try:
                r = self._session.post(self._url, json={"text": text}, timeout=self._timeout)
            except requests.RequestException as exc:
                failures += 1
                if failures >= MAX_RETRIES:
                    raise ChatError(f"cliq unreachable: {type(exc).__name__}") from None
                self._sleep(0.25 * 2 ** failures)
                continue
            if r.status_code in (200, 201, 204):
                return
            if r.status_code == 429 or r.status_code >= 500:
                failures += 1
                if failures < MAX_RETRIES:
                    self._sleep(0.25 * 2 ** failures)
                    continue
            raise ChatError(f"cliq refused the message: HTTP {r.status_code}")


def secret_ok(expected: str, presented: str | None) -> bool:
    """Constant-time check of the handler's shared secret (an unset secret never matches)."""
    return bool(expected) and hmac.compare_digest(expected.encode(), (presented or "").encode())


@dataclass(frozen=True, slots=True)
class CliqMessage:
    text: str
    user_id: str
    email: str
    name: str
    chat_id: str
    message_id: str


def parse_handler_body(body: Any) -> CliqMessage:
    """The message of a Cliq bot handler's call, or ValueError naming what is missing."""
    if not isinstance(body, Mapping):
        raise ValueError("body: expected a JSON object")
    text = body.get("message", body.get("text"))
    if isinstance(text, Mapping):
        text = text.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("message: expected the text the user sent")
    user = body.get("user") if isinstance(body.get("user"), Mapping) else {}
    user_id = str(user.get("id") or user.get("zuid") or "").strip()
    email = str(user.get("email") or "").strip().lower()
    if not user_id and not email:
        raise ValueError("user: expected the sender's id or email")
    chat = body.get("chat") if isinstance(body.get("chat"), Mapping) else {}
    name = " ".join(str(user.get(k) or "") for k in ("first_name", "last_name")).strip()
    return CliqMessage(text=text.strip()[:4000], user_id=user_id, email=email,
                       name=name or email or user_id, chat_id=str(chat.get("id") or ""),
                       message_id=str(body.get("message_id") or ""))
