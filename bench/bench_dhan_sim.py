"""Latency of the Dhan simulator on loopback: keep-alive requests, concurrent bursts, and the
cost of a request as the order book grows.

Usage: python bench/bench_dhan_sim.py [--requests 200] [--burst 30] [--resting 170]

Targets (loopback, 2 shared cores): median keep-alive GET /v2/fundlimit <= 3 ms (no 40 ms
delayed-ACK stall), no connection reset in a burst of ``--burst`` fresh connections, and the
median with ``--resting`` resting orders within 1.5x the median with an empty book. Exits
non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def keep_alive_ms(session: requests.Session, url: str, headers: dict[str, str], n: int
                  ) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = session.get(url, headers=headers, timeout=5)
        out.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return out


def burst(url: str, headers: dict[str, str], body: dict, n: int) -> tuple[int, int]:
    """``n`` threads place an order each on fresh connections at once; (ok, connection
    errors)."""
    gate = threading.Barrier(n)
    results: list[str] = []

    def one() -> None:
        gate.wait()
        try:
            requests.post(url, headers=headers, json=body, timeout=10)
            results.append("ok")
        except requests.ConnectionError:
            results.append("reset")

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results.count("ok"), results.count("reset")


def main() -> int:
    from engine.dhan_sim import build_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--burst", type=int, default=30)
    parser.add_argument("--resting", type=int, default=170)
    args = parser.parse_args()

    server = build_server("127.0.0.1", 0, mint_throttle=0.0).start()
    server.sim.account.sod_limit = 1e12
    server.sim.limits = type(server.sim.limits)(windows={}, unique_interval=0.0)
    token = server.sim.issue_token()
    headers = {"access-token": token, "client-id": server.sim.account.client_id}
    fund = f"{server.api_base}/fundlimit"
    failed = False
    try:
        session = requests.Session()
        empty = statistics.median(keep_alive_ms(session, fund, headers, args.requests))
        market = server.sim.market
        chain = market.option_chain(market.expiries()[0])
        entry = chain[min(chain)]["CE"]
        lot = server.sim.exchange.row(str(entry.security_id)).lot_size
        resting = {"transactionType": "BUY", "exchangeSegment": "NSE_FNO",
                   "productType": "INTRADAY", "orderType": "LIMIT", "validity": "DAY",
                   "securityId": str(entry.security_id), "quantity": lot, "price": 0.05}
        ok, resets = burst(f"{server.api_base}/orders", headers, resting, args.burst)
        for _ in range(args.resting):  # far below the bid: they rest
            session.post(f"{server.api_base}/orders", headers=headers, timeout=5,
                         json=resting).raise_for_status()
        time.sleep(0.2)
        full = statistics.median(keep_alive_ms(session, fund, headers, args.requests))
        print(f"keep-alive GET /fundlimit median: {empty:.2f} ms (empty book), "
              f"{full:.2f} ms ({len(server.sim.exchange.resting())} resting orders)")
        print(f"burst of {args.burst} orders on fresh connections: {ok} ok, {resets} "
              "connection errors")
        if empty > 3.0:
            print("FAIL: keep-alive median above 3 ms")
            failed = True
        if resets:
            print("FAIL: connections reset under a burst")
            failed = True
        if full > max(1.5 * empty, empty + 1.0):
            print("FAIL: request cost grows with the resting orders")
            failed = True
    finally:
        server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
