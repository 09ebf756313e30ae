"""TokenActor: keeps the Dhan access token alive (renew ahead of expiry, mint with PIN+TOTP).

In paper mode there is no token to keep, and the actor idles (still supervised, so the
structure is the same in every mode). With Dhan configured it delegates each check to a
``TokenManager`` (engine.broker.dhan.token) and publishes TokenRefreshed / TokenRefreshFailed;
a refresh failure with the token near expiry pauses new entries.

Token following (services from ``engine.broker.dhan.wiring``): the actor starts the
``dhan_token_follower`` (LISTEN ``dhan_token``: every client drops its cached token when any
process stores a new one) and stops it on stop; it connects the clients' ``dhan_auth_hook``
so a 401 seen by any Dhan client becomes a ``RefreshToken`` to this actor (by role, so a
restarted actor is reached). ``handle`` returns the check result, for callers that ``ask``.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.actors.base import SupervisedActor
from engine.messages.commands import PauseEntries, RefreshToken, TokenCheckTick
from engine.messages.events import TokenRefreshed, TokenRefreshFailed

logger = logging.getLogger(__name__)


class TokenActor(SupervisedActor):
    def setup(self) -> None:
        self._manager = self.ctx.services.get("token_manager")
        if self._manager is None:
            logger.info("token actor idle: no Dhan broker configured (paper mode)")
        self._follower = self.ctx.services.get("dhan_token_follower")
        if self._follower is not None:
            self._follower.start()
        hook = self.ctx.services.get("dhan_auth_hook")
        if hook is not None:
            hook.connect(self._on_auth_error)

    def on_stop(self) -> None:
        hook = self.ctx.services.get("dhan_auth_hook")
        if hook is not None:
            hook.connect(None)
        if getattr(self, "_follower", None) is not None:
            self._follower.stop()

    def _on_auth_error(self, reason: str) -> None:
        """Called from a Dhan client's thread: tell (never call) the token role."""
        msg = RefreshToken(message_id=self.ctx.ids.next_id("dhan-client"), ts=self.clock.now(),
                           reason=reason, force=True)
        self.ctx.directory.send("token", msg, sender="dhan-client")

    def handle(self, message: Any) -> Any:
        match message:
            case TokenCheckTick() | RefreshToken() if self._manager is None:
                return None
            case TokenCheckTick(at=at):
                return self._check(at, force=False)
            case RefreshToken():
                return self._check(self.clock.now(), force=True)
            case _:
                return super().handle(message)

    def _check(self, now, *, force: bool) -> Any:
        result = self._manager.check(now, force=force)
        action = getattr(result, "action", str(result))
        if action in ("renewed", "minted"):
            self.publish(self.new(TokenRefreshed, expires_at=getattr(result, "expires_at", None)))
        elif action == "blocked":
            reason = getattr(result, "reason", "token cannot be refreshed")
            self.publish(self.new(TokenRefreshFailed, reason=reason))
            self.send("risk", self.new(PauseEntries, reason=f"Dhan token: {reason}", source="token"))
        return result
