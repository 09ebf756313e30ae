"""``python -m engine.dhan_sim --port 8765``."""

from engine.dhan_sim.server import main

raise SystemExit(main())
