"""``python -m engine token-refresher [--interval-sec 300] [--once]``.

Runs the TokenActor alone under a Supervisor (one ChildSpec) and sends it a
``TokenCheckTick`` every ``--interval-sec`` from a small ticker thread; SIGTERM / SIGINT stop
it cleanly. ``--once`` runs one check and exits (0 when a usable token is stored, 1 when
blocked). In paper mode (no ``DHAN_CLIENT_ID``) there is nothing to refresh: it says so and
idles (``--once`` exits 0). Run the engine with ``TOKEN_REFRESHER_EXTERNAL=true`` next to it,
so the engine only follows the stored token.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
from typing import Any

logger = logging.getLogger("engine.token_refresher")

USABLE = ("renewed", "minted", "still_valid")


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token-refresher", help="keep the Dhan access token fresh (a supervised "
                       "TokenActor alone); SIGTERM stops it",
                       description="Renew the Dhan token ahead of expiry (TOTP mint as "
                       "fallback) and store it in runtime_state 'dhan_token' with a NOTIFY.")
    p.add_argument("--interval-sec", type=_positive, default=300,
                   help="seconds between token checks (default 300)")
    p.add_argument("--once", action="store_true", help="run one check and exit")
    p.set_defaults(handler=run)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return value


def run(args: argparse.Namespace, *, stop: threading.Event | None = None,
        install_signals: bool = True) -> int:
    """Entry point (``stop`` and ``install_signals`` let tests drive the loop)."""
    from engine import config as config_module
    from engine.logsetup import setup_logging

    cfg = config_module.load()
    if install_signals:
        setup_logging(cfg.log_level, cfg.log_dir, filename="token-refresher.log")
    stop = stop or threading.Event()
    if install_signals:
        def on_signal(signum: int, _frame: Any) -> None:
            logger.info("signal %s: stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    if not cfg.dhan_client_id:
        logger.info("token-refresher: no DHAN_CLIENT_ID (paper mode): nothing to refresh")
        if not args.once:
            stop.wait()
        return 0
    return _supervised(cfg, args, stop)


def _supervised(cfg: Any, args: argparse.Namespace, stop: threading.Event) -> int:
    import pykka

    from engine.actors.base import ActorContext
    from engine.actors.directory import Directory
    from engine.actors.supervisor import ChildSpec, Supervisor
    from engine.actors.token import TokenActor
    from engine.broker.dhan.wiring import token_services
    from engine.clock import RealClock
    from engine.messages.base import RandomIds
    from engine.messages.commands import Ping, TokenCheckTick
    from engine.store.migrate import migrate
    from engine.store.pool import open_pool
    from engine.store.server import database_url

    url = database_url()
    migrate(url)
    pool = open_pool(url, max_size=3, name="token-refresher")
    clock, ids, directory = RealClock(), RandomIds(), Directory()
    services = {"pool": pool, **token_services(cfg, pool, follow_only=False)}
    ctx = ActorContext(clock=clock, directory=directory, ids=ids, services=services)
    spec = ChildSpec.for_actor("token", TokenActor, ctx, backoff=(0.5, 30.0))
    supervisor = Supervisor.start([spec], directory=directory, clock=clock, ids=ids)
    code = 0
    try:
        supervisor.ask(Ping(), timeout=30)
        while True:
            now = clock.now()
            tick = TokenCheckTick(message_id=ids.next_id("token-refresher"), ts=now, at=now)
            ref = directory.require("token")
            if args.once:
                try:
                    result = ref.ask(tick, timeout=60)
                except Exception as exc:  # the actor answers the ask with its failure
                    logger.error("token check failed: %s", exc)
                    code = 1
                    break
                action = getattr(result, "action", "unknown")
                expires = getattr(result, "expires_at", None)
                logger.info("token check: %s%s%s", action,
                            f", expires {expires.isoformat()}" if expires else "",
                            f" ({result.reason})" if getattr(result, "reason", "") else "")
                code = 0 if action in USABLE else 1
                break
            ref.tell(tick)
            if stop.wait(args.interval_sec):
                break
    finally:
        with contextlib.suppress(pykka.ActorDeadError):
            supervisor.stop(timeout=30)
        pool.close()
        logger.info("token-refresher stopped")
    return code
