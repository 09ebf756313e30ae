"""Backstops at the broker: Dhan's kill switch and its P&L-based exit (Trader's Control).

* **Kill switch** (``POST /killswitch``). Dhan activates it only when the account has no
  open position and no pending order, so it cannot protect a naked leg: it stops every
  further order for the rest of the day once the engine is flat. It is armed after a
  supervisor escalation when ``LIVE_KILL_SWITCH_ON_ESCALATION`` is on (at once if the
  account is flat, else as soon as a later check finds it flat), or when the operator asks
  (:meth:`BrokerBackstops.arm_kill_switch`). Either way the operator is told what happened
  or why not.
* **P&L-based exit** (``POST /pnlExit``). Set each trading morning when
  ``LIVE_PNL_EXIT_ENABLED`` is on, at the risk envelope's daily loss cap
  (``RISK_DAILY_LOSS_CAP``) and ``LIVE_PNL_EXIT_PROFIT``: if the engine dies, Dhan squares
  the account off by itself at that loss. Reconciliation books the broker's own square-off
  (``engine.execution.broker_closes``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from engine.broker.dhan.errors import DhanError

logger = logging.getLogger(__name__)

__all__ = ["BrokerBackstops", "KillSwitchOutcome"]

OPEN_ORDER_STATES = frozenset({"TRANSIT", "PENDING", "PART_TRADED"})


@dataclass(frozen=True, slots=True)
class KillSwitchOutcome:
    """What the operator is told, and whether Dhan activated the kill switch."""

    text: str
    activated: bool
    alerted: bool = False  # the operator was already told (an alert carried ``text``)


class BrokerBackstops:
    """Arms Dhan's kill switch and sets its P&L exit (module docstring).

    Args:
        client: a :class:`~engine.broker.dhan.client.DhanClient`.
        setting: ``setting(key) -> value`` (the settings registry).
        alert: ``alert(text)``: tells the operator.
    """

    def __init__(self, client: Any, setting: Callable[[str], Any],
                 alert: Callable[[str], None]) -> None:
        self._client, self._setting, self._alert = client, setting, alert
        self._lock = threading.Lock()
        self._wanted: str | None = None   # why the kill switch waits for the account to be flat
        self._told_waiting = False
        self._pnl_exit_day: date | None = None

    # ------------------------------------------------------------------ kill switch
    def exposure(self) -> tuple[list[str], list[str]]:
        """(open positions, pending orders) at Dhan, as short texts. Raises DhanError."""
        positions = [f"{p.security_id} net {p.net_qty}" for p in self._client.positions(
            priority=True) if p.net_qty != 0]
        pending = [f"{o.order_id} {o.status}" for o in self._client.order_list(priority=True)
                   if o.status in OPEN_ORDER_STATES]
        return positions, pending

    def arm_kill_switch(self, reason: str) -> KillSwitchOutcome:
        """Activate the kill switch now if the account is flat; otherwise say why not and
        keep it wanted (:meth:`poll` retries)."""
        with self._lock:
            self._wanted = reason
            return self._try_arm()

    def on_escalation(self, reason: str) -> KillSwitchOutcome | None:
        """The supervisor escalated: arm when ``LIVE_KILL_SWITCH_ON_ESCALATION`` is on."""
        if not bool(self._setting("LIVE_KILL_SWITCH_ON_ESCALATION")):
            return None
        return self.arm_kill_switch(f"supervisor escalation: {reason}")

    def poll(self) -> KillSwitchOutcome | None:
        """Retry a wanted kill switch (the account may be flat now)."""
        with self._lock:
            return self._try_arm() if self._wanted is not None else None

    @property
    def waiting(self) -> str | None:
        return self._wanted

    def _try_arm(self) -> KillSwitchOutcome:
        reason = self._wanted or "operator"
        try:
            positions, pending = self.exposure()
        except DhanError as exc:
            text = f"Dhan kill switch not activated yet ({reason}): account not read ({exc})"
            logger.warning("%s", text)
            return KillSwitchOutcome(text, False)
        if positions or pending:
            text = (f"Dhan kill switch NOT activated ({reason}): Dhan activates it only with no "
                    f"open position and no pending order; open: {', '.join(positions) or 'none'};"
                    f" pending: {', '.join(pending) or 'none'}. It is activated as soon as the "
                    "account is flat")
            alerted = not self._told_waiting
            if alerted:
                self._told_waiting = True
                self._alert(text)
            logger.warning("%s", text)
            return KillSwitchOutcome(text, False, alerted)
        try:
            self._client.kill_switch(True)
        except DhanError as exc:
            text = f"Dhan kill switch activation refused by Dhan ({reason}): {exc}"
            self._alert(text)
            return KillSwitchOutcome(text, False, True)
        self._wanted, self._told_waiting = None, False
        text = (f"Dhan KILL SWITCH ACTIVATED ({reason}): the account is flat and Dhan refuses "
                "every further order today. It resets on the next trading day (or deactivate "
                "it at Dhan)")
        logger.critical("%s", text)
        self._alert(text)
        return KillSwitchOutcome(text, True, True)

    # ------------------------------------------------------------------ P&L exit
    def set_pnl_exit(self, day: date) -> dict[str, Any] | None:
        """Set the day's P&L exit once per ``day`` when ``LIVE_PNL_EXIT_ENABLED``; returns
        what was sent (``None``: disabled or already set today). Raises DhanError."""
        if not bool(self._setting("LIVE_PNL_EXIT_ENABLED")) or self._pnl_exit_day == day:
            return None
        loss = Decimal(str(self._setting("RISK_DAILY_LOSS_CAP")))
        profit = Decimal(str(self._setting("LIVE_PNL_EXIT_PROFIT")))
        kill = bool(self._setting("LIVE_PNL_EXIT_KILL_SWITCH"))
        self._client.set_pnl_exit(loss=loss, profit=profit, kill_switch=kill)
        self._pnl_exit_day = day
        sent = {"loss": str(loss), "profit": str(profit), "kill_switch": kill,
                "day": day.isoformat()}
        logger.warning("Dhan P&L exit set for %s: square off at -₹%s or +₹%s%s", day, loss,
                       profit, " then kill switch" if kill else "")
        return sent
