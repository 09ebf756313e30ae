"""Simulator accounts and tokens: HS512 JWTs like Dhan's, TOTP minting, renew-kills-old."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pyotp

from engine.timeutil import IST

TOKEN_TTL = 86400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Account:
    """One simulated Dhan client (its PIN and TOTP secret are simulator-only)."""

    client_id: str
    pin: str = "123456"
    totp_secret: str = field(default_factory=pyotp.random_base32)
    name: str = "SIM TRADER"
    sod_limit: float = 1_000_000.0
    data_plan: bool = True
    allowed_ips: set[str] | None = None  # None: no static-IP check
    current_token: str | None = None
    last_mint_at: float | None = None
    kill_switch: bool = False  # POST /killswitch: orders refused while active
    kill_switch_pending: bool = False  # a P&L exit asked for it once its exits fill
    primary_ip: str | None = None  # /ip/setIP (allowed_ips follows primary + secondary)
    secondary_ip: str | None = None
    ip_modified: dict[str, str] = field(default_factory=dict)  # ipFlag -> when
    pnl_exit: dict | None = None  # POST /pnlExit: the day's P&L-based exit, when active


class TokenError(Exception):
    """Token refused; ``code`` is DH-901 (invalid/expired) or DH-906 (revoked)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Authority:
    """Issues and verifies tokens for the simulator's accounts.

    Args:
        clock: epoch seconds (injectable).
        mint_throttle: seconds during which a second TOTP mint is refused (Dhan: ~120).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 mint_throttle: float = 120.0) -> None:
        self._key = secrets.token_bytes(32)
        self._clock = clock
        self.mint_throttle = mint_throttle
        self.accounts: dict[str, Account] = {}
        self._lock = threading.Lock()

    def add_account(self, account: Account) -> Account:
        """Register ``account``."""
        with self._lock:
            self.accounts[account.client_id] = account
        return account

    def issue(self, client_id: str, *, ttl: int = TOKEN_TTL) -> tuple[str, int]:
        """Issue a token for ``client_id`` (killing its previous one). Returns (token, exp)."""
        with self._lock:
            account = self.accounts[client_id]
            iat = int(self._clock())
            exp = iat + ttl
            header = {"typ": "JWT", "alg": "HS512"}
            claims = {"iss": "dhan", "partnerId": "", "exp": exp, "iat": iat,
                      "tokenConsumerType": "SELF", "webhookUrl": "", "dhanClientId": client_id,
                      "jti": secrets.token_hex(4)}
            signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
            sig = hmac.new(self._key, signing.encode(), hashlib.sha512).digest()
            token = f"{signing}.{_b64(sig)}"
            account.current_token = token
            return token, exp

    def verify(self, token: str | None) -> Account:
        """Return the account of a valid current token.

        Raises:
            TokenError: DH-901 for a missing/forged/expired token, DH-906 for a revoked one.
        """
        invalid = TokenError("DH-901", "Client ID or user generated access token is invalid "
                                       "or expired.")
        if not token or token.count(".") != 2:
            raise invalid
        signing, _, sig = token.rpartition(".")
        good = hmac.new(self._key, signing.encode(), hashlib.sha512).digest()
        try:
            if not hmac.compare_digest(_unb64(sig), good):
                raise invalid
            claims = json.loads(_unb64(signing.split(".")[1]))
        except (ValueError, TypeError):
            raise invalid from None
        if claims.get("exp", 0) <= self._clock():
            raise invalid
        with self._lock:
            account = self.accounts.get(str(claims.get("dhanClientId")))
            if account is None:
                raise invalid
            if account.current_token != token:
                raise TokenError("DH-906", "Invalid Token")
            return account

    def mint(self, client_id: str, pin: str, totp: str) -> dict[str, object]:
        """generateAccessToken: a flat token object, or ``{"status": "error", ...}``."""
        account = self.accounts.get(client_id)
        if account is None or not pin or pin != account.pin:
            return {"status": "error", "message": "Invalid client id or PIN"}
        if not pyotp.TOTP(account.totp_secret).verify(totp or "", valid_window=1):
            return {"status": "error", "message": "Invalid TOTP"}
        now = self._clock()
        if account.last_mint_at is not None and now - account.last_mint_at < self.mint_throttle:
            return {"status": "error",
                    "message": "Token generated recently, please try again after some time"}
        account.last_mint_at = now
        token, exp = self.issue(client_id)
        return {"dhanClientId": client_id, "dhanClientName": account.name,
                "dhanClientUcc": "SIMU12345X", "givenPowerOfAttorney": False,
                "accessToken": token,
                "expiryTime": datetime.fromtimestamp(exp, IST).strftime("%Y-%m-%dT%H:%M:%S.000")}

    def expiry_of(self, token: str) -> int:
        """``exp`` claim of a token this authority issued (0 when unreadable)."""
        try:
            return int(json.loads(_unb64(token.split(".")[1])).get("exp", 0))
        except (ValueError, IndexError, TypeError):
            return 0
