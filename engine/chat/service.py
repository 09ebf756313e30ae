"""Builds chat control from the configuration and runs it in the engine.

* the channels (Telegram, Cliq — the enabled ones) and the :class:`ChannelRegistry` (primary:
  the CHAT_PRIMARY setting) the NotifierActor delivers the outbox with;
* the Telegram poller (one per bot token across engines) that answers commands;
* follow-ups: a queued command's outcome (and a chat-started backtest's result) told to the
  chat that asked, checked between polls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.chat import outbox
from engine.chat.cliq import CliqClient
from engine.chat.commands import Sender
from engine.chat.control import AllowList, ChatControl
from engine.chat.registry import ChannelRegistry
from engine.chat.telegram import TelegramClient, TelegramPoller
from engine.config import Config
from engine.store.tx import transaction

logger = logging.getLogger(__name__)


def telegram_sender(update: dict[str, Any]) -> tuple[Sender, str] | None:
    """The sender and text of a Telegram update (None: not a text message)."""
    msg = update.get("message") or update.get("edited_message")
    if not isinstance(msg, dict) or not isinstance(msg.get("text"), str):
        return None
    chat = msg.get("chat") or {}
    user = msg.get("from") or {}
    name = user.get("username") or " ".join(
        str(user.get(k) or "") for k in ("first_name", "last_name")).strip()
    sender = Sender(channel="telegram", user_id=str(user.get("id", chat.get("id", ""))),
                    chat_id=str(chat.get("id", "")), name=str(name or user.get("id", "")),
                    is_group=chat.get("type") in ("group", "supergroup", "channel"))
    return sender, msg["text"]


def telegram_handler(control: ChatControl) -> Callable[[Any, dict[str, Any]], None]:
    """``handle(conn, update)`` for the poller: answer through the outbox, same transaction."""

    def handle(conn: Any, update: dict[str, Any]) -> None:
        got = telegram_sender(update)
        if got is None:
            return
        sender, text = got
        reply = control.handle(conn, sender, text, external_id=str(update["update_id"]))
        if reply:
            outbox.queue(conn, reply, channel="telegram", chat_id=sender.chat_id,
                         dedup_key=f"telegram-reply:{update['update_id']}")

    return handle


def _summary(metrics: dict[str, Any]) -> str:
    keys = ("net_pnl", "trades", "win_rate", "max_drawdown", "sharpe")
    parts = [f"{k} {metrics[k]}" for k in keys if metrics.get(k) is not None]
    return ", ".join(parts) or "no metrics"


def check_followups(pool: Any) -> int:
    """Tell each chat the outcome of the commands it queued, once. Returns how many told."""
    told = 0
    with transaction(pool) as conn:
        rows = conn.execute(
            "SELECT f.id, f.channel, f.chat_id, f.command_id, f.run_id, c.kind, c.status,"
            " c.error, c.result, r.status AS run_status, r.metrics_json, r.error_text,"
            " r.strategy, r.start_date, r.end_date"
            " FROM chat_followups f JOIN engine_commands c ON c.id = f.command_id"
            " LEFT JOIN backtest_runs r ON r.run_id = f.run_id"
            " WHERE f.done_at IS NULL ORDER BY f.id LIMIT 50 FOR UPDATE OF f SKIP LOCKED"
        ).fetchall()
        for row in rows:
            text = None
            if row["status"] == "error":
                text = f"Command #{row['command_id']} {row['kind']} failed: {row['error']}"
            elif row["status"] == "done" and row["run_id"] is None:
                text = f"Command #{row['command_id']} {row['kind']} done."
            elif row["status"] == "done" and row["run_status"] in ("complete", "error"):
                head = (f"Backtest run {row['run_id']} {row['strategy']} {row['start_date']} .."
                        f" {row['end_date']}")
                text = (f"{head} complete: {_summary(dict(row['metrics_json'] or {}))}"
                        if row["run_status"] == "complete" else
                        f"{head} failed: {row['error_text']}")
            if text is None:
                continue
            conn.execute("UPDATE chat_followups SET done_at = now() WHERE id = %s", (row["id"],))
            outbox.queue(conn, text, channel=row["channel"], chat_id=row["chat_id"],
                         dedup_key=f"followup:{row['id']}")
            told += 1
    return told


class ChatService:
    """The chat side of one engine: channels, registry, control and (Telegram) the poller."""

    def __init__(self, config: Config, pool: Any, settings: Any, *,
                 log_path: Path | None = None) -> None:
        self.pool = pool
        self.channels: list[Any] = []
        self.telegram: TelegramClient | None = None
        if config.telegram_enabled:
            self.telegram = TelegramClient(config.telegram_api_base, config.telegram_bot_token,
                                           config.telegram_chat_id)
            self.channels.append(self.telegram)
        if config.cliq_enabled:
            self.channels.append(CliqClient(config.cliq_webhook_url))
        self.registry = ChannelRegistry(self.channels,
                                        primary=lambda: str(settings.get("CHAT_PRIMARY")))
        allowed = (*config.telegram_allowed_chat_ids,
                   *((config.telegram_chat_id,) if config.telegram_chat_id else ()))
        self.control = ChatControl(settings, AllowList.of(allowed, config.cliq_allowed_users),
                                   totp_secret=config.dashboard_totp_secret,
                                   log_path=log_path or config.log_dir / "engine.log")
        self._dsn = config.database_url
        self._poll_timeout = config.telegram_poll_timeout
        self.poller: TelegramPoller | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, dsn: str | None = None) -> ChatService:
        """Poll Telegram (when enabled) and check follow-ups (after each poll and every 5 s)."""
        if self.telegram is not None:  # also checks follow-ups after each poll
            self.poller = TelegramPoller(dsn or self._dsn, self.pool, self.telegram,
                                         telegram_handler(self.control),
                                         poll_timeout=self._poll_timeout,
                                         idle=self.followups).start()
        self._thread = threading.Thread(target=self._followup_loop, name="chat-followups",
                                        daemon=True)
        self._thread.start()
        return self

    def followups(self) -> None:
        check_followups(self.pool)

    def _followup_loop(self) -> None:
        while not self._stop.wait(5.0):
            try:
                self.followups()
            except Exception:
                logger.exception("chat follow-ups failed")

    def stop(self) -> None:
        self._stop.set()
        if self.poller is not None:
            self.poller.stop()
        if self._thread is not None:
            self._thread.join(5.0)
