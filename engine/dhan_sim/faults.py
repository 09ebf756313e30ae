"""Fault injection for the Dhan simulator, switchable per test (Python object or admin API).

Kinds:
    ``latency``      sleep ``seconds`` before handling, then answer normally.
    ``status``       answer ``status`` with ``body`` (JSON, or nothing) without handling.
    ``rate_limit``   answer 429 DH-904 without handling.
    ``timeout``      handle, then sleep ``seconds`` before answering (``before=True``: sleep
                     first) - set ``seconds`` past the client's timeout.
    ``drop``         handle, then close the connection with no answer (response lost).
    ``drop_502``     handle, then answer 502 with an empty body.
    ``reject_order`` place-order only: ``mode="http"`` answers 400 DH-906 ``reason``;
                     ``mode="rms"`` accepts the order and REJECTs it with ``reason``.
    ``partial_fill`` place-order only: the order fills at most ``fill_qty`` units when it
                     matches and rests ``PART_TRADED`` for the rest (which never fills) until
                     it is cancelled (``CANCELLED`` with the filled quantity kept).
    ``ws_drop``      order-update WebSocket (method ``WS``, path
                     ``/order-update/<STATUS>/<correlationId>``): the alert is lost.
    ``ws_delay``     the alert is sent ``seconds`` late.
    ``ws_disconnect`` the client's feed connections are dropped instead (the alert is lost).

Every rule takes ``skip``: that many matching requests pass untouched before it applies (the
second order of an exit, the lookups after the first one, ...), and ``probability``: it then
applies to each matching request with that chance (seeded: ``Faults(seed=...)``), for soaks
with a fault rate rather than a script.

A server that processes an order late (the order appears seconds after the request) is
``latency`` on ``POST /v2/orders`` with ``seconds`` beyond the client's timeout.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("latency", "status", "rate_limit", "timeout", "drop", "drop_502", "reject_order",
         "partial_fill", "ws_drop", "ws_delay", "ws_disconnect")


@dataclass
class Fault:
    """One rule: applies to requests matching ``method`` and ``path`` (regex, full match)."""

    kind: str
    path: str | None = None
    method: str | None = None
    count: int | None = 1  # None: until cleared
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0
    skip: int = 0  # matching requests to let through before applying
    probability: float = 1.0  # chance of applying to each matching request

    def matches(self, method: str, path: str) -> bool:
        """True when the rule applies to ``method path``."""
        if self.method and self.method.upper() != method:
            return False
        return self.path is None or re.fullmatch(self.path, path) is not None


class Faults:
    """Thread-safe rule list; :meth:`take` consumes the first matching rule."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[Fault] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def seed(self, seed: int) -> None:
        """Make the ``probability`` draws repeatable."""
        with self._lock:
            self._random.seed(seed)

    def add(self, kind: str, *, path: str | None = None, method: str | None = None,
            count: int | None = 1, skip: int = 0, probability: float = 1.0,
            **params: Any) -> Fault:
        """Add a rule (see the module docstring for kinds and params).

        Raises:
            ValueError: unknown kind or non-positive count.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        if count is not None and count <= 0:
            raise ValueError(f"fault count must be positive or None, got {count}")
        if path is not None:
            re.compile(path)
        if skip < 0:
            raise ValueError(f"fault skip must be >= 0, got {skip}")
        if not 0 < float(probability) <= 1:
            raise ValueError(f"fault probability must be in (0, 1], got {probability}")
        rule = Fault(kind=kind, path=path, method=method, count=count, params=params,
                     skip=int(skip), probability=float(probability))
        with self._lock:
            self._rules.append(rule)
        return rule

    def add_json(self, spec: dict[str, Any]) -> Fault:
        """Add a rule from the admin API's JSON ``{"kind", "path", "method", "count", ...}``."""
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError("fault spec needs a 'kind'")
        return self.add(kind, path=spec.pop("path", None), method=spec.pop("method", None),
                        count=spec.pop("count", 1), skip=int(spec.pop("skip", 0)),
                        probability=float(spec.pop("probability", 1.0)), **spec)

    def take(self, method: str, path: str, kinds: tuple[str, ...] = KINDS) -> Fault | None:
        """Consume and return the first rule of ``kinds`` matching the request."""
        with self._lock:
            for rule in self._rules:
                if rule.kind in kinds and rule.matches(method, path):
                    if rule.skip > 0:
                        rule.skip -= 1
                        continue
                    if rule.probability < 1 and self._random.random() >= rule.probability:
                        continue
                    rule.hits += 1
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def pending(self) -> list[dict[str, Any]]:
        """Rules still armed (admin API)."""
        with self._lock:
            return [{"kind": r.kind, "path": r.path, "method": r.method, "count": r.count,
                     "skip": r.skip, "probability": r.probability, "hits": r.hits, **r.params}
                    for r in self._rules]
