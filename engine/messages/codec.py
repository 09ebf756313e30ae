"""Turn messages into JSON-able values (event log, NOTIFY payloads, replay goldens)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

__all__ = ["message_fields", "to_jsonable", "type_name"]


def type_name(message: object) -> str:
    """Return the message's class name (the ``type`` key of a serialized message)."""
    return type(message).__name__


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to plain JSON types, deterministically.

    Dataclasses become dicts of their fields, enums their value, Decimal a string (exact),
    dates / datetimes ISO strings, timedelta seconds, mappings dicts with string keys,
    sets sorted lists, tuples and lists lists.

    Raises:
        TypeError: for a value with no JSON form (for example a live object).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, Enum):
            return to_jsonable(value.value)
        return value
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Set):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=repr)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot serialize {type(value).__name__} value {value!r} to JSON")


def message_fields(message: object, *, exclude: Set[str] = frozenset()) -> dict[str, Any]:
    """Return the message's fields as a JSON-able dict, minus ``exclude``."""
    if not dataclasses.is_dataclass(message) or isinstance(message, type):
        raise TypeError(f"{type(message).__name__} is not a dataclass message")
    return {
        f.name: to_jsonable(getattr(message, f.name))
        for f in dataclasses.fields(message)
        if f.name not in exclude
    }
