"""``python -m engine dhan-sim [...]``: the local Dhan v2 simulator (``engine.dhan_sim``)."""

from __future__ import annotations

import argparse


def add_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dhan-sim", add_help=False,
                       help="run the local Dhan v2 simulator (same endpoints, errors and rate "
                            "limits; --help for its options)",
                       description="Run the local Dhan v2 simulator.")
    p.add_argument("sim_args", nargs=argparse.REMAINDER,
                   help="options of python -m engine.dhan_sim (--host, --port, --env-file, ...)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.dhan_sim import main

    return int(main(list(args.sim_args)) or 0)
