"""Requests/s of dashboard read endpoints against a real gunicorn on loopback.

Usage: DATABASE_URL=postgresql://... python bench/bench_web.py [--requests 4000] [--clients 16]

Starts ``python -m engine web`` (gunicorn, gthread) on a free port, creates a session
directly in the database, then fires a bounded number of requests from a thread pool at
/api/health (no session; baseline) and /api/positions (session + one query). Prints
requests/s, latency percentiles and the ratio of each endpoint to the baseline.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_cookie(secret: str) -> str:
    from engine.store.pool import open_pool
    from web.authn import Authenticator, AuthPolicy

    pool = open_pool(os.environ["DATABASE_URL"], max_size=1, name="bench")
    try:
        auth = Authenticator(pool, secret, AuthPolicy())
        return auth.cookie_value(auth.open_session("127.0.0.1"))
    finally:
        pool.close()


def run(url: str, n: int, clients: int, cookies: dict[str, str]) -> tuple[float, list[float]]:
    def one(_i: int) -> float:
        session = _session(cookies)
        t0 = time.perf_counter()
        r = session.get(url, timeout=10)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code}")
        return time.perf_counter() - t0

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(one, range(n)))
    return n / (time.perf_counter() - started), latencies


_sessions: dict[int, requests.Session] = {}


def _session(cookies: dict[str, str]) -> requests.Session:
    import threading

    key = threading.get_ident()
    if key not in _sessions:
        s = requests.Session()
        s.cookies.update(cookies)
        _sessions[key] = s
    return _sessions[key]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        print("set DATABASE_URL to a migrated database", file=sys.stderr)
        return 2
    secret = "bench-secret-" + "x" * 32
    port = free_port()
    env = {**os.environ, "DASHBOARD_SECRET_KEY": secret, "WEB_PORT": str(port),
           "WEB_WORKERS": str(args.workers), "WEB_THREADS": "32", "LOG_LEVEL": "warning",
           "LOG_DIR": os.path.join(tempfile.gettempdir(), "bench-web-logs")}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "web"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/api/health", timeout=1).status_code in (200, 503):
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not come up")
            time.sleep(0.2)
        cookies = {"nifty_session": session_cookie(secret)}
        run(base + "/api/health", 200, args.clients, cookies)  # warm-up
        results = {}
        for path in ("/api/health", "/api/positions", "/api/pnl/today"):
            rps, lat = run(base + path, args.requests, args.clients, cookies)
            q = statistics.quantiles(lat, n=100)
            results[path] = rps
            print(f"{path:<18} {rps:8.0f} req/s   p50 {q[49]*1000:6.1f} ms   p99 {q[98]*1000:6.1f} ms")
        baseline = results["/api/health"]
        for path, rps in results.items():
            print(f"{path:<18} ratio to /api/health: {rps / baseline:.2f}")
    finally:
        proc.terminate()
        proc.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
