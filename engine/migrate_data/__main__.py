"""``python -m engine.migrate_data``: the legacy import CLI without the engine's main CLI."""

import sys

from engine.migrate_data.cli import main

sys.exit(main())
