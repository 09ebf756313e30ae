"""Benchmark: pykka ask -> reply round trip vs a raw queue.Queue round trip between threads.

Run:  .venv/bin/python bench/bench_actors.py [--n 20000]

Both are measured in the same run; the ratio (actor / queue) is the figure to watch, not
the absolute microseconds (they depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pykka

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="round trips per repetition")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median is shown)")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"queue": [], "pykka": [], "supervised": []}
    for _ in range(args.repeat):  # interleave so machine load hits all three alike
        results["queue"].append(bench_queue(args.n))
        results["pykka"].append(bench_raw_actor(args.n))
        results["supervised"].append(bench_actor(args.n))
    median = {k: statistics.median(v) for k, v in results.items()}
    base = median["queue"]
    print(f"round trips: {args.n} x {args.repeat} (median shown)")
    for name, label in (
        ("queue", "queue.Queue request/reply (baseline)"),
        ("pykka", "pykka ask -> reply, plain ThreadingActor"),
        ("supervised", "pykka ask(Ping) -> 'pong', SupervisedActor"),
    ):
        print(f"  {label:<44} {median[name] * 1e6:8.1f} us/op   x{median[name] / base:5.2f}")


if __name__ == "__main__":
    main()
