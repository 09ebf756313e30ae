"""Turn one legacy row (a dict from SQLite or JSON) into typed values for its target table.

Conversion follows the PostgreSQL column type: NUMERIC via ``Decimal(str(v))`` (never through
a binary float), ``timestamptz`` from ISO text or epoch seconds (naive values are IST, as the
old bot wrote them), ``date`` from ISO text, JSONB from text or structures. Every failure
raises :class:`LegacyDataError` naming the table, the row and the column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg.types.json import Jsonb

from engine.migrate_data.tables import DAY_SOURCES, TableSpec
from engine.timeutil import IST

MODE_WORDS = {"dry_run": "paper", "dry-run": "paper", "dryrun": "paper", "paper": "paper",
              "sim": "paper", "simulated": "paper", "shadow": "shadow", "live": "live",
              "disabled": "disabled", "off": "disabled"}
UPPER_COLUMNS = frozenset({"action", "side", "option_type", "symbol", "action_taken", "label"})
LOWER_COLUMNS = frozenset({"mode", "stage", "risk_level", "status", "task"})


class LegacyDataError(ValueError):
    """A legacy row that cannot be mapped onto the schema."""


@dataclass(frozen=True, slots=True)
class Column:
    """One target column as read from the catalog."""

    name: str
    type: str
    required: bool  # NOT NULL without default
    serial: bool


def _parse_instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0, 0))
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        seconds = float(value)
        if seconds > 1e11:  # epoch milliseconds
            seconds /= 1000.0
        return datetime.fromtimestamp(seconds, tz=IST)
    else:
        text = str(value).strip().replace(" ", "T", 1)
        moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=IST) if moment.tzinfo is None else moment


def _parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return _parse_instant(value).astimezone(IST).date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if len(text) == 10:
        return date.fromisoformat(text)
    return _parse_instant(text).astimezone(IST).date()


def _parse_json(value: Any) -> Jsonb:
    if isinstance(value, str | bytes):
        return Jsonb(json.loads(value) if str(value).strip() else {})
    return Jsonb(value)


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    number = Decimal(str(value).strip())
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"1", "true", "t", "yes", "y", "on"}:
            return True
        if text in {"0", "false", "f", "no", "n", "off"}:
            return False
        raise ValueError(f"{value!r} is not a boolean")
    return bool(value)


def convert_value(column: Column, value: Any) -> Any:
    """Convert ``value`` to the Python type psycopg adapts to ``column.type``."""
    if value is None:
        return None
    kind = column.type
    if kind.startswith(("numeric", "double", "real")):
        return Decimal(str(value).strip())
    if kind in {"bigint", "integer", "smallint"}:
        return _parse_int(value)
    if kind == "jsonb" or kind == "json":
        return _parse_json(value)
    if kind.startswith("timestamp"):
        return _parse_instant(value)
    if kind == "date":
        return _parse_date(value)
    if kind.startswith("time"):
        return value if isinstance(value, time) else time.fromisoformat(str(value).strip())
    if kind == "boolean":
        return _parse_bool(value)
    text = value if isinstance(value, str) else (
        json.dumps(value) if isinstance(value, dict | list) else str(value))
    if column.name in {"mode", "stage"}:
        return MODE_WORDS.get(text.strip().lower(), text.strip().lower())
    if column.name in LOWER_COLUMNS:
        return text.strip().lower()
    if column.name in UPPER_COLUMNS:
        return text.strip().upper()
    return text


def _extra_items(extras: dict[str, Any]) -> dict[str, Any]:
    """Legacy ``<name>_json`` text columns become structured ``<name>`` payload entries."""
    out: dict[str, Any] = {}
    for key, value in extras.items():
        if key.endswith("_json") and isinstance(value, str):
            try:
                out[key[:-5]] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def _merge_payload(existing: Any, extras: dict[str, Any]) -> Any:
    extras = _extra_items(extras)
    base: Any = existing
    if isinstance(base, str | bytes):
        base = json.loads(base) if str(base).strip() else {}
    if base is None:
        base = {}
    if not isinstance(base, dict):
        base = {"value": base}
    return {**extras, **base}


def _derive(spec: TableSpec, out: dict[str, Any], columns: Mapping[str, Column]) -> None:
    """Fill columns the legacy row implies but does not carry."""
    if "trade_date" in columns and out.get("trade_date") is None:
        for source in DAY_SOURCES:
            if out.get(source) is not None:
                out["trade_date"] = _parse_date(out[source])
                break
    if spec.name == "closed_trades":
        charges = Decimal(str(out.get("charges") or 0))
        if out.get("gross_pnl") is None and out.get("realized_pnl") is not None:
            out["gross_pnl"] = Decimal(str(out["realized_pnl"])) + charges
        if out.get("realized_pnl") is None and out.get("gross_pnl") is not None:
            out["realized_pnl"] = Decimal(str(out["gross_pnl"])) - charges


def map_row(spec: TableSpec, columns: Mapping[str, Column], raw: Mapping[str, Any],
            *, where: str, ignored: set[str]) -> dict[str, Any]:
    """Map a legacy row onto ``spec``'s columns, converted; ``where`` names the row in errors.

    Legacy keys without a target column go into the payload column (if the table has one),
    otherwise their names are added to ``ignored``.
    """
    out: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in raw.items():
        target = spec.target_column(key)
        if target not in columns and target.endswith("_json") and target[:-5] in columns:
            target = target[:-5]
        if target in columns and target not in out:
            out[target] = value
        elif target in columns:
            continue  # an alias already filled this column; the exact name wins below
        else:
            extras[key] = value
    for key, value in raw.items():  # exact names beat aliases
        if key in columns:
            out[key] = value
    if extras:
        if spec.payload and spec.payload in columns:
            try:
                out[spec.payload] = _merge_payload(out.get(spec.payload), extras)
            except json.JSONDecodeError as exc:
                raise LegacyDataError(f"{where}: column {spec.payload!r} is not JSON: {exc}"
                                      ) from exc
        else:
            ignored.update(extras)
    _derive(spec, out, columns)
    converted: dict[str, Any] = {}
    for name, value in out.items():
        try:
            converted[name] = convert_value(columns[name], value)
        except (ValueError, TypeError, InvalidOperation, json.JSONDecodeError) as exc:
            raise LegacyDataError(
                f"{where}: column {name!r} value {str(value)[:60]!r} is not a valid "
                f"{columns[name].type}: {exc}") from exc
    missing = [c.name for c in columns.values()
               if c.required and converted.get(c.name) is None]
    if missing:
        raise LegacyDataError(f"{where}: required column(s) {', '.join(missing)} missing")
    return converted
