"""``python -m engine web``: the dashboard under gunicorn (web/gunicorn.conf.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CONF = Path(__file__).resolve().parent.parent.parent / "web" / "gunicorn.conf.py"
APP = "web:create_app()"


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="run the dashboard (gunicorn, gthread workers)",
                       description="Run the dashboard and JSON API under gunicorn with "
                       "web/gunicorn.conf.py. WEB_HOST, WEB_PORT, WEB_WORKERS and WEB_THREADS "
                       "set the defaults.")
    p.add_argument("--host", help="bind address (default $WEB_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default $WEB_PORT or 8080)")
    p.add_argument("--workers", type=int, help="worker processes (default $WEB_WORKERS or 2)")
    p.add_argument("--threads", type=int, help="threads per worker (default $WEB_THREADS or 32)")
    p.set_defaults(handler=run)


def gunicorn_argv(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start gunicorn for ``args``."""
    env = dict(os.environ)
    for name, value in (("WEB_HOST", args.host), ("WEB_PORT", args.port),
                        ("WEB_WORKERS", args.workers), ("WEB_THREADS", args.threads)):
        if value is not None:
            env[name] = str(value)
    if not env.get("DATABASE_URL"):
        # Start (or join) the embedded server once here so every worker uses the same DSN.
        from engine.store.server import database_url

        env["DATABASE_URL"] = database_url()
    root = str(CONF.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return [sys.executable, "-m", "gunicorn", "-c", str(CONF), "--chdir", root, APP], env


def run(args: argparse.Namespace) -> int:
    argv, env = gunicorn_argv(args)
    os.execvpe(argv[0], argv, env)  # noqa: S606 - replaces this process with gunicorn
    return 0  # pragma: no cover
