"""``POST /api/chat/cliq``: commands from a Zoho Cliq bot's message handler.

Authenticated by the shared secret ``CLIQ_WEBHOOK_SECRET`` in the ``X-Cliq-Secret`` header
(constant-time compare; no session, no CSRF: the caller is Cliq, not a browser). The sender
must be on ``CLIQ_ALLOWED_USERS``. The command runs through the same engine.chat control as
Telegram's: read-only commands are answered at once; the others are queued into
``engine_commands`` (requested_by ``cliq:<user>``) like every web command, and their outcome
is posted back to the Cliq channel by the engine. The answer ``{"text": ...}`` is what the
handler shows the user (``{}`` when the message was ignored).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import current_app, jsonify, request

from engine.chat.cliq import SECRET_HEADER, parse_handler_body, secret_ok
from engine.chat.commands import Sender
from engine.chat.control import AllowList, ChatControl
from engine.store.tx import transaction
from web.api import bp, error, services

logger = logging.getLogger(__name__)


def chat_control() -> tuple[ChatControl, str]:
    """The app's ChatControl and the expected secret (built once per app). Overrides in the
    Flask config: CLIQ_WEBHOOK_SECRET, CLIQ_ALLOWED_USERS, DASHBOARD_TOTP_SECRET."""
    ext = current_app.extensions
    if "chat_control" not in ext:
        from engine import config as engine_config
        from web.api import runtime_settings

        cfg = current_app.config
        env = engine_config.load()
        secret = cfg.get("CLIQ_WEBHOOK_SECRET", env.cliq_webhook_secret) or ""
        users = cfg.get("CLIQ_ALLOWED_USERS", env.cliq_allowed_users) or ()
        log_dir = services().engine_log_dir or services().log_dir
        control = ChatControl(runtime_settings(), AllowList.of((), users),
                              totp_secret=cfg.get("DASHBOARD_TOTP_SECRET") or "",
                              log_path=Path(log_dir) / "engine.log")
        ext["chat_control"] = (control, secret)
    return ext["chat_control"]


@bp.post("/chat/cliq")
def chat_cliq() -> Any:
    control, secret = chat_control()
    if not secret:
        return error(503, "Cliq commands are off: CLIQ_WEBHOOK_SECRET is not set")
    if not secret_ok(secret, request.headers.get(SECRET_HEADER)):
        logger.warning("POST /api/chat/cliq refused from %s: wrong or missing %s",
                       request.remote_addr, SECRET_HEADER)
        return error(401, f"wrong or missing {SECRET_HEADER} header")
    try:
        msg = parse_handler_body(request.get_json(silent=True))
    except ValueError as exc:
        return error(400, str(exc))
    sender = Sender(channel="cliq", user_id=msg.user_id or msg.email, chat_id=msg.chat_id,
                    name=msg.email or msg.name)
    with transaction(services().pool) as conn:
        reply = control.handle(conn, sender, msg.text, email=msg.email,
                               external_id=msg.message_id or None)
    return jsonify({"text": reply} if reply else {})


@bp.get("/chat/outbox")
def chat_outbox() -> Any:
    """Recent chat messages and which channel delivered each (login-code rows show no text)."""
    from web.api import rows
    from web.validate import Int, query

    values = query({"limit": Int(optional=True, default=50, minimum=1, maximum=500)})
    return jsonify({"messages": rows(
        "SELECT id, created_at, channel, delivered_via, sent_at, error, attempts, silent,"
        " CASE WHEN fallback THEN text ELSE NULL END AS text FROM chat_outbox"
        " ORDER BY id DESC LIMIT %s", (values["limit"],))})
