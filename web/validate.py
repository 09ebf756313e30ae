"""A tiny request validator: declare fields, get cleaned values or a 400 naming the field.

Example::

    data = check(request_json(), {"strategy": Str(max_len=40), "start": Date(),
                                  "params": Obj(optional=True, default={})})
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import request


class BadRequest(Exception):
    """A request value is missing or wrong; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_MISSING = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class Field(ABC):
    """One validated field; subclasses say how raw JSON or query text becomes a value."""

    optional: bool = False
    default: Any = None

    @abstractmethod
    def clean(self, name: str, raw: Any, *, query: bool) -> Any:
        """Return the value, or raise BadRequest naming ``name``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Str(Field):
    max_len: int = 200
    min_len: int = 1
    pattern: str | None = None
    choices: tuple[str, ...] = ()

    def clean(self, name: str, raw: Any, *, query: bool) -> str:
        if not isinstance(raw, str):
            raise BadRequest(name, "expected a string")
        value = raw.strip()
        if self.choices:
            if value not in self.choices:
                raise BadRequest(name, "expected one of " + ", ".join(self.choices))
            return value
        if not self.min_len <= len(value) <= self.max_len:
            raise BadRequest(name, f"expected {self.min_len} to {self.max_len} characters")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise BadRequest(name, f"does not match {self.pattern}")
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Int(Field):
    minimum: int | None = None
    maximum: int | None = None

    def clean(self, name: str, raw: Any, *, query: bool) -> int:
        if query and isinstance(raw, str) and re.fullmatch(r"-?\d{1,18}", raw.strip()):
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise BadRequest(name, "expected an integer")
        if (self.minimum is not None and raw < self.minimum) or (
                self.maximum is not None and raw > self.maximum):
            raise BadRequest(name, f"expected an integer between {self.minimum} and {self.maximum}")
        return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Date(Field):
    def clean(self, name: str, raw: Any, *, query: bool) -> date:
        if not isinstance(raw, str):
            raise BadRequest(name, "expected a date YYYY-MM-DD")
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            raise BadRequest(name, "expected a date YYYY-MM-DD") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bool(Field):
    def clean(self, name: str, raw: Any, *, query: bool) -> bool:
        if query and isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
        if not isinstance(raw, bool):
            raise BadRequest(name, "expected true or false")
        return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Obj(Field):
    max_keys: int = 100

    def clean(self, name: str, raw: Any, *, query: bool) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise BadRequest(name, "expected an object")
        if len(raw) > self.max_keys:
            raise BadRequest(name, f"at most {self.max_keys} keys")
        for key in raw:
            if not isinstance(key, str) or not key:
                raise BadRequest(name, "keys must be non-empty strings")
        return dict(raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scalar(Field):
    """A string, number or boolean (a settings value)."""

    def clean(self, name: str, raw: Any, *, query: bool) -> Any:
        if isinstance(raw, (str, int, float, bool)):
            return raw
        raise BadRequest(name, "expected a string, number or boolean")


def check(data: Mapping[str, Any], spec: Mapping[str, Field], *, query: bool = False,
          allow_extra: bool = False) -> dict[str, Any]:
    """Validate ``data`` against ``spec``; return cleaned values (defaults filled in)."""
    if not allow_extra:
        for key in data:
            if key not in spec:
                raise BadRequest(key, "unexpected field; allowed: " + ", ".join(spec))
    out: dict[str, Any] = {}
    for name, field in spec.items():
        raw = data.get(name, _MISSING)
        if raw is _MISSING or raw is None or (query and raw == ""):
            if not field.optional:
                raise BadRequest(name, "required")
            out[name] = field.default
            continue
        out[name] = field.clean(name, raw, query=query)
    return out


def request_json() -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest('body')."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("body", "expected a JSON object (Content-Type: application/json)")
    return data


def query(spec: Mapping[str, Field]) -> dict[str, Any]:
    """Validate the query string against ``spec`` (unknown parameters are refused)."""
    return check(request.args, spec, query=True)


def date_range(values: Mapping[str, Any]) -> None:
    """Refuse a ``from`` after ``to``."""
    start, end = values.get("from"), values.get("to")
    if start and end and start > end:
        raise BadRequest("from", "must not be after 'to'")
