"""Order intents (``order_intents``): what was asked of the broker, written before the call.

``executions`` records fills; this table records intents. The live broker writes one row per
leg of an entry, exit or unwind (``flatten``), each in its own committed transaction
**before** the order leaves, plus one child row per freeze-quantity slice (the leg row is then
``sliced``: a container, never an order itself), and updates every row as the order moves
through Dhan's statuses (``TRANSIT``, ``PENDING``, ``PART_TRADED``, ``TRADED``, ``REJECTED``,
``CANCELLED``, ``EXPIRED``) plus ``new`` (written, maybe sent) and ``unresolved`` (outcome
unknown: looked up until terminal, never taken as "not filled").

A row is *settled* once the executor has accounted for its outcome in its books: the trade
recorded opened (entry) or closed (exit) in the same transaction, the entry refused with every
known fill unwound, or an operator's decision. Unsettled rows are what a restarted executor
rebuilds its in-flight orders from; it resumes tracking them and never re-sends them.

Groups: the unsettled rows of one trade tag and purpose are one *group* — ``entry`` (entry and
flatten rows: an entry and the unwinding of its known fills), ``exit`` and ``operator``.

The executor's messages ``ResolveIntents`` and ``ResolveOrder`` are in ``engine.messages.commands``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from engine.messages.legs import InstrumentKind, Leg, OptionType, Side
from engine.store.tx import transaction

logger = logging.getLogger(__name__)

TERMINAL = frozenset({"TRADED", "REJECTED", "CANCELLED", "EXPIRED"})
OPEN = frozenset({"new", "TRANSIT", "PENDING", "PART_TRADED", "unresolved"})
STATES = TERMINAL | OPEN
PURPOSES = ("entry", "exit", "flatten", "operator")
GROUP_PURPOSES: dict[str, tuple[str, ...]] = {"entry": ("entry", "flatten"), "exit": ("exit",),
                                              "operator": ("operator",)}


def group_of(purpose: str) -> str:
    """The group a row of ``purpose`` belongs to (``flatten`` rows unwind an entry)."""
    return "entry" if purpose == "flatten" else purpose


def leg_to_json(leg: Leg) -> dict[str, Any]:
    """A leg as JSON (what a restart needs to rebuild it)."""
    return {"security_id": leg.security_id, "side": leg.side.value, "quantity": leg.quantity,
            "kind": leg.kind.value,
            "option_type": leg.option_type.value if leg.option_type else None,
            "expiry": leg.expiry.isoformat() if leg.expiry else None,
            "strike": str(leg.strike) if leg.strike is not None else None}


def leg_from_json(d: dict[str, Any]) -> Leg:
    return Leg(security_id=str(d["security_id"]), side=Side(d["side"]),
               quantity=int(d["quantity"]), kind=InstrumentKind(d.get("kind") or "OPT"),
               option_type=OptionType(d["option_type"]) if d.get("option_type") else None,
               expiry=date.fromisoformat(d["expiry"]) if d.get("expiry") else None,
               strike=Decimal(d["strike"]) if d.get("strike") is not None else None)


@dataclass(frozen=True, slots=True)
class Intent:
    """One row of ``order_intents``."""

    id: int
    trade_date: date
    trade_tag: str
    purpose: str
    leg_index: int
    attempt: int
    security_id: str
    exchange_segment: str
    side: str
    quantity: int
    product: str
    order_type: str
    price: Decimal | None
    correlation_id: str
    parent_id: int | None
    sliced: bool
    order_id: str | None
    state: str
    filled_qty: int
    avg_price: Decimal | None
    reason: str | None
    resolution: str | None
    settled_at: datetime | None
    created_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def is_order(self) -> bool:
        """True for a row that is (or may be) an order at the broker: not a slice container."""
        return not self.sliced

    @property
    def leg(self) -> Leg | None:
        """The leg this row belongs to (side/quantity of the *leg*, not of this order)."""
        d = self.payload.get("leg")
        return leg_from_json(d) if d else None

    def describe(self) -> str:
        return (f"{self.side} {self.quantity} of {self.security_id} ({self.purpose} of "
                f"{self.trade_tag}, correlation id {self.correlation_id}"
                + (f", order {self.order_id}" if self.order_id else "") + ")")

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Intent:
        return cls(id=r["id"], trade_date=r["trade_date"], trade_tag=r["trade_tag"],
                   purpose=r["purpose"], leg_index=r["leg_index"], attempt=r["attempt"],
                   security_id=r["security_id"], exchange_segment=r["exchange_segment"],
                   side=r["side"], quantity=r["quantity"], product=r["product"],
                   order_type=r["order_type"], price=r["price"],
                   correlation_id=r["correlation_id"], parent_id=r["parent_id"],
                   sliced=r["sliced"], order_id=r["order_id"], state=r["state"],
                   filled_qty=r["filled_qty"], avg_price=r["avg_price"], reason=r["reason"],
                   resolution=r["resolution"], settled_at=r["settled_at"],
                   created_at=r["created_at"], payload=dict(r["payload"] or {}))


_COLUMNS = ("state", "order_id", "filled_qty", "avg_price", "reason", "resolution")


class IntentStore:
    """``order_intents`` on PostgreSQL; every write is its own committed transaction."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # ------------------------------------------------------------------ writes
    def create(self, *, trade_date: date, tag: str, purpose: str, leg_index: int, attempt: int,
               security_id: str, side: str, quantity: int, product: str, segment: str,
               order_type: str, price: Decimal | None, correlation_id: str,
               parent_id: int | None = None, sliced: bool = False,
               payload: dict[str, Any] | None = None) -> Intent:
        """Insert one intent (state ``new``) and commit it: call this before the order."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r}: expected one of {', '.join(PURPOSES)}")
        with transaction(self.pool) as conn:
            row = conn.execute(
                "INSERT INTO order_intents (trade_date, trade_tag, purpose, leg_index, attempt,"
                " security_id, exchange_segment, side, quantity, product, order_type, price,"
                " correlation_id, parent_id, sliced, payload) VALUES (%s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (trade_date, tag, purpose, leg_index, attempt, security_id, segment, side,
                 quantity, product, order_type, price, correlation_id, parent_id, sliced,
                 Jsonb(payload or {}))).fetchone()
        return Intent.from_row(row)

    def update(self, intent_id: int, **changes: Any) -> Intent:
        """Change ``state``, ``order_id``, ``filled_qty``, ``avg_price``, ``reason`` or
        ``resolution`` of one row (committed); returns the row."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)} of an order intent")
        if "state" in changes and changes["state"] not in STATES:
            raise ValueError(f"state {changes['state']!r} is not an order intent state")
        sets = ", ".join(f"{k} = %({k})s" for k in changes)
        with transaction(self.pool) as conn:
            row = conn.execute(
                f"UPDATE order_intents SET {sets}, updated_at = now() WHERE id = %(id)s"
                " RETURNING *", {**changes, "id": intent_id}).fetchone()
        if row is None:
            raise LookupError(f"no order intent {intent_id}")
        return Intent.from_row(row)

    def settle(self, tag: str, group: str, resolution: str | None = None) -> int:
        """Mark the unsettled rows of ``tag``'s ``group`` settled; returns how many."""
        with transaction(self.pool) as conn:
            return settle_group(conn, tag, group, resolution)

    # ------------------------------------------------------------------ reads
    def get(self, intent_id: int) -> Intent:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM order_intents WHERE id = %s",
                               (intent_id,)).fetchone()
        if row is None:
            raise LookupError(f"no order intent {intent_id}")
        return Intent.from_row(row)

    def by_correlation_id(self, cid: str) -> Intent | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM order_intents WHERE correlation_id = %s",
                               (cid,)).fetchone()
        return Intent.from_row(row) if row else None

    def group(self, tag: str, group: str) -> list[Intent]:
        """The unsettled rows of ``tag``'s ``group``, oldest first."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT * FROM order_intents WHERE trade_tag = %s AND purpose = ANY(%s) AND"
                " settled_at IS NULL ORDER BY id", (tag, list(GROUP_PURPOSES[group]))).fetchall()
        return [Intent.from_row(r) for r in rows]

    def pending_groups(self) -> list[tuple[str, str]]:
        """``(tag, group)`` of every group with unsettled rows, oldest first."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT trade_tag, purpose, min(id) AS first FROM order_intents WHERE"
                " settled_at IS NULL GROUP BY trade_tag, purpose ORDER BY first").fetchall()
        out: list[tuple[str, str]] = []
        for r in rows:
            key = (r["trade_tag"], group_of(r["purpose"]))
            if key not in out:
                out.append(key)
        return out

    def has_open(self, tag: str, group: str) -> bool:
        """True when ``tag``'s ``group`` has unsettled rows."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT 1 FROM order_intents WHERE trade_tag = %s AND purpose = ANY(%s) AND"
                " settled_at IS NULL LIMIT 1", (tag, list(GROUP_PURPOSES[group]))).fetchone() \
                is not None

    def correlation_ids(self, prefix: str) -> set[str]:
        """Every correlation id ever used that can derive from ``prefix`` (any day): ids of
        the plain ``<prefix>-...`` form and of the digest form a long prefix falls back to."""
        from engine.broker.dhan.correlation import correlation_prefixes

        likes = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                 for p in correlation_prefixes(prefix)]
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT correlation_id FROM order_intents WHERE"
                                " correlation_id LIKE ANY(%s)", (likes,)).fetchall()
        return {r["correlation_id"] for r in rows}

    def unsettled(self) -> list[Intent]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT * FROM order_intents WHERE settled_at IS NULL"
                                " ORDER BY id").fetchall()
        return [Intent.from_row(r) for r in rows]


def settle_group(conn: Any, tag: str, group: str, resolution: str | None = None) -> int:
    """Settle the unsettled rows of ``tag``'s ``group`` in ``conn``'s transaction (the one
    that records the trade, so the books and the intents never disagree)."""
    return conn.execute(
        "UPDATE order_intents SET settled_at = now(), updated_at = now(), resolution ="
        " coalesce(resolution, %s) WHERE trade_tag = %s AND purpose = ANY(%s) AND"
        " settled_at IS NULL", (resolution, tag, list(GROUP_PURPOSES[group]))).rowcount


def blocking_intent(conn: Any) -> dict[str, Any] | None:
    """The first order intent that must block new entries, or ``None``: an ``unresolved`` one
    first, else any order whose outcome the books do not account for yet (in flight, filled
    but not booked, an exit on hold, a failed unwind): a position at the broker the books do
    not explain. One indexed query (the RiskActor calls it per entry intent)."""
    return conn.execute(
        "SELECT trade_tag, purpose, security_id, side, quantity, correlation_id, state"
        " FROM order_intents WHERE settled_at IS NULL AND NOT sliced"
        " ORDER BY (state = 'unresolved') DESC, id LIMIT 1").fetchone()


def order_rows(rows: Iterable[Intent]) -> list[Intent]:
    """The rows that are orders at the broker (slices and unsliced legs)."""
    return [r for r in rows if r.is_order]


def exposure_text(open_legs: Sequence[tuple[str, str, int]]) -> str:
    """``(security_id, side, quantity)`` positions (side BUY = long) as operator text."""
    if not open_legs:
        return "nothing"
    return ", ".join(f"{'LONG' if side == 'BUY' else 'SHORT'} {qty} of security {sid}"
                     for sid, side, qty in open_legs)


__all__ = [
    "GROUP_PURPOSES",
    "OPEN",
    "PURPOSES",
    "STATES",
    "TERMINAL",
    "Intent",
    "IntentStore",
    "blocking_intent",
    "exposure_text",
    "group_of",
    "leg_from_json",
    "leg_to_json",
    "order_rows",
    "settle_group",
]
