"""Chat channel adapters. Each has ``name`` and ``send(text)``; errors raise ChatError.

Telegram: POST {TELEGRAM_API_BASE}/bot<token>/sendMessage {chat_id, text}. Zoho Cliq: POST the
incoming-webhook URL with {"text": ...}. The bot token and webhook URL are secrets: errors name
the channel and the HTTP status, never the URL.
"""

from __future__ import annotations

import logging

import requests

from engine.config import Config
from engine.logsetup import register_secret

logger = logging.getLogger(__name__)
chat_log = logging.getLogger("engine.chat")


class ChatError(RuntimeError):
    """A chat channel refused or could not be reached."""


class LogChannel:
    name = "log"

    def send(self, text: str) -> None:
        chat_log.info("%s", text)


class TelegramChannel:
    name = "telegram"

    def __init__(self, api_base: str, bot_token: str, chat_id: str, timeout: float = 10.0) -> None:
        register_secret(bot_token)
        self._url = f"{api_base.rstrip('/')}/bot{bot_token}/sendMessage"
        self._chat_id = chat_id
        self._timeout = timeout
        self._session = requests.Session()

    def send(self, text: str) -> None:
        try:
            r = self._session.post(self._url, json={"chat_id": self._chat_id, "text": text},
                                   timeout=self._timeout)
        except requests.RequestException as exc:
            raise ChatError(f"telegram unreachable: {type(exc).__name__}") from None
        try:
            body = r.json() if r.headers.get("content-type", "").startswith(
                "application/json") else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if r.status_code != 200 or not body.get("ok", False):
            raise ChatError(f"telegram refused the message: HTTP {r.status_code} "
                            f"{body.get('description', '')}".strip())


class CliqChannel:
    name = "cliq"

    def __init__(self, webhook_url: str, timeout: float = 10.0) -> None:
        register_secret(webhook_url)
        self._url = webhook_url
        self._timeout = timeout
        self._session = requests.Session()

    def send(self, text: str) -> None:
        try:
            r = self._session.post(self._url, json={"text": text}, timeout=self._timeout)
        except requests.RequestException as exc:
            raise ChatError(f"cliq unreachable: {type(exc).__name__}") from None
        if r.status_code not in (200, 204):
            raise ChatError(f"cliq refused the message: HTTP {r.status_code}")


def channels_from_config(config: Config) -> list:
    """Log-only always, plus every enabled chat channel."""
    channels: list = [LogChannel()]
    if config.telegram_enabled:
        channels.append(TelegramChannel(config.telegram_api_base, config.telegram_bot_token,
                                        config.telegram_chat_id))
    if config.cliq_enabled:
        channels.append(CliqChannel(config.cliq_webhook_url))
    return channels
