"""``python -m engine dhan-sim [...]``: the local Dhan v2 simulator (``engine.dhan_sim.main``)."""

from __future__ import annotations

import argparse

# (flag, type, help) forwarded verbatim to engine.dhan_sim.main (defaults live there)
OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("--host", str, "address to bind (default 127.0.0.1)"),
    ("--port", int, "port (default 8765)"),
    ("--client-id", str, "simulated Dhan client id (default 1000000001)"),
    ("--pin", str, "simulated PIN (default 123456)"),
    ("--totp-secret", str, "base32 TOTP secret (random when omitted)"),
    ("--spot", float, "initial NIFTY spot of the builtin market (default 24000)"),
    ("--market", str, "engine (default): the engine's simulated market at the engine's clock, "
                      "for rehearsals; builtin: a static market at --spot"),
    ("--seed", int, "seed of the engine market (default SIM_SEED or 7)"),
    ("--env-file", str, "write the DHAN_* variables of the simulator to this file"),
    ("--order-ws-port", int, "port of the order-update WebSocket (default: any free port)"),
)


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dhan-sim", help="run the local Dhan v2 simulator (same endpoints, "
                       "errors and rate limits as Dhan, over a simulated market)",
                       description="Run the local Dhan v2 simulator; Ctrl-C stops it.")
    for flag, kind, text in OPTIONS:
        p.add_argument(flag, type=kind, default=None, help=text)
    p.set_defaults(handler=run)


def forwarded(args: argparse.Namespace) -> list[str]:
    """The simulator's own argv for the options that were given."""
    argv: list[str] = []
    for flag, _kind, _text in OPTIONS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    from engine.dhan_sim import main

    return int(main(forwarded(args)) or 0)
