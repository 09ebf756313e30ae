"""Dashboard reads under load against a hello-world Flask ceiling on the same gunicorn config.

Run:  .venv/bin/python bench/bench_web.py [--duration 5] [--rounds 3] [--connections 16]

On a scratch database (created, migrated and dropped on the server of
TEST_DATABASE_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres; empty apart
from one dashboard session) two gunicorns run side by side with web/gunicorn.conf.py and the
same WEB_WORKERS / WEB_THREADS:

* the project (``python -m engine web``'s command line): /api/health (public) and the
  authenticated reads /api/positions, /api/pnl/today and /api/trades;
* the ceiling: a bare Flask app answering /hello with a small JSON object, and /select with
  one ``SELECT 1`` on an autocommit pool without a per-checkout check (what a request with
  one query can at best cost).

The load tool is wrk (``apt-get install wrk``; ``-t2 -c16`` by default) when it is on PATH,
otherwise a multi-process Python client with keep-alive connections (which is slower than
wrk, so its ratios understate the gaps; the output says which one ran). Rounds are
interleaved (every endpoint once per round, in turn) so the machine's load drifts over all
of them alike; each ratio is taken within its round, against that round's /hello, and the
table shows the median over the rounds with the spread. A non-200 answer or a socket error
is reported, never hidden in the rates.

Goals (issue 18): /api/health >= 0.7x /hello, authenticated reads >= 0.5x, p99 within 3x
/hello's p99. With BENCH_SUMMARY=path (make bench) the ratios go to the summary table
(bench/summary.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from summary import record  # noqa: E402 - bench/summary.py

DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-secret-" + "x" * 32
PROJECT = ("/api/health", "/api/positions", "/api/pnl/today", "/api/trades")
AUTHENTICATED = frozenset(PROJECT[1:])
CEILING = ("/hello", "/select")
GOAL_PUBLIC, GOAL_AUTH, GOAL_P99 = 0.7, 0.5, 3.0


# ---------------------------------------------------------------- the ceiling app
def ceiling_app():
    """gunicorn entry point (``bench_web:ceiling_app()``): hello-world and one SELECT."""
    from flask import Flask, jsonify
    from psycopg_pool import ConnectionPool

    app = Flask("ceiling")
    pool = ConnectionPool(os.environ["DATABASE_URL"], min_size=1, max_size=10, name="ceiling",
                          kwargs={"autocommit": True}, open=True)

    @app.get("/hello")
    def hello():
        return jsonify({"status": "ok"})

    @app.get("/select")
    def select():
        with pool.connection() as conn:
            value = conn.execute("SELECT 1").fetchone()[0]
        return jsonify({"status": "ok", "value": value})

    return app


# ---------------------------------------------------------------- database and servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def scratch_database() -> Iterator[str]:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from engine.store.migrate import migrate

    admin = os.environ.get("TEST_DATABASE_ADMIN_URL", DEFAULT_ADMIN)
    name = f"bench_web_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_conninfo(**{**conninfo_to_dict(admin), "dbname": name})
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def session_cookie(dsn: str) -> str:
    from engine.store.pool import open_pool
    from web.authn import Authenticator, AuthPolicy

    pool = open_pool(dsn, max_size=1, name="bench")
    try:
        auth = Authenticator(pool, SECRET, AuthPolicy())
        return "nifty_session=" + auth.cookie_value(auth.open_session("127.0.0.1"))
    finally:
        pool.close()


@contextmanager
def gunicorn(app: str | None, port: int, dsn: str, args: argparse.Namespace,
             log_dir: Path) -> Iterator[subprocess.Popen]:
    """The project's gunicorn command line (engine.commands.web), with ``app`` instead of
    the dashboard when given; same config file, workers and threads either way."""
    from engine.commands.web import gunicorn_argv

    ns = argparse.Namespace(host="127.0.0.1", port=port, workers=args.workers,
                            threads=args.threads)
    os.environ["DATABASE_URL"] = dsn
    argv, env = gunicorn_argv(ns)
    if app is not None:
        argv[-1] = app
        env["PYTHONPATH"] = str(BENCH) + os.pathsep + env["PYTHONPATH"]
    env.update({"DASHBOARD_SECRET_KEY": SECRET, "LOG_LEVEL": "warning", "LOG_DIR": str(log_dir),
                "ENGINE_ENV_FILE": os.devnull, "WEB_ACCESS_LOG": ""})
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 90.0) -> None:
    """Poll ``url`` until it answers; a slow start (refused, reset or timed-out requests on a
    loaded machine) is waited out, a dead server or the deadline is an error."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn for {url} exited with status {proc.returncode}")
        try:
            if requests.get(url, timeout=5).status_code in (200, 503):
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.3)


def check_answers(url: str, cookie: str | None) -> None:
    import requests

    r = requests.get(url, headers={"Cookie": cookie} if cookie else {}, timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"{url} answered {r.status_code} before the run: {r.text[:200]}")


# ---------------------------------------------------------------- load tools
@dataclass(frozen=True, slots=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx answers plus socket errors (time-outs included)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"wrk latency {text!r} not understood")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> Result:
    """The figures of ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and total and p50 and p99):
        raise RuntimeError(f"wrk output not understood:\n{out}")
    bad = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        bad += sum(int(x) for x in errors.groups())
    return Result(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)),
                  int(total.group(1)), bad)


def run_wrk(url: str, cookie: str | None, args: argparse.Namespace) -> Result:
    argv = ["wrk", f"-t{args.threads_client}", f"-c{args.connections}", f"-d{args.duration}s",
            "--latency", "--timeout", "5s"]
    if cookie:
        argv += ["-H", f"Cookie: {cookie}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True,
                         timeout=args.duration + 60).stdout
    return parse_wrk(out)


def _client_process(url: str, cookie: str | None, connections: int, duration: float,
                    ) -> tuple[int, int, list[float]]:
    """One client process: ``connections`` threads, each on one keep-alive connection."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    headers = {"Cookie": cookie} if cookie else {}
    latencies: list[float] = []
    counts = [0, 0]
    lock = threading.Lock()
    stop = time.perf_counter() + duration

    def loop() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        mine: list[float] = []
        bad = 0
        while (t0 := time.perf_counter()) < stop:
            try:
                conn.request("GET", parts.path, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
                continue
            mine.append((time.perf_counter() - t0) * 1000)
        conn.close()
        with lock:
            latencies.extend(mine)
            counts[0] += len(mine)
            counts[1] += bad

    threads = [threading.Thread(target=loop) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts[0], counts[1], latencies


def run_python(url: str, cookie: str | None, args: argparse.Namespace) -> Result:
    import multiprocessing

    procs = max(1, args.threads_client)
    per = [args.connections // procs + (i < args.connections % procs) for i in range(procs)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        parts = pool.starmap(_client_process,
                             [(url, cookie, n, args.duration) for n in per if n])
    elapsed = time.perf_counter() - started
    done = sum(p[0] for p in parts)
    latencies = sorted(x for p in parts for x in p[2])
    if len(latencies) < 2:
        raise RuntimeError(f"{url}: no request completed")
    q = statistics.quantiles(latencies, n=100)
    return Result(done / elapsed, q[49], q[98], done, sum(p[1] for p in parts))


# ---------------------------------------------------------------- report
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(results: dict[str, list[Result]], tool: str, args: argparse.Namespace) -> list[dict]:
    hello = results["/hello"]
    print(f"\nbench_web: {tool}, {args.connections} connections, {args.rounds} rounds of "
          f"{args.duration} s; gunicorn {args.workers} workers x {args.threads} threads")
    print(f"{'endpoint':<16} {'req/s':>7} {'min-max':>13} {'x hello':>8} {'spread':>11} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'p99 x':>6} {'bad':>5}  goal")
    figures = []
    for path, runs in results.items():
        ratios = [r.rps / h.rps for r, h in zip(runs, hello, strict=True)]
        p99s = [r.p99_ms / h.p99_ms for r, h in zip(runs, hello, strict=True)]
        ratio, p99x = _median(ratios), _median(p99s)
        goal = (GOAL_AUTH if path in AUTHENTICATED else GOAL_PUBLIC
                if path == "/api/health" else None)
        verdict = ""
        if goal is not None:
            ok = ratio >= goal and p99x <= GOAL_P99 and not any(r.bad for r in runs)
            verdict = f"{'met' if ok else 'MISSED'} (>= {goal}x, p99 <= {GOAL_P99}x)"
        rps = [r.rps for r in runs]
        print(f"{path:<16} {_median(rps):7.0f} {min(rps):6.0f}-{max(rps):<6.0f} {ratio:8.2f} "
              f"{min(ratios):5.2f}-{max(ratios):<5.2f} {_median([r.p50_ms for r in runs]):7.1f} "
              f"{_median([r.p99_ms for r in runs]):7.1f} {p99x:6.2f} "
              f"{sum(r.bad for r in runs):5d}  {verdict}")
        figures.append({"bench": "web", "endpoint": path, "rps": round(_median(rps)),
                        "ratio_to_hello": round(ratio, 3), "p99_ratio": round(p99x, 3),
                        "goal_ratio": goal, "bad": sum(r.bad for r in runs), "tool": tool})
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads-client", type=int, default=2,
                        help="wrk threads (or client processes without wrk)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both apps)")
    parser.add_argument("--threads", type=int, default=32, help="gunicorn threads per worker")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    if tool == "python":
        print("bench_web: wrk not found (apt-get install wrk): using the Python client, "
              "which is slower than the server, so the ratios understate the gaps")
    run = run_wrk if tool == "wrk" else run_python

    with scratch_database() as dsn, tempfile.TemporaryDirectory() as logs:
        cookie = session_cookie(dsn)
        project_port, ceiling_port = free_port(), free_port()
        with gunicorn(None, project_port, dsn, args, Path(logs)) as project, \
                gunicorn("bench_web:ceiling_app()", ceiling_port, dsn, args, Path(logs)) as ceiling:
            base = {p: f"http://127.0.0.1:{project_port}" for p in PROJECT}
            base.update({p: f"http://127.0.0.1:{ceiling_port}" for p in CEILING})
            wait_ready(project, base["/api/health"] + "/api/health")
            wait_ready(ceiling, base["/hello"] + "/hello")
            order = ("/hello", *PROJECT, "/select")
            for path in order:
                check_answers(base[path] + path, cookie if path in AUTHENTICATED else None)
            warm = argparse.Namespace(**{**vars(args), "duration": 1})
            for path in order:
                run(base[path] + path, cookie, warm)
            results: dict[str, list[Result]] = {p: [] for p in order}
            for n in range(args.rounds):
                for path in order:
                    r = run(base[path] + path, cookie if path in AUTHENTICATED else None, args)
                    results[path].append(r)
                    print(f"round {n + 1} {path:<16} {r.rps:7.0f} req/s  p50 {r.p50_ms:6.1f} ms"
                          f"  p99 {r.p99_ms:6.1f} ms" + (f"  {r.bad} bad" if r.bad else ""),
                          flush=True)
    for f in summarize(results, tool, args):
        goal = f">= {f['goal_ratio']}" if f["goal_ratio"] is not None else ""
        record("web", f"{f['endpoint']} req/s / hello ({tool})", f["ratio_to_hello"], goal)
        if f["goal_ratio"] is not None:
            record("web", f"  {f['endpoint']} p99 / hello p99", f["p99_ratio"], f"<= {GOAL_P99}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
