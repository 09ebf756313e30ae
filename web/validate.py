"""A tiny request validator: declare fields, get cleaned values or a 400 naming the field.

Example::

    data = check(request_json(), {"strategy": Str(max_len=40), "start": Date(),
                                  "params": Obj(optional=True, default={})})
"""

from __future__ import annotations

import json
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
        field, message = _encodable(field), _encodable(message)  # a key may be "\ud800"
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _encodable(text: str) -> str:
    """``text`` with lone surrogates written as \\uXXXX, so the answer can be UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_MISSING = object()

#: Deepest JSON nesting a request body may have (objects and arrays count one level each).
MAX_JSON_DEPTH = 32

# Characters no text field may hold: PostgreSQL text cannot store NUL, the other C0 controls
# (except tab, newline, carriage return) are never meant, and a lone surrogate cannot be
# encoded as UTF-8 at all.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (a control character, a lone surrogate), or None."""
    bad = _FORBIDDEN.search(value)
    if bad is None:
        return None
    code, where = ord(bad.group()), bad.start()
    if 0xD800 <= code <= 0xDFFF:
        return f"contains an unpaired surrogate U+{code:04X} at position {where}"
    return (f"contains the control character U+{code:04X} at position {where}; only tab, "
            "newline and carriage return are allowed")


def clean_text(name: str, value: str) -> str:
    """``value`` unchanged, or BadRequest(name) when it holds a character text cannot hold."""
    problem = text_problem(value)
    if problem is not None:
        raise BadRequest(name, problem)
    return value


def json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of the JSON ``text`` (brackets inside strings do not count).

    Stops counting once past ``limit``, so a body of a million ``[`` costs one cheap scan,
    never the recursion of a parser."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = peak = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > peak:
                peak = depth
                if peak > limit:
                    break
        else:
            depth -= 1
    return peak


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
        value = clean_text(name, raw).strip()
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
            problem = text_problem(key)
            if problem is not None:
                raise BadRequest(name, f"key {key!r} {problem}")
        return dict(raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scalar(Field):
    """A string, number or boolean (a settings value)."""

    def clean(self, name: str, raw: Any, *, query: bool) -> Any:
        if isinstance(raw, str):
            return clean_text(name, raw)
        if isinstance(raw, (int, float, bool)):
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


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def request_json() -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest('body').

    The body is at most MAX_CONTENT_LENGTH bytes (a larger one is refused with 413 before it
    is read, see web.BodyLimit), nested at most MAX_JSON_DEPTH levels, and strict
    JSON (no NaN or Infinity)."""
    expected = "expected a JSON object (Content-Type: application/json)"
    if not request.is_json:
        raise BadRequest("body", expected)
    raw = request.get_data(cache=True)
    try:
        text = raw.decode(json.detect_encoding(raw))
    except (UnicodeDecodeError, LookupError):
        raise BadRequest("body", "not valid UTF-8 JSON") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BadRequest("body", f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels; "
                                 f"at most {MAX_JSON_DEPTH} allowed)")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # not reached after the depth scan; kept as a guard
        raise BadRequest("body", f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") \
            from None
    except ValueError as exc:
        raise BadRequest("body", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body", expected)
    return data


def query(spec: Mapping[str, Field]) -> dict[str, Any]:
    """Validate the query string against ``spec`` (unknown parameters are refused)."""
    return check(request.args, spec, query=True)


def date_range(values: Mapping[str, Any]) -> None:
    """Refuse a ``from`` after ``to``."""
    start, end = values.get("from"), values.get("to")
    if start and end and start > end:
        raise BadRequest("from", "must not be after 'to'")
