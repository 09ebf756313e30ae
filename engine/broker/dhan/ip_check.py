"""The static-IP preflight: is this machine's egress IP the one whitelisted at Dhan?

Dhan refuses place/modify/cancel from an address that is not the account's primary or
secondary static IP (DH-911, or DH-905 "Invalid IP"; reference dhan-api.md §2, §7). The check
asks an echo service what address our requests leave from (``LIVE_IP_ECHO_URL``: plain text
such as ``https://api.ipify.org``, or JSON ``{"ip": ...}``) and Dhan which addresses it
whitelists (``GET /ip/getIP``). A mismatch pauses *live* entries through the preflight's gate
(one alert); a later match lifts the pause (one alert). A check that cannot be made (echo or
Dhan unreachable) changes nothing and says so: an order answered DH-911 still pauses live
entries through the live broker.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from engine.execution.preflight import LiveGate

logger = logging.getLogger(__name__)

__all__ = ["IpCheckResult", "StaticIpCheck", "egress_ip"]

GATE_KIND = "ip"


@dataclass(frozen=True, slots=True)
class IpCheckResult:
    """``status``: ``match``, ``mismatch`` or ``unknown`` (with why)."""

    status: str
    egress: str | None
    whitelisted: tuple[str, ...]
    detail: str


def egress_ip(url: str, *, timeout: float = 5.0,
              session: requests.Session | None = None) -> str:
    """The address an echo service at ``url`` sees (plain text or JSON ``{"ip": ...}``).

    Raises:
        ValueError: the answer is not an IP address.
        requests.RequestException: the service could not be reached.
    """
    resp = (session or requests).get(url, timeout=timeout)
    resp.raise_for_status()
    text = resp.text.strip()
    if text.startswith("{"):
        text = str(json.loads(text).get("ip", "")).strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"echo service {url} answered {text[:60]!r}, not an IP address") from None


class StaticIpCheck:
    """Compare the egress IP with Dhan's whitelist and gate live entries.

    Args:
        client: a :class:`~engine.broker.dhan.client.DhanClient` (``static_ips()``).
        echo_url: ``() -> URL`` of the echo service (the setting ``LIVE_IP_ECHO_URL``).
        gate: the live-entry gate of the preflight.
    """

    def __init__(self, client: Any, echo_url: Callable[[], str], gate: LiveGate, *,
                 session: requests.Session | None = None) -> None:
        self._client, self._echo_url, self.gate = client, echo_url, gate
        self._session = session

    def run(self) -> IpCheckResult:
        url = self._echo_url()
        try:
            egress = egress_ip(url, session=self._session)
        except (requests.RequestException, ValueError) as exc:
            return self._unknown(None, (), f"egress IP not read from {url}: {exc}")
        try:
            ips = self._client.static_ips()
        except Exception as exc:  # Dhan unreachable or its error array
            return self._unknown(egress, (), f"Dhan's static IPs not read: {exc}")
        listed = tuple(ip for ip in (ips.get("primaryIP"), ips.get("secondaryIP")) if ip)
        if egress in listed:
            self.gate.clear(GATE_KIND, f"egress IP {egress} is whitelisted at Dhan")
            logger.info("static-IP preflight: egress %s is whitelisted at Dhan", egress)
            return IpCheckResult("match", egress, listed, "whitelisted")
        detail = (f"this machine's egress IP is {egress} (from {url}) but Dhan whitelists "
                  f"{', '.join(listed) or 'no IP'} (GET /ip/getIP): every order would be refused "
                  "with DH-911. Set the static IP at Dhan (web.dhan.co > DhanHQ APIs > Static IP, "
                  "or POST /ip/setIP) or send the engine's traffic from the whitelisted address")
        self.gate.block(GATE_KIND, detail)
        return IpCheckResult("mismatch", egress, listed, detail)

    @staticmethod
    def _unknown(egress: str | None, listed: tuple[str, ...], why: str) -> IpCheckResult:
        logger.warning("static-IP preflight not made: %s (live entries not paused for it; a "
                       "DH-911 order answer still pauses them)", why)
        return IpCheckResult("unknown", egress, listed, why)
