"""Dhan connection settings from environment variables (secrets hidden from repr)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_API_BASE = "https://api.dhan.co/v2"
DEFAULT_AUTH_BASE = "https://auth.dhan.co"
DEFAULT_INSTRUMENTS_URL = "https://images.dhan.co/api-data/api-scrip-master-detailed.csv"
DEFAULT_TIMEOUT_SEC = 10.0
DEFAULT_RETRY_BACKOFF_SEC = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class DhanConfig:
    """Everything needed to talk to Dhan (or the simulator).

    Environment variables: ``DHAN_CLIENT_ID``, ``DHAN_ACCESS_TOKEN``, ``DHAN_PIN``,
    ``DHAN_TOTP_SECRET``, ``DHAN_API_BASE``, ``DHAN_AUTH_BASE``, ``DHAN_INSTRUMENTS_URL``,
    ``DHAN_TIMEOUT_SEC``, ``DHAN_RETRY_BACKOFF_SEC`` (the first wait before a retried call,
    doubled for each further retry).
    """

    client_id: str
    access_token: str | None = field(default=None, repr=False)
    pin: str | None = field(default=None, repr=False)
    totp_secret: str | None = field(default=None, repr=False)
    api_base: str = DEFAULT_API_BASE
    auth_base: str = DEFAULT_AUTH_BASE
    instruments_url: str = DEFAULT_INSTRUMENTS_URL
    timeout_sec: float = DEFAULT_TIMEOUT_SEC
    retry_backoff_sec: float = DEFAULT_RETRY_BACKOFF_SEC

    @property
    def can_mint(self) -> bool:
        """True when PIN and TOTP secret are configured (TOTP minting possible)."""
        return bool(self.pin and self.totp_secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DhanConfig:
        """Read the ``DHAN_*`` variables.

        Raises:
            ValueError: ``DHAN_CLIENT_ID`` missing, or ``DHAN_TIMEOUT_SEC`` /
                ``DHAN_RETRY_BACKOFF_SEC`` not a positive number.
        """
        env = os.environ if env is None else env
        client_id = env.get("DHAN_CLIENT_ID", "").strip()
        if not client_id:
            raise ValueError("DHAN_CLIENT_ID is not set: the Dhan client id is required")
        raw_timeout = env.get("DHAN_TIMEOUT_SEC", str(DEFAULT_TIMEOUT_SEC))
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ValueError(f"DHAN_TIMEOUT_SEC must be a number, got {raw_timeout!r}") from None
        if timeout <= 0:
            raise ValueError(f"DHAN_TIMEOUT_SEC must be positive, got {timeout}")
        raw_backoff = env.get("DHAN_RETRY_BACKOFF_SEC", str(DEFAULT_RETRY_BACKOFF_SEC))
        try:
            backoff = float(raw_backoff)
        except ValueError:
            raise ValueError(f"DHAN_RETRY_BACKOFF_SEC must be a number, got {raw_backoff!r}"
                             ) from None
        if backoff <= 0:
            raise ValueError(f"DHAN_RETRY_BACKOFF_SEC must be positive, got {backoff}")
        return cls(
            client_id=client_id,
            access_token=env.get("DHAN_ACCESS_TOKEN") or None,
            pin=env.get("DHAN_PIN") or None,
            totp_secret=env.get("DHAN_TOTP_SECRET") or None,
            api_base=env.get("DHAN_API_BASE") or DEFAULT_API_BASE,
            auth_base=env.get("DHAN_AUTH_BASE") or DEFAULT_AUTH_BASE,
            instruments_url=env.get("DHAN_INSTRUMENTS_URL") or DEFAULT_INSTRUMENTS_URL,
            timeout_sec=timeout,
            retry_backoff_sec=backoff,
        )
