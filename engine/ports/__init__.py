"""Ports: the engine's boundaries (market data, broker, chat) and their adapters."""
