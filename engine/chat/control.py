"""Chat control: who may command (allow-lists), TOTP confirmation of dangerous commands,
and the one entry point both channels call, :meth:`ChatControl.handle`.

Everything it writes (queued commands, confirmations, follow-ups, the inbound record) goes
in the caller's transaction: the Telegram poller commits it with the update's offset, the
Cliq endpoint with its request. A command's own failure is rolled back to a savepoint and
answered; it never undoes the offset (a poison message is answered once, not retried).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.chat import commands as c
from engine.chat.commands import Ctx, Parsed, Refused, Sender
from engine.commands.auth import accept_totp
from engine.timeutil import IST

logger = logging.getLogger(__name__)

CONFIRM_SECONDS = 60


@dataclass
class AllowList:
    """Telegram: chat ids (a group only when its own id is listed); Cliq: user ids or emails.
    A refused sender is logged once per process."""

    telegram_chat_ids: frozenset[str] = frozenset()
    cliq_users: frozenset[str] = frozenset()
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, telegram: Iterable[str] = (), cliq: Iterable[str] = ()) -> AllowList:
        return cls(frozenset(str(x).strip() for x in telegram if str(x).strip()),
                   frozenset(str(x).strip().lower() for x in cliq if str(x).strip()))

    def allows(self, sender: Sender, email: str = "") -> bool:
        if sender.channel == "telegram":
            ok = bool(sender.chat_id) and sender.chat_id in self.telegram_chat_ids
        elif sender.channel == "cliq":
            ok = bool({sender.user_id.lower(), email.lower()} & self.cliq_users - {""})
        else:
            ok = False
        if not ok:
            with self._lock:
                first = sender.key + "|" + sender.chat_id not in self._seen
                self._seen.add(sender.key + "|" + sender.chat_id)
            if first:
                logger.warning("chat: ignoring %s (user %s, chat %s%s): not on the allow-list",
                               sender.channel, sender.user_id, sender.chat_id or "-",
                               ", a group" if sender.is_group else "")
        return ok


class ChatControl:
    def __init__(self, settings: Any, allow: AllowList, *, totp_secret: str = "",
                 log_path: Path | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(IST)) -> None:
        self._settings = settings
        self.allow = allow
        self._totp_secret = totp_secret
        self._log_path = log_path
        self._now = now

    def handle(self, conn: Any, sender: Sender, text: str, *, email: str = "",
               external_id: str | None = None) -> str | None:
        """The reply to ``text`` from ``sender`` (None: ignored — not allowed, not a command,
        or an ``external_id`` already handled)."""
        if not self.allow.allows(sender, email):
            return None
        if external_id is not None:
            fresh = conn.execute(
                "INSERT INTO chat_inbound (channel, external_id, sender, text) VALUES"
                " (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING external_id",
                (sender.channel, external_id, sender.key, text[:500])).fetchone()
            if fresh is None:
                logger.info("chat: %s message %s already handled", sender.channel, external_id)
                return None
        parsed = c.parse(text)
        if parsed is None:  # chatter in a group is not for the bot
            return None if sender.is_group else "Send /help for the commands."
        logger.info("chat command from %s: /%s", sender.who, parsed.name)
        try:
            with conn.transaction():  # a savepoint: a failing command rolls back alone
                return self._run(conn, sender, parsed)
        except Refused as exc:
            return str(exc)
        except Exception:
            logger.exception("chat command /%s failed", parsed.name)
            return f"/{parsed.name} failed inside the engine; see the log."

    # ------------------------------------------------------------ running
    def _ctx(self, conn: Any, sender: Sender) -> Ctx:
        return Ctx(conn=conn, sender=sender, settings=self._settings, log_path=self._log_path,
                   now=self._now)

    def _run(self, conn: Any, sender: Sender, parsed: Parsed) -> str:
        if parsed.name == "confirm":
            return self._confirm(conn, sender, parsed)
        handler = c.HANDLERS.get(parsed.name)
        if handler is None:
            raise Refused(f"unknown command /{parsed.name}; send /help for the list")
        if c.dangerous(parsed):
            return self._ask_confirmation(conn, sender, parsed)
        return self._execute(conn, sender, parsed, handler)

    def _execute(self, conn: Any, sender: Sender, parsed: Parsed,
                 handler: Callable[[Ctx, tuple[str, ...]], str]) -> str:
        ctx = self._ctx(conn, sender)
        reply = handler(ctx, parsed.args)
        for command_id, run_id in ctx.followups:
            conn.execute("INSERT INTO chat_followups (channel, chat_id, command_id, run_id)"
                         " VALUES (%s, %s, %s, %s)",
                         (sender.channel, sender.chat_id or None, command_id, run_id))
        return reply

    def _ask_confirmation(self, conn: Any, sender: Sender, parsed: Parsed) -> str:
        c.precheck(parsed)
        if not self._totp_secret:
            raise Refused(f"/{parsed.name} needs a TOTP confirmation, and no "
                          "DASHBOARD_TOTP_SECRET is configured (python -m engine auth setup)")
        conn.execute("UPDATE chat_confirmations SET status = 'cancelled', resolved_at = now(),"
                     " note = 'replaced by a newer command' WHERE channel = %s AND sender = %s"
                     " AND status = 'pending'", (sender.channel, sender.key))
        conn.execute("INSERT INTO chat_confirmations (expires_at, channel, sender, chat_id,"
                     " command) VALUES (now() + make_interval(secs => %s), %s, %s, %s, %s)",
                     (CONFIRM_SECONDS, sender.channel, sender.key, sender.chat_id or None,
                      parsed.text))
        return (f"{parsed.text} is a dangerous command: reply /confirm <6-digit code from "
                f"your authenticator> within {CONFIRM_SECONDS} s. A wrong or late code cancels.")

    def _confirm(self, conn: Any, sender: Sender, parsed: Parsed) -> str:
        row = conn.execute(
            "SELECT id, command, expires_at > now() AS live FROM chat_confirmations"
            " WHERE channel = %s AND sender = %s AND status = 'pending' ORDER BY id DESC"
            " LIMIT 1 FOR UPDATE", (sender.channel, sender.key)).fetchone()
        if row is None:
            raise Refused("Nothing to confirm.")
        code = parsed.args[0] if len(parsed.args) == 1 else ""

        def cancel(note: str) -> None:
            conn.execute("UPDATE chat_confirmations SET status = 'cancelled', resolved_at ="
                         " now(), note = %s WHERE id = %s", (note, row["id"]))

        if not row["live"]:
            cancel("late")
            return f"Too late (more than {CONFIRM_SECONDS} s): {row['command']} cancelled."
        if not (code.isascii() and code.isdigit() and len(code) == 6) or not accept_totp(
                conn, self._totp_secret, code):
            cancel("wrong code")
            logger.warning("chat: wrong TOTP code from %s; %s cancelled", sender.who,
                           row["command"])
            return f"Wrong or already used code: {row['command']} cancelled."
        conn.execute("UPDATE chat_confirmations SET status = 'confirmed', resolved_at = now()"
                     " WHERE id = %s", (row["id"],))
        confirmed = c.parse(row["command"])
        assert confirmed is not None
        logger.info("chat: %s confirmed %s", sender.who, row["command"])
        return self._execute(conn, sender, confirmed, c.HANDLERS[confirmed.name])
