"""The one table of ratios ``make bench`` prints at the end.

Each benchmark calls :func:`record` for its headline ratios; when ``BENCH_SUMMARY`` names a
file (``make bench`` sets it) the rows are appended to it as tab-separated lines, otherwise
nothing is written. ``python bench/summary.py FILE`` prints the table of the rows collected
(benchmark, figure, ratio, goal, met?), then deletes nothing: the file is the run's record.

A goal is written as ``<= 2.0`` or ``>= 1.0``: the ratio must be at most / at least that.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["record"]


def record(bench: str, figure: str, ratio: float | None, goal: str = "") -> None:
    """Append one row (``ratio`` None: not measured this run, e.g. no PostgreSQL)."""
    path = os.environ.get("BENCH_SUMMARY")
    if not path:
        return
    value = "" if ratio is None else f"{ratio:.4g}"
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{bench}\t{figure}\t{value}\t{goal}\n")


def _met(ratio: str, goal: str) -> str:
    if not ratio:
        return "not measured"
    if not goal:
        return ""
    op, _, bound = goal.partition(" ")
    x, b = float(ratio), float(bound)
    ok = x <= b if op == "<=" else x >= b
    return "yes" if ok else "NO"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: summary.py FILE", file=sys.stderr)
        return 2
    path = Path(argv[1])
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()] if path.exists() else []
    if not rows:
        print("bench summary: no ratios recorded")
        return 0
    bad = [i for i, row in enumerate(rows, 1) if len(row) != 4]
    if bad:
        print(f"bench summary: {path} line {bad[0]} is not benchmark<TAB>figure<TAB>ratio<TAB>goal"
              " (written by something other than summary.record)", file=sys.stderr)
        return 1
    print()
    print("== summary (ratios against baselines measured in the same run)")
    print(f"{'benchmark':<14}{'figure':<70}{'ratio':>9}  {'goal':<8}{'met':>5}")
    for bench, figure, ratio, goal in rows:
        shown = f"{float(ratio):9.2f}" if ratio else f"{'-':>9}"
        print(f"{bench:<14}{figure:<70}{shown}  {goal:<8}{_met(ratio, goal):>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
