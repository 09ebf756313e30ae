"""The live-operations bundle the wiring builds for ``BROKER=dhan`` (service ``live_ops``):
the live-entry gate and margin preflight the live broker consults, the static-IP check, the
broker backstops and the thread of daily checks. The engine connects its alerts when it
starts (:meth:`LiveOps.start`) and tells it about supervisor escalations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from engine.broker.dhan.ip_check import StaticIpCheck
from engine.broker.dhan.margin import DhanMarginCalculator
from engine.execution.preflight import LiveGate, LivePreflight
from engine.ops.backstops import BrokerBackstops
from engine.ops.daily import LiveDailyChecks

logger = logging.getLogger(__name__)

__all__ = ["LiveOps"]


class LiveOps:
    """Args:
        client: the Dhan client.
        setting: ``setting(key)`` (the settings registry).
        calendar: the exchange calendar (``is_trading_day``).
        product_type: the live broker's product (margin calculator).
    """

    def __init__(self, client: Any, setting: Callable[[str], Any], calendar: Any, *,
                 product_type: str = "MARGIN") -> None:
        self._alert_target: Callable[[str], None] | None = None
        self.gate = LiveGate(self._alert)
        self.preflight = LivePreflight(
            calculator=DhanMarginCalculator(client, product_type=product_type),
            funds=client.fund_limits,
            max_util=lambda: Decimal(str(setting("LIVE_MAX_MARGIN_UTIL"))), gate=self.gate)
        self.ip_check = StaticIpCheck(client, lambda: str(setting("LIVE_IP_ECHO_URL")),
                                      self.gate)
        self.backstops = BrokerBackstops(client, setting, self._alert)
        self.daily = LiveDailyChecks(ip_check=self.ip_check, backstops=self.backstops,
                                     calendar=calendar, setting=setting)

    def _alert(self, text: str) -> None:
        target = self._alert_target
        if target is None:
            logger.critical("(alert before the engine started) %s", text)
            return
        target(text)

    def start(self, alert: Callable[[str], None], *, daily: bool = True) -> LiveOps:
        """Connect the alerts; start the daily checks' thread (its first round runs the
        static-IP check and sets the day's P&L exit)."""
        self._alert_target = alert
        if daily:
            self.daily.start()
        return self

    def stop(self) -> None:
        self.daily.stop()

    def arm_kill_switch(self, reason: str) -> threading.Thread:
        """The operator asked for Dhan's kill switch: arm it in a thread of its own (the
        command bus never waits on the broker) and always tell the operator the outcome
        (activated, refused by Dhan, or waiting for the account to be flat)."""

        def arm() -> None:
            try:
                outcome = self.backstops.arm_kill_switch(reason)
            except Exception as exc:
                logger.exception("kill switch requested by the operator failed")
                self._alert(f"Dhan kill switch NOT activated ({reason}): {exc}")
                return
            if not outcome.alerted:
                self._alert(outcome.text)

        thread = threading.Thread(target=arm, name="kill-switch-by-operator", daemon=True)
        thread.start()
        return thread

    def on_escalation(self, reason: str) -> threading.Thread:
        """The supervisor escalated: arm the kill switch (when enabled) in a thread of its
        own, so the supervisor never waits on the broker."""

        def arm() -> None:
            try:
                self.backstops.on_escalation(reason)
            except Exception:
                logger.exception("kill switch on escalation failed")

        thread = threading.Thread(target=arm, name="kill-switch-on-escalation", daemon=True)
        thread.start()
        return thread
