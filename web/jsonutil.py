"""JSON for the API: Decimal as a string (money never becomes a float), instants as ISO 8601."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from flask.json.provider import DefaultJSONProvider


def decimal_or_none(raw: Any) -> Decimal | None:
    """A rupee amount stored in a JSON payload (text or number) as Decimal; None if absent or
    not a number."""
    if raw is None:
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        return None


def to_jsonable(value: Any) -> Any:
    """``default`` hook: Decimal -> str, date/datetime/time -> ISO text, timedelta -> seconds."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class ApiJSONProvider(DefaultJSONProvider):
    """Flask JSON provider using :func:`to_jsonable`; keys keep their order."""

    default = staticmethod(to_jsonable)  # type: ignore[assignment]
    sort_keys = False
    ensure_ascii = False
