"""``python -m engine run`` (the engine process) and ``python -m engine up`` (everything local:
embedded database, migrations, engine and dashboard in one process tree)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys

from engine import config as config_module
from engine.logsetup import setup_logging
from engine.redact import redact
from engine.store.migrate import migrate
from engine.store.pool import open_pool
from engine.store.server import database_url, describe

logger = logging.getLogger("engine.run")


def add_cli(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (
        ("run", "run the engine (supervised actors); Ctrl-C or SIGTERM stops it cleanly"),
        ("up", "local all-in-one: database (embedded if DATABASE_URL is unset), migrations, "
               "engine on the simulated market and the dashboard on http://127.0.0.1:8080"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext + ". Configuration comes "
                           "from the environment (.env.example lists every variable).")
        p.add_argument("--speed", type=float, default=None,
                       help="simulated seconds per real second (default SIM_SPEED, 60)")
        p.add_argument("--seed", type=int, default=None, help="simulated market seed (SIM_SEED)")
        p.add_argument("--start", default=None, help="simulated session YYYY-MM-DD (SIM_START)")
        p.add_argument("--until", default=None,
                       help="stop after this simulated IST time, e.g. 2025-02-03T15:30")
        p.add_argument("--quiet", action="store_true", help="no per-trade console lines")
        if name == "up":
            p.add_argument("--no-web", action="store_true", help="do not start the dashboard")
        p.set_defaults(handler=_run if name == "run" else _up)


def _config(args: argparse.Namespace) -> config_module.Config:
    env = dict(os.environ)
    if args.speed is not None:
        env["SIM_SPEED"] = str(int(args.speed))
    if args.seed is not None:
        env["SIM_SEED"] = str(args.seed)
    if args.start is not None:
        env["SIM_START"] = args.start
    return config_module.load(env)


class ConsoleReporter(logging.Handler):
    """Prints what happens (entries, exits, P&L, risk) as plain lines on stdout."""

    def emit(self, record: logging.LogRecord) -> None:
        print(redact(f"  {record.getMessage()}"), flush=True)


def _run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    setup_logging(cfg.log_level, cfg.log_dir)
    url = database_url()
    applied = migrate(url)
    if applied:
        logger.info("applied migrations: %s", ", ".join(applied))
    pool = open_pool(url, max_size=10, name="engine")
    from datetime import datetime

    import psycopg

    from engine.app import build
    from engine.timeutil import IST

    engine = build(cfg, pool)  # seeds nse_holidays on the first run, then reads the calendar
    if not args.quiet:
        logging.getLogger("engine.chat").addHandler(ConsoleReporter())
        for handler in logging.getLogger().handlers:  # the reporter already prints chat lines
            if type(handler) is logging.StreamHandler:
                handler.addFilter(lambda record: record.name != "engine.chat")

    def on_signal(signum, _frame):
        logger.info("signal %s: stopping", signal.Signals(signum).name)
        engine.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    import pykka.debug

    signal.signal(signal.SIGUSR1, pykka.debug.log_thread_tracebacks)
    engine.start()
    print(f"engine running: database {describe(url)}, market={cfg.market_source}, "
          f"broker={cfg.broker}, clock starts {engine.clock.now():%Y-%m-%d %H:%M} IST", flush=True)
    _print_state(pool, "resumed state")
    until = datetime.fromisoformat(args.until).replace(tzinfo=IST) if args.until else None
    if until is not None and until <= engine.clock.now():
        engine.stop()
        pool.close()
        print(f"--until {until:%Y-%m-%d %H:%M} is not after the simulated clock "
              f"({engine.clock.now():%Y-%m-%d %H:%M} IST, continued from the last run)",
              file=sys.stderr)
        return 2
    last_day = [engine.clock.now().date()]

    def on_step(at):
        if at.date() != last_day[0]:
            last_day[0] = at.date()
            _print_state(pool, f"before {at:%Y-%m-%d}")

    try:
        if cfg.market_source == "sim":
            engine.run_accelerated(cfg.sim_speed, until=until, on_step=on_step)
        else:
            engine.run_realtime()
    finally:
        engine.stop()
        try:
            _print_state(pool, "final state")
        except psycopg.OperationalError as exc:  # never hides why the run ended
            print(f"[final state] not read: the database is away ({exc})", file=sys.stderr)
        pool.close()
    return 0


def _print_state(pool, title: str) -> None:
    with pool.connection() as conn:
        risk = conn.execute("SELECT * FROM risk_envelope_state WHERE id = 1").fetchone()
        open_n = conn.execute("SELECT count(*) AS n FROM open_trades").fetchone()["n"]
        closed = conn.execute("SELECT count(*) AS n, coalesce(sum(realized_pnl), 0) AS pnl"
                              " FROM closed_trades").fetchone()
    paused = f", PAUSED: {risk['pause_reason']}" if risk["pause_reason"] else ""
    print(redact(f"[{title}] open {open_n}, closed {closed['n']}, lifetime P&L ₹{closed['pnl']}, "
                 f"today ₹{risk['daily_pnl']}, loss streak {risk['loss_streak']}{paused}"),
          flush=True)


def _first_login_setup(env_file: str | None = None) -> str:
    """Local first run: create the dashboard's TOTP secret in ./.env and show its QR code.

    Returns what the operator needs to log in: ``"created"`` (the QR code was just shown),
    ``"configured"`` (a secret already exists) or ``"missing"`` (no secret and no .env to
    write it to)."""
    if os.environ.get("DASHBOARD_TOTP_SECRET"):
        return "configured"
    env_file = env_file or os.environ.get("ENGINE_ENV_FILE", ".env")
    if env_file == os.devnull:
        return "missing"
    import pyotp

    from engine.commands.auth import qr_text
    from engine.dotenv import set_in_file

    secret = pyotp.random_base32()
    set_in_file(env_file, "DASHBOARD_TOTP_SECRET", secret)
    os.environ["DASHBOARD_TOTP_SECRET"] = secret
    uri = pyotp.TOTP(secret).provisioning_uri(name="dashboard", issuer_name="NIFTY engine")
    print("First run: scan this QR code with an authenticator app to log in to the dashboard.\n"
          f"(The secret is stored in {env_file}, mode 0600; `python -m engine auth setup "
          "--write-env` makes a new one.)\n")
    print(qr_text(uri), flush=True)
    return "created"


LOGIN_HINTS = {
    "created": "log in with the 6-digit code of the QR code above",
    "configured": "log in with the 6-digit code from your authenticator app",
    "missing": "first login: python -m engine auth setup --write-env",
}


def _up(args: argparse.Namespace) -> int:
    url = database_url()  # starts the embedded server when DATABASE_URL is unset
    os.environ["DATABASE_URL"] = url
    migrate(url)
    web = None
    if not getattr(args, "no_web", False):
        login = LOGIN_HINTS[_first_login_setup()]
        try:
            web = subprocess.Popen([sys.executable, "-m", "engine", "web"], env=os.environ.copy())
            host, port = os.environ.get("WEB_HOST", "127.0.0.1"), os.environ.get("WEB_PORT", "8080")
            print(f"dashboard: http://{host}:{port}  ({login})", flush=True)
        except OSError as exc:
            print(f"dashboard not started: {exc}", file=sys.stderr)
    try:
        return _run(args)
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(10)
            except subprocess.TimeoutExpired:
                web.kill()
