"""TokenActor: keeps the Dhan access token alive (renew ahead of expiry, mint with PIN+TOTP).

In paper mode there is no token to keep, and the actor idles (still supervised, so the
structure is the same in every mode). With Dhan configured it delegates each check to a
``TokenManager`` (engine.broker.dhan.token) and publishes TokenRefreshed / TokenRefreshFailed;
a refresh failure with the token near expiry pauses new entries.
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

    def handle(self, message: Any) -> Any:
        match message:
            case TokenCheckTick() | RefreshToken() if self._manager is None:
                return None
            case TokenCheckTick(at=at):
                self._check(at, force=False)
            case RefreshToken():
                self._check(self.clock.now(), force=True)
            case _:
                return super().handle(message)
        return None

    def _check(self, now, *, force: bool) -> None:
        result = self._manager.check(now, force=force)
        action = getattr(result, "action", str(result))
        if action in ("renewed", "minted"):
            self.publish(self.new(TokenRefreshed, expires_at=getattr(result, "expires_at", None)))
        elif action == "blocked":
            reason = getattr(result, "reason", "token cannot be refreshed")
            self.publish(self.new(TokenRefreshFailed, reason=reason))
            self.send("risk", self.new(PauseEntries, reason=f"Dhan token: {reason}", source="token"))
