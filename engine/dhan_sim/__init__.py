"""Local Dhan v2 simulator: same endpoints, errors and rate limits, over a simulated market.

Start in-process with ``build_server("127.0.0.1", 0).start()`` or from the shell with
``python -m engine.dhan_sim --port 8765``.
"""

from engine.dhan_sim.faults import Faults
from engine.dhan_sim.market import BuiltinMarket, MarketSource, SnapshotMarket
from engine.dhan_sim.server import SimServer, build_server, main
from engine.dhan_sim.simulator import DhanSimulator

__all__ = ["BuiltinMarket", "DhanSimulator", "Faults", "MarketSource", "SimServer",
           "SnapshotMarket", "build_server", "main"]
