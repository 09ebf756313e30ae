"""HTTP transport for the Dhan client: headers, rate limiting, error mapping, GET retries.

Every call goes through :meth:`Transport.call`: it waits on the shared rate limiter, sends
with a timeout, maps the answer to a typed :class:`DhanError`, reports authentication
failures to ``on_auth_error`` and retries *only* idempotent, non-order GETs on 429 / 5xx /
timeouts. Exceptions are raised ``from None`` so no library exception (whose text may hold
a URL with a PIN or TOTP) is chained, and every message is redacted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from decimal import Decimal
from typing import Any

import requests

from engine.broker.dhan.errors import (
    AuthenticationError,
    DhanError,
    RateLimitError,
    TransientError,
    classify,
    redact,
    register_secret,
)
from engine.broker.dhan.ratelimit import EndpointClass, RateLimiter, limiter_for
from engine.ops.metrics import record_broker_error

logger = logging.getLogger(__name__)


class _RedactFilter(logging.Filter):
    """Mask secrets in urllib3's DEBUG request lines (they contain query strings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_URLLIB3_LOGGER = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactFilter) for f in _URLLIB3_LOGGER.filters):
    _URLLIB3_LOGGER.addFilter(_RedactFilter())


class Transport:
    """Shared plumbing of :class:`~engine.broker.dhan.client.DhanClient`.

    Args:
        client_id: Dhan client id (``client-id`` header, limiter key).
        token_provider: returns the current access token on every call.
        api_base: REST base such as ``https://api.dhan.co/v2``.
        auth_base: token-minting base such as ``https://auth.dhan.co``.
        timeout: seconds for connect and read of every call.
        limiter: rate limiter; default is the process-wide one of ``client_id``.
        on_auth_error: called with the error on 401 / DH-901 / revoked token.
        session: a ``requests.Session`` to reuse.
        get_retries: extra attempts for idempotent GETs on 429 / 5xx / timeout.
        retry_backoff: first back-off in seconds (doubles each retry).
        max_rate_wait: longest client-side wait for a rate-limit slot.
        header_provider: extra headers computed for every call (the rehearsal's
            ``X-Engine-Time``: the Dhan simulator prices the engine's market at that time).
    """

    def __init__(
        self,
        client_id: str,
        token_provider: Callable[[], str | None],
        *,
        api_base: str,
        auth_base: str,
        timeout: float,
        limiter: RateLimiter | None = None,
        on_auth_error: Callable[[DhanError], None] | None = None,
        session: requests.Session | None = None,
        get_retries: int = 2,
        retry_backoff: float = 0.5,
        max_rate_wait: float = 30.0,
        header_provider: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        if not client_id:
            raise ValueError("client_id is required")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.client_id = str(client_id)
        self._token_provider = token_provider
        self.api_base = api_base.rstrip("/")
        self.auth_base = auth_base.rstrip("/")
        self.timeout = timeout
        self.limiter = limiter or limiter_for(self.client_id)
        self.on_auth_error = on_auth_error
        self.session = session or requests.Session()
        self.get_retries = get_retries
        self.retry_backoff = retry_backoff
        self.max_rate_wait = max_rate_wait
        self.header_provider = header_provider

    def _token(self) -> str:
        token = self._token_provider()
        if not token:
            raise AuthenticationError("no access token available (token_provider returned none)")
        register_secret(token)
        return token

    def _report_auth(self, err: DhanError) -> None:
        if self.on_auth_error is None:
            return
        try:
            self.on_auth_error(err)
        except Exception:
            logger.exception("on_auth_error callback failed")

    def call(
        self,
        method: str,
        path: str,
        *,
        klass: EndpointClass | None,
        key: Hashable | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        base: str | None = None,
        extra_headers: dict[str, str] | None = None,
        authenticated: bool = True,
        retry: bool | None = None,
        parse_float: Callable[[str], Any] = Decimal,
        priority: bool = False,
    ) -> Any:
        """Send one request and return the parsed JSON body (``None`` when empty).

        Args:
            method: HTTP method.
            path: path relative to the base, starting with ``/``.
            klass: rate-limit class (``None``: no client-side limit).
            key: unique-request key (option chain).
            body: JSON body; ``None`` sends no body.
            params: query parameters.
            base: URL base (default ``api_base``).
            extra_headers: added to the standard headers.
            authenticated: send ``access-token``.
            retry: retry on 429/5xx/timeout (default: only for GET).
            parse_float: how JSON floats are parsed.
            priority: a money-protecting call (order lookups, cancels, exits): it may use
                the rate limiter's reserved share (see ``ratelimit``).

        Raises:
            DhanError: a subclass matching the failure.
        """
        endpoint = f"{method} {path}"
        url = (base or self.api_base) + path
        retries = self.get_retries if (retry if retry is not None else method == "GET") else 0
        for attempt in range(retries + 1):
            headers = {"client-id": self.client_id, "Content-Type": "application/json",
                       "Accept": "application/json"}
            if authenticated:
                headers["access-token"] = self._token()
            if self.header_provider is not None:
                headers.update(self.header_provider())
            headers.update(extra_headers or {})
            if klass is not None:
                self.limiter.acquire(klass, key=key, max_wait=self.max_rate_wait,
                                     priority=priority)
            err = self._send(method, url, endpoint, headers, body, params, parse_float)
            if not isinstance(err, DhanError):
                return err
            record_broker_error(err.code or (f"HTTP{err.status}" if err.status else None))
            if isinstance(err, AuthenticationError):
                self._report_auth(err)
                raise err
            if attempt < retries and isinstance(err, RateLimitError | TransientError):
                delay = self.retry_backoff * (2**attempt)
                logger.warning("%s failed (%s); retry %d in %.2fs", endpoint, err, attempt + 1,
                               delay)
                time.sleep(delay)
                continue
            raise err
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        method: str,
        url: str,
        endpoint: str,
        headers: dict[str, str],
        body: Any,
        params: dict[str, str] | None,
        parse_float: Callable[[str], Any],
    ) -> Any:
        """Return the parsed body on success, or the DhanError describing the failure."""
        try:
            resp = self.session.request(method, url, json=body, params=params, headers=headers,
                                        timeout=self.timeout)
        except requests.Timeout:
            return TransientError(f"no answer within {self.timeout}s", endpoint=endpoint)
        except requests.RequestException as exc:
            return TransientError(f"connection failed ({type(exc).__name__})", endpoint=endpoint)
        parsed: Any = None
        if resp.content:
            try:
                parsed = resp.json(parse_float=parse_float)
            except ValueError:
                parsed = None
        err = classify(resp.status_code, parsed, endpoint)
        if err is not None:
            logger.debug("%s -> %s", endpoint, err)
            return err
        if parsed is None and resp.content:
            return DhanError("success status with a body that is not JSON",
                             status=resp.status_code, endpoint=endpoint)
        return parsed
