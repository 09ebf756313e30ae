"""An event-log tap: records every message sent through the directory, for replay goldens.

The directory calls `MessageTap.record` on every ``send`` and ``publish`` (before the
``tell``). Each entry keeps the epoch (the lock-step scheduler opens one per tick), the
sender role, its per-sender sequence number, the recipients, the message type, the
message's clock ``ts`` and its other fields as JSON-able values.

Determinism: inside one tick several actors may run at once, so the raw global order can
differ between runs. `MessageTap.dumps` therefore orders entries by
``(epoch, sender, sender_seq)``; that is stable whenever each actor handles its own inbox
in the same order in both runs. ``message_id`` is left out by default; use
`engine.messages.base.SeededIds` to make ``correlation_id`` deterministic too (or exclude it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.messages.codec import message_fields, to_jsonable, type_name

__all__ = ["MessageTap", "TapEntry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TapEntry:
    """One recorded message."""

    index: int
    epoch: int
    sender: str
    sender_seq: int
    to: tuple[str, ...]
    type: str
    ts: str | None
    fields: dict[str, Any]

    def as_dict(self, *, with_index: bool = False) -> dict[str, Any]:
        """Return the JSON form (without the global index unless asked)."""
        out: dict[str, Any] = {
            "epoch": self.epoch,
            "from": self.sender,
            "seq": self.sender_seq,
            "to": list(self.to),
            "type": self.type,
            "ts": self.ts,
            "fields": self.fields,
        }
        if with_index:
            out["index"] = self.index
        return out


class MessageTap:
    """Thread-safe, in-memory record of sent messages.

    Args:
        exclude: field names left out of every entry's ``fields``: ``message_id`` (random
            unless `SeededIds` is used) and ``ts`` (kept as the entry's own ``ts`` key).
    """

    def __init__(self, *, exclude: Iterable[str] = ("message_id", "ts")) -> None:
        self._exclude = frozenset(exclude)
        self._entries: list[TapEntry] = []
        self._seq: dict[str, int] = {}
        self._epoch = 0
        self._lock = threading.Lock()

    @property
    def epoch(self) -> int:
        """The current epoch number."""
        with self._lock:
            return self._epoch

    def next_epoch(self) -> int:
        """Open a new epoch (the lock-step scheduler calls this before each tick)."""
        with self._lock:
            self._epoch += 1
            return self._epoch

    def record(self, sender: str, to: Sequence[str], message: object) -> None:
        """Record one message sent by ``sender`` to the roles ``to``."""
        fields = message_fields(message, exclude=self._exclude)
        ts = getattr(message, "ts", None)
        with self._lock:
            seq = self._seq.get(sender, 0) + 1
            self._seq[sender] = seq
            self._entries.append(
                TapEntry(
                    index=len(self._entries),
                    epoch=self._epoch,
                    sender=sender,
                    sender_seq=seq,
                    to=tuple(to),
                    type=type_name(message),
                    ts=to_jsonable(ts),
                    fields=fields,
                )
            )

    def entries(self, *, ordered: bool = True) -> list[TapEntry]:
        """Return a copy of the entries, canonically ordered unless ``ordered`` is False."""
        with self._lock:
            items = list(self._entries)
        if ordered:
            items.sort(key=lambda e: (e.epoch, e.sender, e.sender_seq))
        return items

    def types(self) -> list[str]:
        """Return the message type names in canonical order (handy in tests)."""
        return [e.type for e in self.entries()]

    def clear(self) -> None:
        """Forget every entry and reset epoch and sequence counters."""
        with self._lock:
            self._entries.clear()
            self._seq.clear()
            self._epoch = 0

    def dumps(self) -> str:
        """Return the canonical JSON-lines text (byte-identical for identical runs)."""
        lines = [
            json.dumps(e.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            for e in self.entries()
        ]
        return "".join(line + "\n" for line in lines)

    def write(self, path: str | Path) -> Path:
        """Write `dumps()` to ``path`` (UTF-8) and return the path."""
        target = Path(path)
        target.write_text(self.dumps(), encoding="utf-8")
        return target

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
