"""Per-table counts of one import or repair run, printable as a small table."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TableCounts:
    """What happened to the rows of one table."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    removed: int = 0


@dataclass(slots=True)
class Report:
    """Result of ``import_sqlite`` / ``import_json`` / ``dedupe_closed_trades``.

    Attributes:
        source: What was read (a path, or the database for a repair).
        dry_run: True when every change was rolled back.
        tables: Counts per target table, in processing order.
        sequences: Sequence name -> value it was advanced to (or would be, in a dry run).
        notes: Human-readable remarks (ignored legacy tables/columns, constraint present, ...).
    """

    source: str
    dry_run: bool = False
    tables: dict[str, TableCounts] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def counts(self, table: str) -> TableCounts:
        """Return the (created on first use) counts of ``table``."""
        if table not in self.tables:
            self.tables[table] = TableCounts()
        return self.tables[table]

    def note(self, text: str) -> None:
        """Record a remark once."""
        if text not in self.notes:
            self.notes.append(text)

    @property
    def inserted(self) -> int:
        """Rows inserted over all tables."""
        return sum(c.inserted for c in self.tables.values())

    @property
    def updated(self) -> int:
        """Rows updated over all tables."""
        return sum(c.updated for c in self.tables.values())

    @property
    def skipped(self) -> int:
        """Rows skipped (already present) over all tables."""
        return sum(c.skipped for c in self.tables.values())

    @property
    def removed(self) -> int:
        """Rows removed (duplicates) over all tables."""
        return sum(c.removed for c in self.tables.values())

    def format(self) -> str:
        """Render the report as aligned text (what the CLI prints)."""
        title = f"{self.source}" + ("  [DRY RUN: rolled back]" if self.dry_run else "")
        lines = [title]
        header = ("table", "read", "inserted", "updated", "skipped", "removed")
        rows = [header] + [
            (name, str(c.read), str(c.inserted), str(c.updated), str(c.skipped), str(c.removed))
            for name, c in self.tables.items()
        ]
        rows.append(("TOTAL", str(sum(c.read for c in self.tables.values())), str(self.inserted),
                     str(self.updated), str(self.skipped), str(self.removed)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:],
                                                                            strict=True)]
            lines.append("  ".join(cells))
        if self.sequences:
            verb = "would advance" if self.dry_run else "advanced"
            for name, value in self.sequences.items():
                lines.append(f"sequence {name} {verb} to {value}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()
