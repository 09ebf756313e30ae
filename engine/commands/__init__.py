"""CLI commands, one module each."""

from __future__ import annotations

import argparse
from datetime import date


def iso_day(text: str) -> date:
    """argparse type for a YYYY-MM-DD date, with the error argparse shows the user."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
