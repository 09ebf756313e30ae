"""``python -m engine <command>``: the one command-line entry point."""

from __future__ import annotations

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
