"""The channel registry: which chat channels are enabled, which is primary, and delivery
that falls back to the next channel when the primary fails (unreachable, 5xx after its own
retries, refused). The channel that delivered is returned so the outbox can record it.

A channel is any object with ``name`` and ``send(text)``; channels that can target a chat or
send silently (the engine.chat clients) also accept ``chat_id=`` and ``silent=``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from engine.notify.channels import ChatError, LogChannel

logger = logging.getLogger(__name__)
chat_log = logging.getLogger("engine.chat")

CHAT_CHANNELS = ("telegram", "cliq")


def send_on(channel: Any, text: str, *, chat_id: str | None = None, silent: bool = False) -> None:
    """``channel.send`` with the target and loudness when the channel understands them."""
    if getattr(channel, "supports_targets", False):
        channel.send(text, chat_id=chat_id, silent=silent)
    else:
        channel.send(text)


class ChannelRegistry:
    """Enabled chat channels by name, tried primary first, then the others in order."""

    def __init__(self, channels: Sequence[Any], primary: str | Callable[[], str] = "telegram"):
        self._channels = {c.name: c for c in channels if getattr(c, "name", "") != "log"}
        self._primary = primary
        self._log = LogChannel()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._channels)

    def get(self, name: str) -> Any | None:
        if name == "log":
            return self._log
        return self._channels.get(name)

    def primary(self) -> str | None:
        try:
            wanted = self._primary() if callable(self._primary) else self._primary
        except Exception as exc:  # a settings read failing must not stop delivery
            logger.warning("chat primary setting unreadable (%s); using the first channel", exc)
            wanted = None
        if wanted in self._channels:
            return wanted
        return next(iter(self._channels), None)

    def order(self, prefer: str | None = None) -> list[str]:
        """Names in the order delivery tries them: ``prefer`` (when enabled), the primary,
        then the rest."""
        first = [n for n in (prefer, self.primary()) if n in self._channels]
        return list(dict.fromkeys(first + list(self._channels)))

    def deliver(self, text: str, *, chat_id: str | None = None, silent: bool = False,
                prefer: str | None = None) -> str:
        """Send ``text`` on the first channel that takes it; returns that channel's name
        (``"log"`` when no chat channel is enabled). ``chat_id`` only goes to ``prefer`` (the
        chat id is that channel's). Raises ChatError listing every channel's failure."""
        chat_log.info("%s", text)
        order = self.order(prefer)
        if not order:
            return "log"
        errors = []
        for name in order:
            target = chat_id if name == prefer else None
            try:
                send_on(self._channels[name], text, chat_id=target, silent=silent)
            except Exception as exc:
                errors.append(f"{name}: {_reason(exc)}")
                logger.warning("chat delivery via %s failed (%s); %s", name, _reason(exc),
                               "trying the next channel" if name != order[-1] else "no channel left")
                continue
            if errors:
                logger.info("chat message delivered via fallback %s after %s", name,
                            "; ".join(errors))
            return name
        raise ChatError("no chat channel delivered: " + "; ".join(errors))


def _reason(exc: Exception) -> str:
    from engine.redact import redact

    return redact(str(exc))[:300] if isinstance(exc, ChatError) else type(exc).__name__
