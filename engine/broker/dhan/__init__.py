"""Dhan v2 broker client: REST client, instrument master, token helpers."""
