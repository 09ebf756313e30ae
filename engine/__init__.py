"""NIFTY index-options trading engine for the Dhan broker."""

__version__ = "0.1.0"
