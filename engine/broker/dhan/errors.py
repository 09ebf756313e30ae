"""Typed Dhan errors and the classifier that turns a wire response into one.

Dhan has no single error envelope (reference §8):

* trading APIs: ``{"errorType", "errorCode": "DH-9xx", "errorMessage"}``;
* data APIs: ``{"status": "failed", "data": {"<code>": "<message>"}}`` (codes 800-814);
* auth minting: HTTP 200 ``{"status": "error", "message": ...}``;
* gateway: ``{"timestamp", "status": 404, "error", "path"}``; 502/504 with no body.

DH-905 and DH-906 are not diagnostic by code alone, so the message is consulted too
("Invalid IP", "Invalid Token", "Order is in Transit state", "Incorrect request for order").

Messages never carry the access token, PIN or TOTP: every message built here goes through
:func:`redact`, and callers register secrets with :func:`register_secret`.
"""

from __future__ import annotations

from typing import Any

from engine.redact import redact, register_secret  # noqa: F401 -- the one redactor, re-exported


class DhanError(Exception):
    """Base of every error raised by the Dhan client.

    Attributes:
        status: HTTP status (``None`` for transport failures).
        code: ``DH-9xx`` or a data-API code such as ``"813"`` (``None`` when absent).
        error_type: Dhan's ``errorType`` when present.
        endpoint: ``"METHOD /path"`` of the failed call (never with a query string).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.error_type = error_type
        self.endpoint = endpoint
        self.message = redact(message)
        parts = [p for p in (endpoint, f"HTTP {status}" if status else None, code) if p]
        prefix = f"[{' '.join(parts)}] " if parts else ""
        super().__init__(prefix + self.message)


class AuthenticationError(DhanError):
    """DH-901 / 401 / data codes 807-810: the token or client id is invalid or expired."""


class TokenRevokedError(AuthenticationError):
    """DH-906 "Invalid Token": the token was replaced by a renew or a re-mint."""


class AccessDeniedError(DhanError):
    """DH-902 / DH-903 / data code 806: no Data-API plan, segment inactive, no access."""


class RateLimitError(DhanError):
    """DH-904 / 429 / data code 805, or the client-side limiter refused to wait that long."""


class InputError(DhanError):
    """DH-905 and data codes 804, 811-814: missing or bad request fields."""


class IPNotWhitelistedError(DhanError):
    """DH-911 (or DH-905 "Invalid IP"): orders come from an IP that is not whitelisted."""


class OrderError(DhanError):
    """DH-906 order errors (RMS rejection, insufficient funds, ...)."""


class OrderInTransitError(OrderError):
    """DH-906 "Order is in Transit state": too early to cancel; retry shortly."""


class OrderNotFoundError(OrderError):
    """DH-906 "Incorrect request for order": no such order (404 on lookup by correlationId)."""


class DataError(DhanError):
    """DH-907: bad parameters or no data for a data request."""


class TransientError(DhanError):
    """Timeout, connection failure, 5xx, DH-908/909, data code 800: may succeed later."""


class OrderStateUnknownError(TransientError):
    """A place-order outcome could not be established even after looking it up.

    Attributes:
        correlation_id: the correlationId to reconcile with later.
    """

    def __init__(self, message: str, *, correlation_id: str, **kwargs: Any) -> None:
        self.correlation_id = correlation_id
        super().__init__(message, **kwargs)


class MintError(AuthenticationError):
    """generateAccessToken refused (wrong PIN/TOTP, re-mint throttle, ...)."""


_DH_CODES: dict[str, type[DhanError]] = {
    "DH-901": AuthenticationError,
    "DH-902": AccessDeniedError,
    "DH-903": AccessDeniedError,
    "DH-904": RateLimitError,
    "DH-905": InputError,
    "DH-906": OrderError,
    "DH-907": DataError,
    "DH-908": TransientError,
    "DH-909": TransientError,
    "DH-910": DhanError,
    "DH-911": IPNotWhitelistedError,
}

_DATA_CODES: dict[str, type[DhanError]] = {
    "800": TransientError,
    "804": InputError,
    "805": RateLimitError,
    "806": AccessDeniedError,
    "807": AuthenticationError,
    "808": AuthenticationError,
    "809": AuthenticationError,
    "810": AuthenticationError,
    "811": InputError,
    "812": InputError,
    "813": InputError,
    "814": InputError,
}


def _by_message(cls: type[DhanError], message: str) -> type[DhanError]:
    low = message.lower()
    if cls in (InputError, DhanError) and "invalid ip" in low:
        return IPNotWhitelistedError
    if cls is OrderError:
        if "invalid token" in low:
            return TokenRevokedError
        if "transit" in low:
            return OrderInTransitError
        if "incorrect request for order" in low:
            return OrderNotFoundError
    return cls


def _by_status(status: int) -> type[DhanError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return AccessDeniedError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return TransientError
    if status == 400:
        return InputError
    return DhanError


def classify(status: int, body: Any, endpoint: str) -> DhanError | None:
    """Return the error a response represents, or ``None`` when it is a success.

    Args:
        status: HTTP status code.
        body: parsed JSON body (``None`` when empty or not JSON).
        endpoint: ``"METHOD /path"`` for the message.
    """
    if isinstance(body, dict) and body.get("errorCode"):
        code = str(body["errorCode"])
        message = str(body.get("errorMessage") or body.get("errorType") or code)
        cls = _by_message(_DH_CODES.get(code, _by_status(status)), message)
        if code == "DH-1111":
            cls = DhanError  # "No holdings available" at 500: not transient
        return cls(message, status=status, code=code, error_type=body.get("errorType"),
                   endpoint=endpoint)
    if isinstance(body, dict) and str(body.get("status", "")).lower() in ("failed", "failure"):
        data = body.get("data")
        if isinstance(data, dict) and data:
            code, message = next(iter(data.items()))
            code = str(code)
            cls = _DATA_CODES.get(code, _by_status(status))
            return cls(str(message), status=status, code=code, endpoint=endpoint)
        return _by_status(status)(str(body.get("remarks") or "request failed"), status=status,
                                  endpoint=endpoint)
    if isinstance(body, dict) and str(body.get("status", "")).lower() == "error":
        return MintError(str(body.get("message") or "request refused"), status=status,
                         endpoint=endpoint)
    if 200 <= status < 300:
        return None
    if isinstance(body, dict) and "error" in body:
        message = f"{body.get('error')} {body.get('path', '')}".strip()
    else:
        message = "no error body" if body is None else "unexpected error body"
    return _by_status(status)(message, status=status, endpoint=endpoint)
