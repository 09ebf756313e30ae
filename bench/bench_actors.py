"""Benchmark: pykka ask -> reply round trip vs a raw queue.Queue round trip between threads.

Run:  .venv/bin/python bench/bench_actors.py [--n 20000]

Both are measured in the same run; the ratio (actor / queue) is the figure to watch, not
the absolute microseconds (they depend on the machine and its load). The process is pinned
to one core when the OS allows it (``--no-pin`` to compare): unpinned, the ratio swings
with where the scheduler puts the threads. Each repetition's ratio is taken against its own
baseline and their spread (min-max) is shown next to the median.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pykka
from summary import record  # bench/summary.py

from engine.actors.base import ActorContext, SupervisedActor
from engine.actors.directory import Directory
from engine.clock import RealClock
from engine.messages.commands import Ping


class Echo(SupervisedActor):
    """Answers Ping with "pong" (SupervisedActor's built-in handling)."""

    def handle(self, message: Any) -> Any:
        return message


def bench_actor(n: int) -> float:
    ctx = ActorContext(clock=RealClock(), directory=Directory())
    ref = Echo.start(supervisor_ref=None, name="echo", ctx=ctx)
    ping = Ping()
    try:
        for _ in range(200):  # warm-up
            ref.ask(ping, timeout=5)
        start = time.perf_counter()
        for _ in range(n):
            ref.ask(ping, timeout=5)
        return (time.perf_counter() - start) / n
    finally:
        ref.stop()


def bench_raw_actor(n: int) -> float:
    class Raw(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Raw.start()
    try:
        for _ in range(200):
            ref.ask(1, timeout=5)
        start = time.perf_counter()
        for _ in range(n):
            ref.ask(1, timeout=5)
        return (time.perf_counter() - start) / n
    finally:
        ref.stop()


def bench_queue(n: int) -> float:
    requests: queue.Queue[Any] = queue.Queue()
    replies: queue.Queue[Any] = queue.Queue()

    def server() -> None:
        while True:
            item = requests.get()
            if item is None:
                return
            replies.put(item)

    thread = threading.Thread(target=server, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            requests.put(1)
            replies.get(timeout=5)
        start = time.perf_counter()
        for _ in range(n):
            requests.put(1)
            replies.get(timeout=5)
        return (time.perf_counter() - start) / n
    finally:
        requests.put(None)
        thread.join(5)


def pin_one_core() -> str:
    """Pin this process (all its threads) to one CPU when the OS allows it: the actor and
    queue round trips then hand over on one core, and the ratio stops swinging with
    where the scheduler puts the two threads. Returns what was done, for the report."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no os.sched_setaffinity here)"
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
    except OSError as exc:
        return f"not pinned ({exc})"
    return f"pinned to CPU {cpus[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="round trips per repetition")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median shown)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    args = parser.parse_args()
    pinned = "not pinned (--no-pin)" if args.no_pin else pin_one_core()

    results: dict[str, list[float]] = {"queue": [], "pykka": [], "supervised": []}
    ratios: dict[str, list[float]] = {"pykka": [], "supervised": []}
    for _ in range(args.repeat):  # interleave so machine load hits all three alike
        q = bench_queue(args.n)
        results["queue"].append(q)
        for name, fn in (("pykka", bench_raw_actor), ("supervised", bench_actor)):
            x = fn(args.n)
            results[name].append(x)
            ratios[name].append(x / q)  # each repetition against its own baseline
    median = {k: statistics.median(v) for k, v in results.items()}
    base = median["queue"]
    print(f"round trips: {args.n} x {args.repeat} repetitions, {pinned}")
    print(f"  {'':<44} {'us/op':>8}   {'ratio':>6}  {'ratio min-max over repetitions':>30}")
    for name, label in (
        ("queue", "queue.Queue request/reply (baseline)"),
        ("pykka", "pykka ask -> reply, plain ThreadingActor"),
        ("supervised", "pykka ask(Ping) -> 'pong', SupervisedActor"),
    ):
        spread = (f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}" if name in ratios
                  else "")
        print(f"  {label:<44} {median[name] * 1e6:8.1f}   x{median[name] / base:5.2f}"
              f"  {spread:>30}")
    record("actors", "SupervisedActor ask / queue round trip (median)",
           statistics.median(ratios["supervised"]))
    record("actors", "  spread of that ratio over repetitions (max / min)",
           max(ratios["supervised"]) / min(ratios["supervised"]))


if __name__ == "__main__":
    main()
